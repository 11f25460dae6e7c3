package bolt_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/bolt"
	"github.com/metcd/metcd/storage/enginetest"
)

var factory = enginetest.Factory{
	Name: "bolt",
	Open: func(t testing.TB, dir string) storage.Engine {
		e, err := bolt.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	},
}

func TestEngine(t *testing.T) { enginetest.Run(t, factory) }

func BenchmarkEngine(b *testing.B) { enginetest.Bench(b, factory) }

func BenchmarkWorkloads(b *testing.B) { enginetest.BenchWorkloads(b, factory) }

func open(t *testing.T, dir string, opts *bolt.Options) *bolt.Engine {
	t.Helper()
	e, err := bolt.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func commit(t *testing.T, e storage.Engine, fill func(b storage.Batch)) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	fill(b)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func wantValue(t *testing.T, r storage.Reader, key, want string) {
	t.Helper()
	v, err := r.Get([]byte(key))
	if err != nil || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, err, want)
	}
}

// within runs f and fails the test if it does not return in d: a hang
// here is the deadlock the test guards against.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func TestProperties(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "dir") // Open creates it
	e := open(t, dir, nil)
	if e.Name() != "bolt" || !e.Durable() {
		t.Errorf("Name, Durable = %q, %v; want bolt, true", e.Name(), e.Durable())
	}
	commit(t, e, func(b storage.Batch) { b.Put([]byte("k"), bytes.Repeat([]byte("v"), 1<<20)) })
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, bolt.FileName))
	if err != nil {
		t.Fatalf("database file is not in dir: %v", err)
	}
	if st.DiskBytes < 1<<20 || st.DiskBytes != fi.Size() || st.Keys != -1 {
		t.Errorf("Stats = %+v; want DiskBytes = file size %d >= 1 MiB, Keys -1", st, fi.Size())
	}
}

func TestReopenShowsData(t *testing.T) {
	dir := t.TempDir()
	e, err := bolt.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, e, func(b storage.Batch) {
		for i := range 1000 {
			b.Put(fmt.Appendf(nil, "key/%04d", i), fmt.Appendf(nil, "value-%d", i))
		}
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != bolt.FileName {
		t.Errorf("dir holds %v, want only %s", entries, bolt.FileName)
	}
	e = open(t, dir, nil)
	for _, i := range []int{0, 1, 500, 999} {
		wantValue(t, e, fmt.Sprintf("key/%04d", i), fmt.Sprintf("value-%d", i))
	}
}

// bbolt flocks the file, which also excludes a second Engine in the same
// process; Open must give up after LockTimeout rather than hang.
func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	e, err := bolt.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, e, func(b storage.Batch) { b.Put([]byte("k"), []byte("v")) })
	start := time.Now()
	e2, err := bolt.Open(dir, &bolt.Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		e2.Close()
		t.Fatal("second Open of the same dir succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v to fail", d)
	}
	t.Logf("second Open: %v", err)
	wantValue(t, e, "k", "v") // the first engine is unaffected
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir, nil)
	wantValue(t, e, "k", "v")
}

// bigCommits writes n MiB in 256 KiB values, enough to grow the file far
// past bbolt's initial 32 KiB mapping.
func bigCommits(e storage.Engine, n int) error {
	val := bytes.Repeat([]byte{'x'}, 256<<10)
	for i := range n {
		b := e.NewBatch()
		for j := range 4 {
			b.Put(fmt.Appendf(nil, "big/%03d/%d", i, j), val)
		}
		if err := b.Commit(false); err != nil {
			return err
		}
	}
	return nil
}

// With the default InitialMmapSize, open snapshots and iterators must not
// block commits that grow the file, even from the goroutine that holds them.
func TestReadViewsDoNotBlockGrowth(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	commit(t, e, func(b storage.Batch) { b.Put([]byte("a"), []byte("old")) })
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.Next() {
		t.Fatalf("Next = false, %v", it.Err())
	}
	within(t, 30*time.Second, "commits growing the file with a snapshot open", func() {
		if err := bigCommits(e, 16); err != nil {
			t.Error(err)
		}
		commit(t, e, func(b storage.Batch) { b.Put([]byte("a"), []byte("new")) })
	})
	wantValue(t, s, "a", "old")
	wantValue(t, e, "a", "new")
	if it.Next() {
		t.Errorf("iterator saw %q written after it was created", it.Key())
	}
}

// The hazard InitialMmapSize avoids: without it, a commit that grows the
// file waits for every open read transaction.
func TestWithoutInitialMmapCommitsWaitForSnapshots(t *testing.T) {
	e := open(t, t.TempDir(), &bolt.Options{InitialMmapSize: -1})
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- bigCommits(e, 8) }()
	select {
	case err := <-done:
		s.Close()
		t.Skipf("commits did not wait for the snapshot (%v); bbolt no longer remaps this way", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("commits still blocked after the snapshot closed")
	}
}

