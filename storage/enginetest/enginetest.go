package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/metcd/metcd/storage"
)

// Factory opens the engine under test.
type Factory struct {
	// Name labels the engine in failure messages.
	Name string
	// Open opens (or reopens) the engine stored in dir. It should fail t
	// rather than return nil. Engines that keep nothing on disk ignore dir.
	Open func(t testing.TB, dir string) storage.Engine
}

// Run runs the conformance suite against the engine f opens. Subtests that
// need durability skip themselves when the engine is not Durable.
func Run(t *testing.T, f Factory) {
	t.Helper()
	if f.Open == nil {
		t.Fatal("enginetest: Factory.Open is nil")
	}
	t.Run("basic", func(t *testing.T) { testBasic(t, f) })
	t.Run("empty-value", func(t *testing.T) { testEmptyValue(t, f) })
	t.Run("batch", func(t *testing.T) { testBatch(t, f) })
	t.Run("batch-concurrent-commits", func(t *testing.T) { testConcurrentCommits(t, f) })
	t.Run("batch-atomicity", func(t *testing.T) { testBatchAtomicity(t, f) })
	t.Run("iterate", func(t *testing.T) { testIterate(t, f) })
	t.Run("snapshot", func(t *testing.T) { testSnapshot(t, f) })
	t.Run("iterator-lifetime", func(t *testing.T) { testIteratorLifetime(t, f) })
	t.Run("closed", func(t *testing.T) { testClosed(t, f) })
	t.Run("stats", func(t *testing.T) { testStats(t, f) })
	t.Run("reopen", func(t *testing.T) { testReopen(t, f) })
	t.Run("crash", func(t *testing.T) { testCrash(t, f) })
}

// open opens a fresh engine in a temporary directory and closes it when
// the test ends.
func open(t testing.TB, f Factory) storage.Engine {
	t.Helper()
	return openDir(t, f, t.TempDir())
}

