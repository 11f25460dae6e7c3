package pebble_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/enginetest"
	"github.com/metcd/metcd/storage/pebble"
)

var factory = enginetest.Factory{
	Name: "pebble",
	Open: func(t testing.TB, dir string) storage.Engine {
		e, err := pebble.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	},
}

func TestEngine(t *testing.T) { enginetest.Run(t, factory) }

func BenchmarkEngine(b *testing.B) { enginetest.Bench(b, factory) }

func BenchmarkWorkloads(b *testing.B) { enginetest.BenchWorkloads(b, factory) }

func open(t *testing.T, dir string, opts *pebble.Options) *pebble.Engine {
	t.Helper()
	e, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func put(t *testing.T, e storage.Engine, sync bool, kvs ...string) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	for i := 0; i+1 < len(kvs); i += 2 {
		b.Put([]byte(kvs[i]), []byte(kvs[i+1]))
	}
	if err := b.Commit(sync); err != nil {
		t.Fatal(err)
	}
}

func wantValue(t *testing.T, r storage.Reader, key, want string) {
	t.Helper()
	got, err := r.Get([]byte(key))
	if err != nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func wantClosed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrClosed) {
		t.Errorf("%s = %v, want ErrClosed", what, err)
	}
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(t *testing.T, dir string) (int64, []string) {
	t.Helper()
	var size int64
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += info.Size()
		names = append(names, d.Name())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return size, names
}

func TestProperties(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "nested") // Open creates it
	e := open(t, dir, nil)
	if e.Name() != "pebble" || !e.Durable() {
		t.Errorf("Name, Durable = %q, %v; want pebble, true", e.Name(), e.Durable())
	}
	put(t, e, true, "k", strings.Repeat("v", 100_000))
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != -1 {
		t.Errorf("Stats.Keys = %d, want -1", st.Keys)
	}
	size, names := dirSize(t, dir)
	t.Logf("Stats.DiskBytes = %d, files in dir: %d bytes %v", st.DiskBytes, size, names)
	// The 100 kB value is only in the WAL so far, which must be counted.
	if st.DiskBytes < 100_000 || st.DiskBytes != size {
		t.Errorf("Stats.DiskBytes = %d, want the %d bytes in dir (at least 100000)", st.DiskBytes, size)
	}
	// The quota's cheap figure is Stats' LiveBytes, and counts the value.
	live, err := e.LiveBytes()
	if err != nil || live != st.LiveBytes || live < 100_000 {
		t.Errorf("LiveBytes = %d, %v; want Stats.LiveBytes %d (at least 100000)", live, err, st.LiveBytes)
	}
	var hasWAL, hasManifest bool
	for _, n := range names {
		hasWAL = hasWAL || strings.HasSuffix(n, ".log")
		hasManifest = hasManifest || strings.HasPrefix(n, "MANIFEST-")
	}
	if !hasWAL || !hasManifest {
		t.Errorf("files in %s = %v; want a WAL (*.log) and a MANIFEST", dir, names)
	}
}

// Unsynced commits survive a clean Close: it syncs the WAL.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	e, err := pebble.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, e, false, "a", "1", "b", "2")
	put(t, e, true, "c", "3")
	put(t, e, false, "a", "4")
	// A batch larger than half a memtable takes Pebble's large-batch path
	// (it is queued as its own flushable rather than copied into the
	// memtable).
	big := strings.Repeat("B", 3<<20)
	put(t, e, false, "big", big, "d", "5")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = open(t, dir, nil)
	for k, v := range map[string]string{"a": "4", "b": "2", "c": "3", "d": "5", "big": big} {
		wantValue(t, e, k, v)
	}
}

