package pebble_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/pebble"
)

func loadKey(i int) []byte { return []byte(fmt.Sprintf("load/%07d", i)) }

// loadValue is 200 bytes that do not compress, so tables fill up.
func loadValue(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 1))
	v := make([]byte, 0, 200)
	for len(v) < 200 {
		v = binary.LittleEndian.AppendUint64(v, r.Uint64())
	}
	return v
}

// TestLoad loads keys across several tables into an engine that already
// holds some, and checks that nothing shows before Finish, that loaded keys
// win over older values, and that everything survives a reopen.
func TestLoad(t *testing.T) {
	defer pebble.SetLoadTableSize(pebble.SetLoadTableSize(64 << 10))
	dir := t.TempDir()
	e := open(t, dir, nil)
	put(t, e, true, string(loadKey(5)), "old", "other", "kept")

	l, err := e.NewLoad()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort()
	const n = 5000 // about 1 MB: more than a dozen tables
	for i := 0; i < n; i++ {
		if err := l.Put(loadKey(i), loadValue(i)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "load.tmp", "*.sst"))
	if len(tables) < 10 {
		t.Fatalf("%d tables written before Finish, want several", len(tables))
	}
	if _, err := e.Get(loadKey(0)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("loaded key visible before Finish: %v", err)
	}
	wantValue(t, e, string(loadKey(5)), "old")
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := l.Abort(); err != nil {
		t.Fatalf("Abort after Finish: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "load.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("load.tmp left after Finish: %v", err)
	}
	check := func(r storage.Reader) {
		t.Helper()
		it, err := r.NewIterator(storage.IterOptions{Lower: []byte("load/"), Upper: []byte("load0")})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		i := 0
		for ; it.Next(); i++ {
			if !bytes.Equal(it.Key(), loadKey(i)) || !bytes.Equal(it.Value(), loadValue(i)) {
				t.Fatalf("record %d: %q = %x", i, it.Key(), it.Value())
			}
		}
		if err := it.Err(); err != nil || i != n {
			t.Fatalf("iterated %d of %d keys: %v", i, n, err)
		}
		wantValue(t, r, "other", "kept")
	}
	check(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	check(open(t, dir, nil))
}

func TestLoadRefusesDisorder(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	for _, keys := range [][]string{{"b", "a"}, {"a", "a"}} {
		l, err := e.NewLoad()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Put([]byte(keys[0]), []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := l.Put([]byte(keys[1]), []byte("2")); err == nil {
			t.Fatalf("%q after %q accepted", keys[1], keys[0])
		}
		if err := l.Finish(); err == nil {
			t.Fatalf("Finish after a refused key succeeded (%q, %q)", keys[0], keys[1])
		}
		if err := l.Abort(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Get([]byte(keys[0])); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("key of a failed load visible: %v", err)
		}
	}
}

func TestLoadAbort(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir, nil)
	l, err := e.NewLoad()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := l.Put(loadKey(i), loadValue(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Finish after Abort: %v, want ErrClosed", err)
	}
	if err := l.Put(loadKey(200), nil); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Put after Abort: %v, want ErrClosed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "load.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("load.tmp left after Abort: %v", err)
	}
	if _, err := e.Get(loadKey(0)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("aborted key visible: %v", err)
	}
	// An empty load is fine and changes nothing.
	l, err = e.NewLoad()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(); err != nil {
		t.Fatalf("empty load: %v", err)
	}
}

// TestLoadTableError makes the workers fail to create their tables: Put
// must report it within a few tables (a worker records its error before it
// takes another table, and Put checks before handing one over), Finish
// must report the same, and nothing may become visible.
func TestLoadTableError(t *testing.T) {
	defer pebble.SetLoadTableSize(pebble.SetLoadTableSize(16 << 10)) // about 75 records
	dir := t.TempDir()
	e := open(t, dir, nil)
	l, err := e.NewLoad()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abort()
	i := 0
	for ; i < 400; i++ { // several tables
		if err := l.Put(loadKey(i), loadValue(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Moved, not removed: a worker may be creating a table in it right now,
	// which would make a removal fail.
	if err := os.Rename(filepath.Join(dir, "load.tmp"), filepath.Join(t.TempDir(), "moved")); err != nil {
		t.Fatal(err)
	}
	var putErr error
	for ; i < 2000 && putErr == nil; i++ {
		putErr = l.Put(loadKey(i), loadValue(i))
	}
	if !errors.Is(putErr, os.ErrNotExist) {
		t.Fatalf("Put after %d records, tables unwritable: %v, want a not-exist error", i, putErr)
	}
	if err := l.Finish(); err == nil || err.Error() != putErr.Error() {
		t.Fatalf("Finish: %v, want %v", err, putErr)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get(loadKey(0)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("key of a failed load visible: %v", err)
	}
}

func TestLoadAfterClose(t *testing.T) {
	e, err := pebble.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.NewLoad()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put([]byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Finish on a closed engine: %v, want ErrClosed", err)
	}
	if err := l.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.NewLoad(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("NewLoad on a closed engine: %v, want ErrClosed", err)
	}
}

// BenchmarkLoad bulk-loads 1 M records (10-byte keys in order, 200-byte
// values that do not compress) into an empty engine, as a snapshot install
// does, and reports the whole load, Finish included, per record.
func BenchmarkLoad(b *testing.B) {
	const n = 1 << 20
	vals := make([][]byte, 1024)
	for i := range vals {
		vals[i] = loadValue(i)
	}
	for b.Loop() {
		b.StopTimer()
		e, err := pebble.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		l, err := e.NewLoad()
		if err != nil {
			b.Fatal(err)
		}
		var key []byte
		for i := 0; i < n; i++ {
			key = binary.BigEndian.AppendUint64(append(key[:0], "k/"...), uint64(i))
			if err := l.Put(key, vals[i%len(vals)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Finish(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