// Close must not wait for snapshots and iterators the caller forgot; they
// report ErrClosed afterwards, and slices they returned stay readable.
func TestCloseInvalidatesOpenViews(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	commit(t, e, func(b storage.Batch) {
		b.Put([]byte("a"), []byte("1"))
		b.Put([]byte("b"), []byte("2"))
	})
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	sit, err := s.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || !sit.Next() {
		t.Fatal("iterators are empty")
	}
	k, v := it.Key(), it.Value()
	within(t, 10*time.Second, "Close with open views", func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	if string(k) != "a" || string(v) != "1" {
		t.Errorf("Key, Value after Close = %q, %q; want a, 1", k, v)
	}
	if it.Next() || sit.Next() {
		t.Error("Next after engine Close = true")
	}
	for name, err := range map[string]error{
		"iterator Err":          it.Err(),
		"snapshot iterator Err": sit.Err(),
		"snapshot Close":        s.Close(),
	} {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s = %v, want ErrClosed", name, err)
		}
	}
	if _, err := s.Get([]byte("a")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("snapshot Get = %v, want ErrClosed", err)
	}
	if err := it.Close(); err != nil {
		t.Errorf("iterator Close = %v", err)
	}
}

// Closing a snapshot invalidates the iterators opened on it.
func TestSnapshotCloseEndsItsIterators(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	commit(t, e, func(b storage.Batch) {
		b.Put([]byte("a"), []byte("1"))
		b.Put([]byte("b"), []byte("2"))
	})
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := s.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.Next() {
		t.Fatal(it.Err())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() || !errors.Is(it.Err(), storage.ErrClosed) {
		t.Errorf("Next after snapshot Close: Err = %v, want ErrClosed", it.Err())
	}
}

func TestEmptyKey(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	b := e.NewBatch()
	b.Put([]byte("x"), []byte("1"))
	b.Put(nil, []byte("empty"))
	if err := b.Commit(false); !errors.Is(err, bolt.ErrEmptyKey) {
		t.Fatalf("Commit with an empty key = %v, want ErrEmptyKey", err)
	}
	if _, err := e.Get([]byte("x")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(x) = %v: the failed batch was partly applied", err)
	}
	commit(t, e, func(b storage.Batch) {
		b.Put([]byte("x"), []byte("1"))
		b.Delete(nil) // no-op
	})
	wantValue(t, e, "x", "1")
	if _, err := e.Get(nil); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(nil) = %v, want ErrNotFound", err)
	}
}

// Writing into the slices iterators and Get return must neither crash
// (bbolt's map is read-only) nor change the stored data.
func TestReturnedSlicesAreCopies(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	commit(t, e, func(b storage.Batch) { b.Put([]byte("key"), []byte("value")) })
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range []storage.Reader{e, s} {
		it, err := r.NewIterator(storage.IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			copy(it.Key(), "XXX")
			copy(it.Value(), "XXXXX")
		}
		it.Close()
		v, err := r.Get([]byte("key"))
		if err != nil {
			t.Fatal(err)
		}
		copy(v, "YYYYY")
	}
	wantValue(t, e, "key", "value")
	wantValue(t, s, "key", "value")
}

// Open with NoSync still commits atomically and survives a clean reopen.
func TestNoSync(t *testing.T) {
	dir := t.TempDir()
	e, err := bolt.Open(dir, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, e, func(b storage.Batch) { b.Put([]byte("k"), []byte("v")) })
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wantValue(t, open(t, dir, nil), "k", "v")
}

// Close racing with readers and writers on other goroutines must neither
// crash (bbolt unmaps the file) nor hang; every call then reports ErrClosed.
func TestCloseRacesWithUse(t *testing.T) {
	for round := range 5 {
		e, err := bolt.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		commit(t, e, func(b storage.Batch) {
			for i := range 200 {
				b.Put(fmt.Appendf(nil, "k/%03d", i), []byte("v"))
			}
		})
		errs := make(chan error, 4)
		ok := func(err error) error {
			if err == nil || errors.Is(err, storage.ErrClosed) {
				return nil
			}
			return err
		}
		reader := func(r func() (storage.Reader, func() error, error)) {
			for {
				rd, done, err := r()
				if err != nil {
					errs <- ok(err)
					return
				}
				it, err := rd.NewIterator(storage.IterOptions{})
				if err != nil {
					done()
					errs <- ok(err)
					return
				}
				for it.Next() {
					_ = append([]byte(nil), it.Value()...)
				}
				_, gerr := rd.Get([]byte("k/100"))
				if err := errors.Join(it.Err(), it.Close(), gerr, done()); err != nil {
					errs <- ok(err)
					return
				}
			}
		}
		go reader(func() (storage.Reader, func() error, error) {
			s, err := e.NewSnapshot()
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		})
		go reader(func() (storage.Reader, func() error, error) {
			return e, func() error { return nil }, nil
		})
		go func() {
			for i := 0; ; i++ {
				b := e.NewBatch()
				b.Put(fmt.Appendf(nil, "k/%03d", i%200), []byte("w"))
				if err := b.Commit(false); err != nil {
					errs <- ok(err)
					return
				}
			}
		}()
		go func() {
			for {
				if _, err := e.Stats(); err != nil {
					errs <- ok(err)
					return
				}
			}
		}()
		time.Sleep(time.Duration(20+round*10) * time.Millisecond)
		within(t, 10*time.Second, "Close", func() {
			if err := e.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
		})
		for range 4 {
			select {
			case err := <-errs:
				if err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: a goroutine did not stop after Close", round)
			}
		}
	}
}