// A small memtable forces flushes to sstables; the data must read back
// the same from them, before and after a reopen.
func TestFlushToSSTables(t *testing.T) {
	dir := t.TempDir()
	opts := &pebble.Options{CacheSize: 1 << 20, MemTableSize: 256 << 10}
	e, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("x"), 1000)
	const n = 4000 // ~4 MB
	for i := 0; i < n; i += 100 {
		b := e.NewBatch()
		for j := i; j < i+100; j++ {
			b.Put(fmt.Appendf(nil, "key/%05d", j), append(val, fmt.Sprint(j)...))
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	check := func(e *pebble.Engine) {
		t.Helper()
		it, err := e.NewIterator(storage.IterOptions{Lower: []byte("key/"), Upper: []byte("key0")})
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		i := 0
		for ; it.Next(); i++ {
			if k := fmt.Sprintf("key/%05d", i); string(it.Key()) != k || !bytes.Equal(it.Value(), append(val, fmt.Sprint(i)...)) {
				t.Fatalf("pair %d is %q (%d bytes), want %q", i, it.Key(), len(it.Value()), k)
			}
		}
		if it.Err() != nil || i != n {
			t.Fatalf("scanned %d keys, Err %v; want %d", i, it.Err(), n)
		}
	}
	check(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, names := dirSize(t, dir)
	sst := 0
	for _, name := range names {
		if strings.HasSuffix(name, ".sst") {
			sst++
		}
	}
	if sst == 0 {
		t.Errorf("no sstables in %s after writing 4 MB with a 256 KiB memtable: %v", dir, names)
	}
	check(open(t, dir, opts))
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir, nil)
	put(t, e, false, "k", "v")

	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(mustGetwd(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, dir + "/", link, rel} {
		if e2, err := pebble.Open(d, nil); err == nil {
			e2.Close()
			t.Errorf("second Open(%s) of an open store succeeded", d)
		} else {
			t.Logf("second Open(%s): %v", d, err)
		}
	}
	wantValue(t, e, "k", "v") // the first engine is unharmed
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2 := open(t, link, nil) // the lock is released by Close
	wantValue(t, e2, "k", "v")
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if e, err := pebble.Open(file, nil); err == nil {
		e.Close()
		t.Error("Open of a regular file succeeded")
	} else if !strings.HasPrefix(err.Error(), "pebble: open ") {
		t.Errorf("Open error %q lacks context", err)
	}
	if e, err := pebble.Open(t.TempDir(), &pebble.Options{CacheSize: -1}); err == nil {
		e.Close()
		t.Error("Open with a negative CacheSize succeeded")
	}
}

// Closing the engine with snapshots, iterators and batches still open must
// not panic or report leaked iterators; they all report ErrClosed after.
func TestCloseWithOpenHandles(t *testing.T) {
	e, err := pebble.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, e, false, "a", "1", "b", "2", "c", "3")

	mid, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !mid.Next() {
		t.Fatal(mid.Err())
	}
	key := mid.Key()
	unstarted, err := e.NewIterator(storage.IterOptions{Reverse: true})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := e.NewIterator(storage.IterOptions{Lower: []byte("b"), Upper: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	snapIt, err := snap.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !snapIt.Next() {
		t.Fatal(snapIt.Err())
	}
	pending := e.NewBatch()
	pending.Put([]byte("d"), []byte("4"))

	if err := e.Close(); err != nil {
		t.Fatalf("Close with open handles = %v", err)
	}
	if string(key) != "a" {
		t.Errorf("Key slice taken before Close changed to %q", key)
	}
	for name, it := range map[string]storage.Iterator{"mid": mid, "unstarted": unstarted, "snapshot": snapIt} {
		if it.Next() {
			t.Errorf("%s iterator: Next after engine Close = true", name)
		}
		wantClosed(t, name+" iterator Err", it.Err())
		if err := it.Close(); err != nil {
			t.Errorf("%s iterator: first Close after engine Close = %v", name, err)
		}
		wantClosed(t, name+" iterator second Close", it.Close())
	}
	if empty.Next() {
		t.Error("empty iterator: Next = true")
	}
	if err := empty.Close(); err != nil {
		t.Errorf("empty iterator Close = %v", err)
	}
	_, err = snap.Get([]byte("a"))
	wantClosed(t, "snapshot Get", err)
	_, err = snap.NewIterator(storage.IterOptions{})
	wantClosed(t, "snapshot NewIterator", err)
	if err := snap.Close(); err != nil {
		t.Errorf("first snapshot Close after engine Close = %v", err)
	}
	wantClosed(t, "second snapshot Close", snap.Close())
	wantClosed(t, "pending batch Commit", pending.Commit(true))

	b := e.NewBatch()
	b.Put([]byte("x"), []byte("y"))
	b.Delete([]byte("a"))
	if b.Len() != 2 {
		t.Errorf("Len = %d, want 2", b.Len())
	}
	wantClosed(t, "Commit of a batch made after Close", b.Commit(false))
	if err := b.Close(); err != nil {
		t.Errorf("batch Close = %v", err)
	}
	_, err = e.LiveBytes()
	wantClosed(t, "LiveBytes after Close", err)
	_, err = e.Stats()
	wantClosed(t, "Stats after Close", err)
	wantClosed(t, "engine second Close", e.Close())
}

// Closing a snapshot closes the iterators made from it.
func TestSnapshotCloseClosesIterators(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	put(t, e, false, "a", "1", "b", "2")
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := s.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || string(it.Key()) != "a" {
		t.Fatalf("first key %q, Err %v", it.Key(), it.Err())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() {
		t.Error("Next after snapshot Close = true")
	}
	wantClosed(t, "Err after snapshot Close", it.Err())
	if err := it.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	wantValue(t, e, "b", "2")
}

// Writing into slices returned by Get or an iterator must not corrupt the
// store, which for Pebble would mean its memtable or block cache.
func TestReturnedSlicesAreCopies(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	put(t, e, false, "key", "value")
	v, err := e.Get([]byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	copy(v, "XXXXX")
	for _, rev := range []bool{false, true} {
		it, err := e.NewIterator(storage.IterOptions{Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		for it.Next() {
			copy(it.Key(), "XXX")
			copy(it.Value(), "XXXXX")
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	wantValue(t, e, "key", "value")
}

// Only nil means unbounded: an empty non-nil Upper admits nothing, an
// empty Lower everything.
func TestEmptyBounds(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	put(t, e, false, "a", "1", "b", "2")
	count := func(opts storage.IterOptions) int {
		it, err := e.NewIterator(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for it.Next() {
			n++
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		return n
	}
	for _, rev := range []bool{false, true} {
		if n := count(storage.IterOptions{Upper: []byte{}, Reverse: rev}); n != 0 {
			t.Errorf("Upper=[]byte{} reverse=%v: %d keys, want 0", rev, n)
		}
		if n := count(storage.IterOptions{Lower: []byte{}, Reverse: rev}); n != 2 {
			t.Errorf("Lower=[]byte{} reverse=%v: %d keys, want 2", rev, n)
		}
		if n := count(storage.IterOptions{Lower: []byte("b"), Upper: []byte("b"), Reverse: rev}); n != 0 {
			t.Errorf("Lower=Upper reverse=%v: %d keys, want 0", rev, n)
		}
	}
}

// An empty batch committed with sync is a synced Commit, so it must still
// sync the WAL; and Sync itself must work on an idle engine.
func TestEmptySyncedCommit(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	put(t, e, false, "a", "1")
	b := e.NewBatch()
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	wantValue(t, e, "a", "1")
}

// Close racing with readers and writers on other goroutines: every call
// either works or returns ErrClosed, and nothing panics.
func TestCloseRacesWithUse(t *testing.T) {
	for round := range 5 {
		e, err := pebble.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		put(t, e, false, "a", "1", "b", "2", "c", "3")
		s, err := e.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		ok := func(err error) {
			if err != nil && !errors.Is(err, storage.ErrClosed) {
				errs <- err
			}
		}
		start := make(chan struct{})
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					var r storage.Reader = e
					if g%2 == 1 {
						r = s
					}
					_, err := r.Get([]byte("a"))
					ok(err)
					it, err := r.NewIterator(storage.IterOptions{Reverse: i%2 == 0})
					ok(err)
					if err == nil {
						for it.Next() {
						}
						ok(it.Err())
						it.Close()
					}
					b := e.NewBatch()
					b.Put(fmt.Appendf(nil, "g%d/%d", g, i), []byte("v"))
					err = b.Commit(i%8 == 0)
					ok(err)
					if errors.Is(err, storage.ErrClosed) {
						return
					}
				}
			}()
		}
		close(start)
		for range round * 3 {
			if err := e.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Close(); err != nil {
			t.Fatalf("round %d: Close = %v", round, err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		s.Close()
	}
}

// An empty non-nil Lower must behave as nil. Pebble pools its iterators and
// copies bounds into the pooled buffers, so an empty Lower reaches Pebble
// as non-nil only after an iterator with a real bound has been recycled;
// alternate the two, many times.
func TestEmptyLowerRepeated(t *testing.T) {
	e := open(t, t.TempDir(), nil)
	put(t, e, false, "a", "1", "b", "2")
	for i := 0; i < 500; i++ {
		bounded, err := e.NewIterator(storage.IterOptions{Lower: []byte("a"), Upper: []byte("z")})
		if err != nil {
			t.Fatal(err)
		}
		for bounded.Next() {
		}
		bounded.Close()
		it, err := e.NewIterator(storage.IterOptions{Lower: []byte{}, Reverse: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for it.Next() {
			n++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		it.Close()
		if n != 2 {
			t.Fatalf("iteration %d: %d keys, want 2", i, n)
		}
	}
}

// TestFilterSkipsAbsentKeys: a Get of a key that no table holds is answered
// by the tables' filters, not by reading their data blocks. This is the
// lookup a put makes for a key it creates.
func TestFilterSkipsAbsentKeys(t *testing.T) {
	e := open(t, t.TempDir(), &pebble.Options{CacheSize: 1 << 20, MemTableSize: 256 << 10})
	val := bytes.Repeat([]byte("v"), 100)
	const n = 4000
	for i := 0; i < n; i += 200 {
		b := e.NewBatch()
		for j := i; j < i+200; j += 2 { // even keys only
			b.Put(fmt.Appendf(nil, "key/%05d", j), val)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	// Every key now lives in a table in L0. (Pebble's Get skips the filters
	// of the last level, L6, where a key it looks up is usually found.)
	if err := pebble.Flush(e); err != nil {
		t.Fatal(err)
	}
	before := pebble.FilterHits(e)
	for j := 1; j < n; j += 2 {
		if v, err := e.Get(fmt.Appendf(nil, "key/%05d", j)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get of absent key/%05d = %q, %v; want ErrNotFound", j, v, err)
		}
	}
	for j := 0; j < n; j += 2 {
		if v, err := e.Get(fmt.Appendf(nil, "key/%05d", j)); err != nil || !bytes.Equal(v, val) {
			t.Fatalf("Get of key/%05d = %d bytes, %v; want the value", j, len(v), err)
		}
	}
	// A 10-bit Bloom filter lets about 1 % of absent keys through.
	if hits := pebble.FilterHits(e) - before; hits < n/2*9/10 {
		t.Errorf("filters excluded %d of %d absent-key lookups; want at least 90 %%", hits, n/2)
	}
}
