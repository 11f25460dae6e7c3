package leveldb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/enginetest"
)

func openT(t testing.TB, dir string, opts *Options) *Engine {
	t.Helper()
	e, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var factory = enginetest.Factory{
	Name: "leveldb",
	Open: func(t testing.TB, dir string) storage.Engine { return openT(t, dir, nil) },
}

func TestEngine(t *testing.T) { enginetest.Run(t, factory) }

func BenchmarkEngine(b *testing.B) { enginetest.Bench(b, factory) }

func BenchmarkWorkloads(b *testing.B) { enginetest.BenchWorkloads(b, factory) }

func put(t testing.TB, e storage.Engine, sync bool, kvs ...string) {
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

func wantGet(t testing.TB, r storage.Reader, key, want string) {
	t.Helper()
	v, err := r.Get([]byte(key))
	if err != nil || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, err, want)
	}
}

func TestProperties(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	defer e.Close()
	if e.Name() != "leveldb" || !e.Durable() {
		t.Errorf("Name, Durable = %q, %v; want leveldb, true", e.Name(), e.Durable())
	}
	put(t, e, true, "k", strings.Repeat("v", 1000))
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != -1 || st.DiskBytes < 1000 {
		t.Errorf("Stats = %+v; want Keys -1 and DiskBytes >= 1000 (the synced journal)", st)
	}
}

// The database lives in the given directory, which Open creates, and the
// data is back after a reopen.
func TestFilesInDirAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	e := openT(t, dir, nil)
	put(t, e, false, "x", "1", "y", "2")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var journals int
	for _, de := range ents {
		names[de.Name()] = true
		if strings.HasSuffix(de.Name(), ".log") {
			journals++
		}
	}
	if !names["CURRENT"] || !names["LOCK"] || journals == 0 {
		t.Errorf("files in %s = %v; want CURRENT, LOCK and a journal", dir, names)
	}

	e = openT(t, dir, nil)
	defer e.Close()
	wantGet(t, e, "x", "1")
	wantGet(t, e, "y", "2")
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	n, err := dirSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.DiskBytes <= 0 || st.DiskBytes != n {
		t.Errorf("DiskBytes = %d, want the directory's %d bytes", st.DiskBytes, n)
	}
}

// goleveldb locks the directory: a second Open fails cleanly, even in the
// same process, until the first engine is closed.
func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, nil)
	put(t, e, false, "k", "v")
	if e2, err := Open(dir, nil); err == nil {
		e2.Close()
		t.Fatal("second Open of an open directory succeeded")
	} else if !strings.Contains(err.Error(), "leveldb: open") {
		t.Errorf("second Open error %q lacks context", err)
	}
	wantGet(t, e, "k", "v") // the first engine is unharmed
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, nil)
	defer e.Close()
	wantGet(t, e, "k", "v")
}

func TestOpenNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, err := Open(f, nil); err == nil {
		e.Close()
		t.Fatal("Open on a regular file succeeded")
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []*Options{
		{Compression: NoCompression, BlockCacheCapacity: -1, WriteBuffer: 64 << 10},
		{Compression: Snappy, BlockCacheCapacity: 1 << 20},
	} {
		dir := t.TempDir()
		e := openT(t, dir, o)
		val := bytes.Repeat([]byte("compressible "), 100)
		for i := range 200 {
			put(t, e, false, fmt.Sprintf("k%04d", i), string(val))
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = openT(t, dir, o)
		for i := range 200 {
			wantGet(t, e, fmt.Sprintf("k%04d", i), string(val))
		}
		e.Close()
	}
}

// Writing into the slices an iterator returns must not disturb the
// iteration or the data, even with several versions of each key around
// (goleveldb compares against its key buffer to skip older versions).
func TestIteratorSlicesCanBeWritten(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	defer e.Close()
	for gen := range 3 {
		put(t, e, false, "a", fmt.Sprint("a", gen), "b", fmt.Sprint("b", gen), "c", fmt.Sprint("c", gen))
	}
	for _, rev := range []bool{false, true} {
		it, err := e.NewIterator(storage.IterOptions{Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for it.Next() {
			got = append(got, string(it.Key())+"="+string(it.Value()))
			copy(it.Key(), "\xff")
			copy(it.Value(), "XX")
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		it.Close()
		want := "a=a2 b=b2 c=c2"
		if rev {
			want = "c=c2 b=b2 a=a2"
		}
		if strings.Join(got, " ") != want {
			t.Errorf("reverse=%v: got %v, want %s", rev, got, want)
		}
	}
	wantGet(t, e, "b", "b2")
}

func TestEmptyBounds(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	defer e.Close()
	put(t, e, false, "a", "1", "b", "2")
	count := func(o storage.IterOptions) int {
		it, err := e.NewIterator(o)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		n := 0
		for it.Next() {
			n++
		}
		return n
	}
	for _, c := range []struct {
		o    storage.IterOptions
		want int
	}{
		{storage.IterOptions{Lower: []byte{}}, 2},
		{storage.IterOptions{Upper: []byte{}}, 0},
		{storage.IterOptions{Upper: []byte{}, Reverse: true}, 0},
		{storage.IterOptions{Lower: []byte{}, Upper: []byte("b")}, 1},
		{storage.IterOptions{Lower: []byte("b"), Upper: []byte("a")}, 0},
	} {
		if n := count(c.o); n != c.want {
			t.Errorf("%+v: %d keys, want %d", c.o, n, c.want)
		}
	}
}

// Closing the engine under an open iterator and snapshot releases them:
// they report ErrClosed instead of touching a closed database.
func TestCloseWithOpenIteratorAndSnapshot(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	for i := range 100 {
		put(t, e, false, fmt.Sprintf("k%03d", i), "v")
	}
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sit, err := s.NewIterator(storage.IterOptions{Reverse: true})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || !sit.Next() {
		t.Fatal("iterators are empty")
	}
	b := e.NewBatch()
	b.Put([]byte("late"), []byte("v"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for name, x := range map[string]storage.Iterator{"engine": it, "snapshot": sit} {
		if x.Next() {
			t.Errorf("%s iterator: Next after engine Close = true", name)
		}
		if !errors.Is(x.Err(), storage.ErrClosed) {
			t.Errorf("%s iterator: Err = %v, want ErrClosed", name, x.Err())
		}
		if err := x.Close(); err != nil {
			t.Errorf("%s iterator: Close = %v", name, err)
		}
	}
	if _, err := s.Get([]byte("k000")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("snapshot Get after engine Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("snapshot Close after engine Close = %v", err)
	}
	if err := b.Commit(false); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("outstanding batch Commit = %v, want ErrClosed", err)
	}
	if len(e.iters) != 0 {
		t.Errorf("%d iterators still registered", len(e.iters))
	}
}

// A drained iterator gives its library resources back without Close.
func TestDrainedIteratorUnregisters(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	defer e.Close()
	put(t, e, false, "a", "1")
	it, err := e.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.Next() {
	}
	e.regMu.Lock()
	n := len(e.iters)
	e.regMu.Unlock()
	if n != 0 {
		t.Errorf("%d iterators registered after draining, want 0", n)
	}
}

// Sync is free when nothing is pending and writes a synced marker
// otherwise; the marker (a deletion of the empty key) is invisible.
func TestSyncMarkerInvisible(t *testing.T) {
	e := openT(t, t.TempDir(), nil)
	defer e.Close()
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	put(t, e, false, "a", "1")
	if !e.dirty.Load() {
		t.Error("unsynced commit did not mark the engine dirty")
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	if e.dirty.Load() {
		t.Error("engine dirty after Sync")
	}
	put(t, e, true, "b", "2")
	if e.dirty.Load() {
		t.Error("engine dirty after a synced commit")
	}
	it, err := e.NewIterator(storage.IterOptions{Lower: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for it.Next() {
		keys = append(keys, string(it.Key()))
	}
	if strings.Join(keys, ",") != "a,b" {
		t.Errorf("keys = %q, want a,b", keys)
	}
}

// With a tiny write buffer goleveldb switches journals often; synced
// commits must leave every older journal fsynced (journalSyncer) and the
// data must survive reopening. Batches larger than the write buffer take
// goleveldb's transaction path and must be atomic too.
func TestJournalRotationAndLargeBatches(t *testing.T) {
	dir := t.TempDir()
	o := &Options{WriteBuffer: 32 << 10}
	e := openT(t, dir, o)
	first, err := journalNums(dir)
	if err != nil || len(first) != 1 {
		t.Fatalf("journals after Open = %v, %v; want one", first, err)
	}
	val := strings.Repeat("x", 300)
	for i := range 400 {
		put(t, e, i%50 == 49, fmt.Sprintf("k%04d", i), val)
	}
	nums, err := journalNums(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest := uint64(0)
	for _, n := range nums {
		newest = max(newest, n)
	}
	e.journals.mu.Lock()
	below := e.journals.syncedBelow
	e.journals.mu.Unlock()
	if newest <= first[0] {
		t.Fatalf("journals %v after writing 4 write buffers, %v at Open: no switch", nums, first)
	}
	if below != newest {
		t.Errorf("syncedBelow = %d, want the newest journal %d", below, newest)
	}

	big := e.NewBatch()
	for i := range 500 {
		big.Put(fmt.Appendf(nil, "big%04d", i), []byte(val))
	}
	if err := big.Commit(false); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, o)
	defer e.Close()
	for i := range 400 {
		wantGet(t, e, fmt.Sprintf("k%04d", i), val)
	}
	for i := range 500 {
		wantGet(t, e, fmt.Sprintf("big%04d", i), val)
	}
}

func TestJournalSyncer(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"000003.log", "000005.log", "000004.ldb", "LOG", "LOG.old", "MANIFEST-000002", "x.log", ".log"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := &journalSyncer{dir: dir}
	if err := j.sync(); err != nil {
		t.Fatal(err)
	}
	if j.syncedBelow != 5 || j.dirSyncedFor != 5 {
		t.Errorf("after first sync: syncedBelow %d, dirSyncedFor %d; want 5, 5", j.syncedBelow, j.dirSyncedFor)
	}
	// goleveldb deletes an old journal once its memtable is in a table;
	// a newer journal appears when it switches memtables.
	if err := os.Remove(filepath.Join(dir, "000003.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "1000000.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := j.sync(); err != nil {
		t.Fatal(err)
	}
	if j.syncedBelow != 1000000 || j.dirSyncedFor != 1000000 {
		t.Errorf("after switch: syncedBelow %d, dirSyncedFor %d; want 1000000", j.syncedBelow, j.dirSyncedFor)
	}
}

// BenchmarkCommitSync measures a synced one-key commit: the journal fsync
// plus journalSyncer's readdir.
func BenchmarkCommitSync(b *testing.B) {
	e := openT(b, b.TempDir(), nil)
	defer e.Close()
	val := bytes.Repeat([]byte{'v'}, 256)
	b.ReportAllocs()
	for i := range b.N {
		bt := e.NewBatch()
		bt.Put(fmt.Appendf(nil, "k%08d", i), val)
		if err := bt.Commit(true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalSyncer is journalSyncer's share of a synced commit in
// the steady state (no old journal to fsync).
func BenchmarkJournalSyncer(b *testing.B) {
	e := openT(b, b.TempDir(), nil)
	defer e.Close()
	put(b, e, true, "k", "v")
	b.ReportAllocs()
	for range b.N {
		if err := e.journals.sync(); err != nil {
			b.Fatal(err)
		}
	}
}