func openDir(t testing.TB, f Factory, dir string) storage.Engine {
	t.Helper()
	e := f.Open(t, dir)
	if e == nil {
		t.Fatalf("%s: Open(%s) returned nil", f.Name, dir)
	}
	// Registered after TempDir's cleanup, so it runs before the directory
	// is removed. ErrClosed is expected when the test closed e itself.
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// kv is a copied key-value pair.
type kv struct{ k, v []byte }

func (p kv) String() string { return fmt.Sprintf("%q=%q", p.k, p.v) }

// commit applies fill's writes as one batch.
func commit(t testing.TB, e storage.Engine, sync bool, fill func(b storage.Batch)) {
	t.Helper()
	if err := tryCommit(e, sync, fill); err != nil {
		t.Fatal(err)
	}
}

// tryCommit is commit for goroutines other than the test's own.
func tryCommit(e storage.Engine, sync bool, fill func(b storage.Batch)) error {
	b := e.NewBatch()
	defer b.Close()
	fill(b)
	if err := b.Commit(sync); err != nil {
		return fmt.Errorf("commit of %d ops: %w", b.Len(), err)
	}
	return nil
}

func wantValue(t testing.TB, r storage.Reader, key, want []byte) {
	t.Helper()
	got, err := r.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func wantMissing(t testing.TB, r storage.Reader, key []byte) {
	t.Helper()
	got, err := r.Get(key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

func wantClosed(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrClosed) {
		t.Errorf("%s = %v, want ErrClosed", what, err)
	}
}

// scan returns copies of every pair the iterator yields and checks that it
// ends without error and closes cleanly.
func scan(r storage.Reader, opts storage.IterOptions) ([]kv, error) {
	it, err := r.NewIterator(opts)
	if err != nil {
		return nil, fmt.Errorf("NewIterator(%s): %w", fmtOpts(opts), err)
	}
	var out []kv
	for it.Next() {
		out = append(out, kv{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
	}
	if err := it.Err(); err != nil {
		it.Close()
		return nil, fmt.Errorf("iterating %s: %w", fmtOpts(opts), err)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("closing iterator %s: %w", fmtOpts(opts), err)
	}
	return out, nil
}

func mustScan(t testing.TB, r storage.Reader, opts storage.IterOptions) []kv {
	t.Helper()
	out, err := scan(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fmtOpts(o storage.IterOptions) string {
	q := func(b []byte) string {
		if b == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("[%s, %s) reverse=%v", q(o.Lower), q(o.Upper), o.Reverse)
}

// prefixRange bounds the keys starting with p, whose last byte is not 0xff.
func prefixRange(p string) storage.IterOptions {
	up := []byte(p)
	up[len(up)-1]++
	return storage.IterOptions{Lower: []byte(p), Upper: up}
}

// model is the expected content of an engine.
type model map[string][]byte

// want returns the pairs of m inside opts, in iteration order.
func (m model) want(opts storage.IterOptions) []kv {
	var out []kv
	for k, v := range m {
		kb := []byte(k)
		if opts.Lower != nil && bytes.Compare(kb, opts.Lower) < 0 {
			continue
		}
		if opts.Upper != nil && bytes.Compare(kb, opts.Upper) >= 0 {
			continue
		}
		out = append(out, kv{kb, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	if opts.Reverse {
		slices.Reverse(out)
	}
	return out
}

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// diff describes how got differs from want, or returns "".
func diff(got, want []kv) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%d pairs, want %d; first missing %v", len(got), len(want), want[i])
		case i >= len(want):
			return fmt.Sprintf("%d pairs, want %d; first extra %v", len(got), len(want), got[i])
		case !bytes.Equal(got[i].k, want[i].k) || !bytes.Equal(got[i].v, want[i].v):
			return fmt.Sprintf("pair %d is %v, want %v", i, got[i], want[i])
		}
	}
	return ""
}

// checkModel compares r with m through Get and iteration in both
// directions.
func checkModel(r storage.Reader, m model, opts storage.IterOptions) error {
	for _, rev := range []bool{false, true} {
		o := opts
		o.Reverse = rev
		got, err := scan(r, o)
		if err != nil {
			return err
		}
		if d := diff(got, m.want(o)); d != "" {
			return fmt.Errorf("scan %s: %s", fmtOpts(o), d)
		}
	}
	for _, p := range m.want(opts) {
		v, err := r.Get(p.k)
		if err != nil {
			return fmt.Errorf("Get(%q): %w", p.k, err)
		}
		if !bytes.Equal(v, p.v) {
			return fmt.Errorf("Get(%q) = %q, want %q", p.k, v, p.v)
		}
	}
	return nil
}

func testBasic(t *testing.T, f Factory) {
	e := open(t, f)
	if e.Name() == "" {
		t.Error("Name() is empty")
	}
	a := []byte("a")
	wantMissing(t, e, a)

	commit(t, e, false, func(b storage.Batch) { b.Put(a, []byte("1")) })
	wantValue(t, e, a, []byte("1"))
	commit(t, e, true, func(b storage.Batch) { b.Put(a, []byte("2")) })
	wantValue(t, e, a, []byte("2"))
	commit(t, e, false, func(b storage.Batch) { b.Delete(a) })
	wantMissing(t, e, a)
	commit(t, e, false, func(b storage.Batch) { b.Delete([]byte("never-written")) })

	t.Run("get-result-is-owned", func(t *testing.T) {
		commit(t, e, false, func(b storage.Batch) { b.Put(a, []byte("hello")) })
		v, err := e.Get(a)
		if err != nil {
			t.Fatal(err)
		}
		v[0] = 'X'
		wantValue(t, e, a, []byte("hello"))
	})

	t.Run("batch-copies-input", func(t *testing.T) {
		key, val, del := []byte("copied"), []byte("value"), []byte("a")
		b := e.NewBatch()
		b.Put(key, val)
		b.Delete(del)
		key[0], val[0], del[0] = 'X', 'X', 'z'
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		wantValue(t, e, []byte("copied"), []byte("value"))
		wantMissing(t, e, []byte("Xopied"))
		wantMissing(t, e, a)
	})

	t.Run("large-value", func(t *testing.T) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<12) // 64 KiB
		long := bytes.Repeat([]byte{'k'}, 512)
		commit(t, e, false, func(b storage.Batch) { b.Put(long, big) })
		wantValue(t, e, long, big)
	})

	if err := e.Sync(); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

func testEmptyValue(t *testing.T, f Factory) {
	e := open(t, f)
	empty, nilv, x := []byte("empty"), []byte("nil"), []byte("x")
	commit(t, e, false, func(b storage.Batch) {
		b.Put(empty, []byte{})
		b.Put(nilv, nil)
		b.Put(x, []byte("data"))
	})
	for _, k := range [][]byte{empty, nilv} {
		v, err := e.Get(k)
		if err != nil || len(v) != 0 {
			t.Errorf("Get(%q) = %q, %v; want empty value, nil", k, v, err)
		}
	}
	wantMissing(t, e, []byte("missing"))

	commit(t, e, false, func(b storage.Batch) { b.Put(x, nil) })
	if v, err := e.Get(x); err != nil || len(v) != 0 {
		t.Errorf("after overwrite with empty value Get(x) = %q, %v", v, err)
	}
	got := mustScan(t, e, storage.IterOptions{})
	want := model{"empty": nil, "nil": nil, "x": nil}.want(storage.IterOptions{})
	if d := diff(got, want); d != "" {
		t.Errorf("scan: %s", d)
	}
}

func testBatch(t *testing.T, f Factory) {
	e := open(t, f)
	k := func(s string) []byte { return []byte(s) }

	t.Run("len-and-visibility", func(t *testing.T) {
		b := e.NewBatch()
		if n := b.Len(); n != 0 {
			t.Errorf("new batch Len = %d", n)
		}
		b.Put(k("a"), k("1"))
		b.Put(k("a"), k("2"))
		b.Delete(k("b"))
		if n := b.Len(); n != 3 {
			t.Errorf("Len = %d, want 3 (duplicates and deletes count)", n)
		}
		wantMissing(t, e, k("a"))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		wantValue(t, e, k("a"), k("2"))
		if err := b.Commit(false); err == nil {
			t.Error("second Commit succeeded; a batch cannot be reused")
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close after Commit = %v, want nil", err)
		}
	})

	t.Run("ops-apply-in-order", func(t *testing.T) {
		commit(t, e, false, func(b storage.Batch) { b.Put(k("z"), k("old")) })
		commit(t, e, false, func(b storage.Batch) {
			b.Put(k("x"), k("1"))
			b.Put(k("x"), k("2"))
			b.Put(k("y"), k("1"))
			b.Delete(k("y"))
			b.Delete(k("z"))
			b.Put(k("z"), k("new"))
		})
		wantValue(t, e, k("x"), k("2"))
		wantMissing(t, e, k("y"))
		wantValue(t, e, k("z"), k("new"))
	})

	t.Run("close-discards", func(t *testing.T) {
		b := e.NewBatch()
		b.Put(k("discarded"), k("1"))
		if err := b.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		wantMissing(t, e, k("discarded"))
		wantClosed(t, "Commit after Close", b.Commit(false))
		wantMissing(t, e, k("discarded"))
	})

	t.Run("empty", func(t *testing.T) {
		commit(t, e, true, func(storage.Batch) {})
	})

	t.Run("large", func(t *testing.T) {
		const n = 10000
		m := model{}
		commit(t, e, true, func(b storage.Batch) {
			for i := range n {
				key, val := fmt.Sprintf("large/%05d", i), fmt.Sprintf("value-%d", i)
				m[key] = []byte(val)
				b.Put([]byte(key), []byte(val))
			}
		})
		if err := checkModel(e, m, prefixRange("large/")); err != nil {
			t.Fatal(err)
		}
	})

	// A sized batch (storage.NewBatchSize, which engines that are not
	// BatchSizers answer with NewBatch) behaves as any other, whether
	// its writes fit the size given or outgrow it.
	t.Run("sized", func(t *testing.T) {
		for _, size := range []struct{ keys, bytes int }{{0, 0}, {3, 20}, {2000, 40000}} {
			m := model{}
			prefix := fmt.Sprintf("sized%d/", size.keys)
			b := storage.NewBatchSize(e, size.keys, size.bytes)
			for i := range 1000 {
				key, val := fmt.Sprintf("%s%04d", prefix, i), fmt.Sprintf("value-%d", i)
				b.Put([]byte(key), []byte(val))
				m[key] = []byte(val)
				if i%7 == 0 {
					b.Delete([]byte(key))
					delete(m, key)
				}
			}
			if n := b.Len(); n != 1000+143 {
				t.Errorf("size %v: Len = %d, want %d", size, n, 1000+143)
			}
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if err := checkModel(e, m, prefixRange(prefix)); err != nil {
				t.Fatalf("size %v: %v", size, err)
			}
		}
	})
}

// testConcurrentCommits commits from several goroutines at once, which the
// Engine contract allows.
func testConcurrentCommits(t *testing.T, f Factory) {
	e := open(t, f)
	const writers, batches, perBatch = 8, 50, 10
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range batches {
				err := tryCommit(e, i%10 == 0, func(b storage.Batch) {
					for j := range perBatch {
						b.Put(fmt.Appendf(nil, "w%d/%03d/%d", w, i, j), []byte{byte(w), byte(i), byte(j)})
					}
				})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	m := model{}
	for w := range writers {
		for i := range batches {
			for j := range perBatch {
				m[fmt.Sprintf("w%d/%03d/%d", w, i, j)] = []byte{byte(w), byte(i), byte(j)}
			}
		}
	}
	if err := checkModel(e, m, storage.IterOptions{}); err != nil {
		t.Fatal(err)
	}
}

func testIteratorLifetime(t *testing.T, f Factory) {
	e := open(t, f)
	m := model{}
	commit(t, e, false, func(b storage.Batch) {
		for i := range 50 {
			key, val := fmt.Sprintf("life/%03d", i), fmt.Sprintf("value-%03d-%s", i, bytes.Repeat([]byte{'v'}, i))
			m[key] = []byte(val)
			b.Put([]byte(key), []byte(val))
		}
	})
	opts := prefixRange("life/")

	check := func(t *testing.T, r storage.Reader, write bool) {
		it, err := r.NewIterator(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var got []kv
		for n := 0; it.Next(); n++ {
			k, v := it.Key(), it.Value()
			kc, vc := bytes.Clone(k), bytes.Clone(v)
			if write && n%10 == 0 {
				// Overwriting the current key is not a call on the
				// iterator, so Key and Value must stay intact.
				commit(t, e, false, func(b storage.Batch) { b.Put(kc, []byte("overwritten")) })
			}
			if !bytes.Equal(k, kc) || !bytes.Equal(it.Key(), kc) ||
				!bytes.Equal(v, vc) || !bytes.Equal(it.Value(), vc) {
				t.Fatalf("position %d: Key/Value changed before Next: %q=%q, was %q=%q", n, it.Key(), it.Value(), kc, vc)
			}
			got = append(got, kv{kc, vc})
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if d := diff(got, m.want(opts)); d != "" {
			t.Fatalf("copies taken while iterating: %s", d)
		}
	}

	t.Run("snapshot", func(t *testing.T) {
		s, err := e.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s, false)
	})
	t.Run("engine-with-writes", func(t *testing.T) { check(t, e, true) })
}

func testClosed(t *testing.T, f Factory) {
	e := open(t, f)
	commit(t, e, false, func(b storage.Batch) { b.Put([]byte("k"), []byte("v")) })

	t.Run("iterator", func(t *testing.T) {
		it, err := e.NewIterator(storage.IterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !it.Next() {
			t.Fatalf("Next = false, Err = %v", it.Err())
		}
		if err := it.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		if it.Next() {
			t.Error("Next after Close = true")
		}
		wantClosed(t, "iterator Err after Close", it.Err())
		wantClosed(t, "second iterator Close", it.Close())
	})

	t.Run("snapshot", func(t *testing.T) {
		s, err := e.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		_, err = s.Get([]byte("k"))
		wantClosed(t, "snapshot Get after Close", err)
		it, err := s.NewIterator(storage.IterOptions{})
		if err == nil {
			it.Close()
		}
		wantClosed(t, "snapshot NewIterator after Close", err)
		wantClosed(t, "second snapshot Close", s.Close())
	})

	t.Run("engine", func(t *testing.T) {
		if err := e.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		_, err := e.Get([]byte("k"))
		wantClosed(t, "Get", err)
		it, err := e.NewIterator(storage.IterOptions{})
		if err == nil {
			it.Close()
		}
		wantClosed(t, "NewIterator", err)
		s, err := e.NewSnapshot()
		if err == nil {
			s.Close()
		}
		wantClosed(t, "NewSnapshot", err)
		b := e.NewBatch()
		b.Put([]byte("k"), []byte("v2"))
		wantClosed(t, "batch Commit", b.Commit(true))
		wantClosed(t, "Sync", e.Sync())
		_, err = e.Stats()
		wantClosed(t, "Stats", err)
		wantClosed(t, "second Close", e.Close())
	})
}

func testStats(t *testing.T, f Factory) {
	e := open(t, f)
	check := func(want int64) {
		t.Helper()
		st, err := e.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.DiskBytes < 0 {
			t.Errorf("DiskBytes = %d", st.DiskBytes)
		}
		if st.Keys == -1 {
			t.Skip("engine does not count keys")
		}
		if st.Keys != want {
			t.Errorf("Keys = %d, want %d", st.Keys, want)
		}
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "stats/%03d", i) }
	check(0)
	commit(t, e, false, func(b storage.Batch) {
		for i := range 100 {
			b.Put(key(i), []byte("v"))
		}
	})
	check(100)
	commit(t, e, false, func(b storage.Batch) {
		for i := range 10 {
			b.Put(key(i), []byte("overwritten"))
		}
	})
	check(100)
	commit(t, e, false, func(b storage.Batch) {
		for i := 90; i < 105; i++ { // 10 present, 5 absent
			b.Delete(key(i))
		}
		b.Put([]byte("transient"), nil)
		b.Delete([]byte("transient"))
	})
	check(90)
}
