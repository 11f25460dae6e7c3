package pipe

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"sync/atomic"
	"testing"
	"time"
)

// TestStream writes random bytes in random pieces and reads them back in
// other random pieces, across block sizes and depths.
func TestStream(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, c := range []struct{ blocks, size int }{{1, 1}, {1, 7}, {4, 64}, {8, 4096}, {2, 1 << 20}} {
		want := make([]byte, 100_000+c.size)
		rng.Read(want)
		r, w := New(c.blocks, c.size)
		go func() {
			rest := want
			for len(rest) > 0 {
				n := min(len(rest), 1+rng.Intn(9000))
				if _, err := w.Write(rest[:n]); err != nil {
					w.CloseWithError(err)
					return
				}
				rest = rest[n:]
			}
			w.Close()
		}()
		var got bytes.Buffer
		buf := make([]byte, 5000)
		for {
			n, err := r.Read(buf[:1+len(got.Bytes())%len(buf)])
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%+v: read: %v", c, err)
			}
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%+v: read %d bytes, not what was written (%d bytes)", c, got.Len(), len(want))
		}
	}
}

// TestWriterError: the reader gets everything written, then the writer's
// error.
func TestWriterError(t *testing.T) {
	r, w := New(4, 16)
	boom := errors.New("boom")
	go func() {
		w.Write([]byte("hello, pipe"))
		w.CloseWithError(boom)
	}()
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) || string(got) != "hello, pipe" {
		t.Fatalf("read %q, %v; want %q, %v", got, err, "hello, pipe", boom)
	}
}

// TestReaderCloseUnblocksWriter: a writer blocked on a full pipe returns
// the reader's error once the reader closes, and so does every later write.
func TestReaderCloseUnblocksWriter(t *testing.T) {
	r, w := New(2, 8)
	gone := errors.New("peer went away")
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 1000)) // far more than the pipe holds
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("write of more than the pipe holds returned %v without a reader", err)
	case <-time.After(50 * time.Millisecond):
	}
	r.CloseWithError(gone)
	if err := <-done; !errors.Is(err, gone) {
		t.Fatalf("blocked write returned %v, want %v", err, gone)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, gone) {
		t.Fatalf("later write returned %v, want %v", err, gone)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, gone) {
		t.Fatalf("read after close returned %v, want %v", err, gone)
	}
	w.Close() // must not block or panic
}

// TestWriteAfterReaderClose: a write fails once the reader has closed,
// even one that would fit in the block being filled.
func TestWriteAfterReaderClose(t *testing.T) {
	r, w := New(4, 1024)
	if _, err := w.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n, err := w.Write([]byte("b")); n != 0 || !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write after the reader closed = %d, %v; want 0, %v", n, err, io.ErrClosedPipe)
	}
}

// TestReaderCloseUnblocksReader: a Read waiting for data returns when its
// own end is closed from another goroutine.
func TestReaderCloseUnblocksReader(t *testing.T) {
	r, _ := New(2, 8)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 4))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	if err := <-done; !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("read returned %v, want %v", err, io.ErrClosedPipe)
	}
}

// TestReadAhead: the writer gets ahead of a reader that does not read, by
// the pipe's size and no more.
func TestReadAhead(t *testing.T) {
	r, w := New(4, 100)
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := w.Write(make([]byte, 10)); err != nil {
				return
			}
			n.Add(10)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < 400; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("writer got only %d bytes into an empty pipe of 4 blocks of 100", n.Load())
		}
	}
	time.Sleep(50 * time.Millisecond) // room to run further, were the pipe unbounded
	r.Close()
	<-done
	if got := n.Load(); got > 500 {
		t.Fatalf("writer got %d bytes ahead of a reader that never read; the pipe holds 4 blocks of 100 and one being filled", got)
	}
}
