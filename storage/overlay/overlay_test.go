package overlay_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

// kv is one key-value pair as an iterator yields it.
type kv struct{ k, v string }

// model is the expected state: key -> value.
type model map[string]string

// want returns the pairs of m inside opts, in iteration order.
func (m model) want(opts storage.IterOptions) []kv {
	var out []kv
	for k, v := range m {
		if opts.Lower != nil && k < string(opts.Lower) {
			continue
		}
		if opts.Upper != nil && k >= string(opts.Upper) {
			continue
		}
		out = append(out, kv{k, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return bytes.Compare([]byte(a.k), []byte(b.k)) })
	if opts.Reverse {
		slices.Reverse(out)
	}
	return out
}

// scan returns every pair r yields for opts; the iteration must end
// without error and close cleanly.
func scan(t testing.TB, r storage.Reader, opts storage.IterOptions) []kv {
	t.Helper()
	it, err := r.NewIterator(opts)
	if err != nil {
		t.Fatalf("NewIterator(%s): %v", fmtOpts(opts), err)
	}
	var out []kv
	for it.Next() {
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating %s: %v", fmtOpts(opts), err)
	}
	if it.Next() {
		t.Fatalf("iterating %s: Next after the end = true", fmtOpts(opts))
	}
	if err := it.Close(); err != nil {
		t.Fatalf("closing %s: %v", fmtOpts(opts), err)
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

// diff describes how got differs from want, or returns "".
func diff(got, want []kv) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("%d pairs, want %d; first missing %q", len(got), len(want), want[i])
		case i >= len(want):
			return fmt.Sprintf("%d pairs, want %d; first extra %q", len(got), len(want), got[i])
		case got[i] != want[i]:
			return fmt.Sprintf("pair %d is %q, want %q", i, got[i], want[i])
		}
	}
	return ""
}

// newEngine returns a memory engine holding m.
func newEngine(t testing.TB, m model) *memory.Engine {
	t.Helper()
	e := memory.New()
	t.Cleanup(func() { e.Close() })
	b := e.NewBatch()
	for k, v := range m {
		b.Put([]byte(k), []byte(v))
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	return e
}

// op is a write to a Batch, for table tests.
type op struct {
	del  bool
	k, v string
}

func put(k, v string) op { return op{k: k, v: v} }
func del(k string) op    { return op{del: true, k: k} }

func apply(b *overlay.Batch, ops []op) {
	for _, o := range ops {
		if o.del {
			b.Delete([]byte(o.k))
		} else {
			b.Put([]byte(o.k), []byte(o.v))
		}
	}
}

// base is the engine content shared by the table tests.
var base = model{"a": "base-a", "c": "base-c", "e": "base-e", "g": "", "i": "base-i"}

func TestGet(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		key  string
		want string // "" with missing false is an empty value
		miss bool
	}{
		{name: "base only", key: "a", want: "base-a"},
		{name: "base empty value", key: "g", want: ""},
		{name: "missing everywhere", key: "b", miss: true},
		{name: "pending put over base", ops: []op{put("c", "new")}, key: "c", want: "new"},
		{name: "pending put of new key", ops: []op{put("d", "new")}, key: "d", want: "new"},
		{name: "pending empty value", ops: []op{put("c", "")}, key: "c", want: ""},
		{name: "pending delete hides base", ops: []op{del("e")}, key: "e", miss: true},
		{name: "pending delete of absent key", ops: []op{del("f")}, key: "f", miss: true},
		{name: "put then delete", ops: []op{put("b", "x"), del("b")}, key: "b", miss: true},
		{name: "delete then put", ops: []op{del("a"), put("a", "back")}, key: "a", want: "back"},
		{name: "last put wins", ops: []op{put("a", "1"), put("a", "2"), put("a", "3")}, key: "a", want: "3"},
		{name: "other keys written", ops: []op{put("b", "x"), del("d"), put("j", "y")}, key: "c", want: "base-c"},
		{name: "prefix key written", ops: []op{put("aa", "x"), del("a\x00")}, key: "a", want: "base-a"},
	}
	e := newEngine(t, base)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := overlay.New(e)
			apply(b, tc.ops)
			got, err := b.Get([]byte(tc.key))
			if tc.miss {
				if err != storage.ErrNotFound { // unwrapped, like the engines
					t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", tc.key, got, err)
				}
				return
			}
			if err != nil || string(got) != tc.want || got == nil {
				t.Fatalf("Get(%q) = %q (nil %v), %v; want %q", tc.key, got, got == nil, err, tc.want)
			}
			// The slice belongs to the caller.
			if len(got) > 0 {
				got[0] ^= 0xff
				again, _ := b.Get([]byte(tc.key))
				if string(again) != tc.want {
					t.Fatalf("writing into Get's result changed the batch: %q", again)
				}
			}
		})
	}
}

// TestPutCopies checks that Put and Delete copy their arguments.
func TestPutCopies(t *testing.T) {
	b := overlay.New(newEngine(t, base))
	k, v := []byte("k"), []byte("value")
	b.Put(k, v)
	dk := []byte("a")
	b.Delete(dk)
	k[0], v[0], dk[0] = 'x', 'x', 'c'
	if got, err := b.Get([]byte("k")); err != nil || string(got) != "value" {
		t.Fatalf("Get(k) = %q, %v after the caller reused its slices", got, err)
	}
	if _, err := b.Get([]byte("a")); err != storage.ErrNotFound {
		t.Fatalf("Get(a) = %v, want ErrNotFound", err)
	}
	if got, err := b.Get([]byte("c")); err != nil || string(got) != "base-c" {
		t.Fatalf("Get(c) = %q, %v", got, err)
	}
}

func TestIterate(t *testing.T) {
	type bounds struct{ lo, hi string } // "-" is nil
	opt := func(bd bounds, rev bool) storage.IterOptions {
		o := storage.IterOptions{Reverse: rev}
		if bd.lo != "-" {
			o.Lower = []byte(bd.lo)
		}
		if bd.hi != "-" {
			o.Upper = []byte(bd.hi)
		}
		return o
	}
	all := bounds{"-", "-"}
	tests := []struct {
		name   string
		base   model
		ops    []op
		bounds bounds
		want   []kv // forward order; reverse is checked too
	}{
		{name: "base only", base: base, bounds: all,
			want: []kv{{"a", "base-a"}, {"c", "base-c"}, {"e", "base-e"}, {"g", ""}, {"i", "base-i"}}},
		{name: "pending only", base: model{}, ops: []op{put("b", "1"), put("a", "0"), del("c")}, bounds: all,
			want: []kv{{"a", "0"}, {"b", "1"}}},
		{name: "only tombstones", base: model{}, ops: []op{del("a"), del("b")}, bounds: all},
		{name: "empty", base: model{}, bounds: all},
		{name: "interleaved", base: base, ops: []op{put("b", "1"), put("h", "2"), put("j", "3"), put("0", "4")}, bounds: all,
			want: []kv{{"0", "4"}, {"a", "base-a"}, {"b", "1"}, {"c", "base-c"}, {"e", "base-e"}, {"g", ""}, {"h", "2"}, {"i", "base-i"}, {"j", "3"}}},
		{name: "overrides", base: base, ops: []op{put("a", "A"), put("e", ""), put("g", "G"), put("i", "I")}, bounds: all,
			want: []kv{{"a", "A"}, {"c", "base-c"}, {"e", ""}, {"g", "G"}, {"i", "I"}}},
		{name: "deletes hide base", base: base, ops: []op{del("a"), del("e"), del("i"), del("b")}, bounds: all,
			want: []kv{{"c", "base-c"}, {"g", ""}}},
		{name: "delete everything", base: base, ops: []op{del("a"), del("c"), del("e"), del("g"), del("i")}, bounds: all},
		{name: "delete then put", base: base, ops: []op{del("c"), put("c", "again"), put("d", "x"), del("d")}, bounds: all,
			want: []kv{{"a", "base-a"}, {"c", "again"}, {"e", "base-e"}, {"g", ""}, {"i", "base-i"}}},
		{name: "bounds", base: base, ops: []op{put("b", "1"), del("e"), put("f", "2"), put("h", "3")}, bounds: bounds{"b", "h"},
			want: []kv{{"b", "1"}, {"c", "base-c"}, {"f", "2"}, {"g", ""}}},
		{name: "bounds between keys", base: base, ops: []op{put("b", "1"), put("h", "3")}, bounds: bounds{"bb", "gg"},
			want: []kv{{"c", "base-c"}, {"e", "base-e"}, {"g", ""}}},
		{name: "lower only", base: base, ops: []op{put("b", "1"), put("z", "2"), del("i")}, bounds: bounds{"e", "-"},
			want: []kv{{"e", "base-e"}, {"g", ""}, {"z", "2"}}},
		{name: "upper only", base: base, ops: []op{put("0", "1"), put("z", "2"), del("a")}, bounds: bounds{"-", "e"},
			want: []kv{{"0", "1"}, {"c", "base-c"}}},
		{name: "upper is a pending key", base: base, ops: []op{put("d", "1")}, bounds: bounds{"-", "d"},
			want: []kv{{"a", "base-a"}, {"c", "base-c"}}},
		{name: "lower is a tombstone", base: base, ops: []op{del("c")}, bounds: bounds{"c", "f"},
			want: []kv{{"e", "base-e"}}},
		{name: "nothing in range", base: base, ops: []op{put("b", "1")}, bounds: bounds{"j", "z"}},
		{name: "range past pending", base: base, ops: []op{put("b", "1")}, bounds: bounds{"c", "-"},
			want: []kv{{"c", "base-c"}, {"e", "base-e"}, {"g", ""}, {"i", "base-i"}}},
		{name: "lower equals upper", base: base, ops: []op{put("c", "1")}, bounds: bounds{"c", "c"}},
		{name: "lower above upper", base: base, ops: []op{put("c", "1")}, bounds: bounds{"e", "a"}},
		{name: "empty upper", base: base, ops: []op{put("c", "1")}, bounds: bounds{"-", ""}},
		{name: "empty lower", base: base, ops: []op{put("c", "1")}, bounds: bounds{"", "d"},
			want: []kv{{"a", "base-a"}, {"c", "1"}}},
		{name: "prefix keys", base: model{"a": "1", "a\x00\x00": "3", "ab": "5"}, ops: []op{put("a\x00", "2"), put("aa", "4"), del("ab"), put("a\xff", "6")}, bounds: bounds{"a", "b"},
			want: []kv{{"a", "1"}, {"a\x00", "2"}, {"a\x00\x00", "3"}, {"aa", "4"}, {"a\xff", "6"}}},
		{name: "high bytes", base: model{"\x7f": "1", "\x80": "2", "\xff": "3"}, ops: []op{put("\x81", "x"), del("\x80"), put("\xff\xff", "y")}, bounds: bounds{"\x01", "\xff\xff\xff"},
			want: []kv{{"\x7f", "1"}, {"\x81", "x"}, {"\xff", "3"}, {"\xff\xff", "y"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := overlay.New(newEngine(t, tc.base))
			apply(b, tc.ops)
			for _, rev := range []bool{false, true} {
				o := opt(tc.bounds, rev)
				want := slices.Clone(tc.want)
				if rev {
					slices.Reverse(want)
				}
				if d := diff(scan(t, b, o), want); d != "" {
					t.Errorf("scan %s: %s", fmtOpts(o), d)
				}
			}
		})
	}
}

// TestLongRanges crosses the pending side's chunk boundaries with long
// runs of pending puts and tombstones between base keys.
func TestLongRanges(t *testing.T) {
	m := model{}
	for i := 0; i < 3000; i += 3 {
		m[fmt.Sprintf("k%05d", i)] = "base"
	}
	b := overlay.New(newEngine(t, m))
	for i := range 3000 {
		k := fmt.Sprintf("k%05d", i)
		switch {
		case i%7 == 0:
			b.Delete([]byte(k))
			delete(m, k)
		case i%3 != 0 || i%2 == 0:
			b.Put([]byte(k), []byte("pending"))
			m[k] = "pending"
		}
	}
	for _, o := range []storage.IterOptions{
		{}, {Reverse: true},
		{Lower: []byte("k00100"), Upper: []byte("k02900")},
		{Lower: []byte("k00100"), Upper: []byte("k02900"), Reverse: true},
		{Lower: []byte("k00100x"), Upper: []byte("k02900x"), Reverse: true},
	} {
		if d := diff(scan(t, b, o), m.want(o)); d != "" {
			t.Errorf("scan %s: %s", fmtOpts(o), d)
		}
	}
}

// TestIteratorSnapshot checks that an iterator sees the pending writes as
// they were at NewIterator, whatever is written or reset while it runs.
func TestIteratorSnapshot(t *testing.T) {
	for _, rev := range []bool{false, true} {
		t.Run(fmt.Sprintf("reverse=%v", rev), func(t *testing.T) {
			m := model{}
			for i := 0; i < 400; i += 2 {
				m[fmt.Sprintf("k%03d", i)] = "base"
			}
			e := newEngine(t, m)
			b := overlay.New(e)
			for i := 1; i < 400; i += 4 {
				k := fmt.Sprintf("k%03d", i)
				b.Put([]byte(k), []byte("p1"))
				m[k] = "p1"
			}
			opts := storage.IterOptions{Reverse: rev}
			want := m.want(opts)
			it, err := b.NewIterator(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			// A second iterator before any write shares the first's view.
			it2, err := b.NewIterator(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer it2.Close()
			var got, got2 []kv
			for n := 0; it.Next(); n++ {
				k, v := it.Key(), it.Value()
				kc, vc := string(k), string(v)
				got = append(got, kv{kc, vc})
				if it2.Next() {
					got2 = append(got2, kv{string(it2.Key()), string(it2.Value())})
				}
				switch n % 4 {
				case 0: // overwrite the current key and delete the next ones
					b.Put(k, []byte("changed"))
					for j := range 3 {
						b.Delete(fmt.Appendf(nil, "k%03d", (n+j)%400))
					}
				case 1: // insert keys everywhere
					for j := range 5 {
						b.Put(fmt.Appendf(nil, "k%03dx", (n*7+j*80)%400), []byte("new"))
					}
				case 2: // and commit and reset in the middle
					if n == 102 {
						eb := e.NewBatch()
						b.ApplyTo(eb)
						if err := eb.Commit(false); err != nil {
							t.Fatal(err)
						}
						b.Reset(e)
					}
				}
				if string(it.Key()) != kc || string(it.Value()) != vc || string(k) != kc || string(v) != vc {
					t.Fatalf("position %d: Key/Value changed by writes before Next: %q=%q, was %q=%q", n, it.Key(), it.Value(), kc, vc)
				}
			}
			for it2.Next() {
				got2 = append(got2, kv{string(it2.Key()), string(it2.Value())})
			}
			if it.Err() != nil || it2.Err() != nil {
				t.Fatal(it.Err(), it2.Err())
			}
			if d := diff(got, want); d != "" {
				t.Errorf("iterator: %s", d)
			}
			if d := diff(got2, want); d != "" {
				t.Errorf("second iterator: %s", d)
			}
		})
	}
}

// TestIteratorKeyIsACopy checks that writing into a pending key or value
// returned by the iterator does not change the batch.
func TestIteratorKeyIsACopy(t *testing.T) {
	b := overlay.New(newEngine(t, model{}))
	b.Put([]byte("k"), []byte("v"))
	it, err := b.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() {
		t.Fatal("no key")
	}
	it.Key()[0], it.Value()[0] = 'x', 'x'
	it.Close()
	if got, err := b.Get([]byte("k")); err != nil || string(got) != "v" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if got := scan(t, b, storage.IterOptions{}); diff(got, []kv{{"k", "v"}}) != "" {
		t.Fatalf("scan = %q", got)
	}
}

func TestIteratorLifecycle(t *testing.T) {
	b := overlay.New(newEngine(t, base))
	b.Put([]byte("b"), []byte("1"))
	it, err := b.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if it.Key() != nil || it.Value() != nil {
		t.Errorf("Key, Value before Next = %q, %q; want nil", it.Key(), it.Value())
	}
	n := 0
	for it.Next() {
		n++
	}
	if n != 6 || it.Err() != nil {
		t.Fatalf("%d keys, Err %v; want 6, nil", n, it.Err())
	}
	for range 3 {
		if it.Next() {
			t.Fatal("Next after the end = true")
		}
	}
	if it.Key() != nil {
		t.Errorf("Key after the end = %q", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Next() {
		t.Error("Next after Close = true")
	}
	if !errors.Is(it.Err(), storage.ErrClosed) {
		t.Errorf("Err after Close = %v, want ErrClosed", it.Err())
	}
	if err := it.Close(); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
}

// failing is a base reader whose Get fails for "bad", whose NewIterator
// fails for a Lower of "bad", and whose iterators fail after two keys.
type failing struct{ storage.Reader }

var errBase = errors.New("base failure")

func (f failing) Get(key []byte) ([]byte, error) {
	if string(key) == "bad" {
		return nil, errBase
	}
	return f.Reader.Get(key)
}

func (f failing) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	if string(opts.Lower) == "bad" {
		return nil, errBase
	}
	it, err := f.Reader.NewIterator(opts)
	return &failingIter{Iterator: it, left: 2}, err
}

type failingIter struct {
	storage.Iterator
	left int
	err  error
}

func (it *failingIter) Next() bool {
	if it.left == 0 {
		it.err = errBase
		return false
	}
	it.left--
	return it.Iterator.Next()
}

func (it *failingIter) Err() error { return it.err }

func TestBaseErrors(t *testing.T) {
	b := overlay.New(failing{newEngine(t, base)})
	b.Put([]byte("z"), []byte("pending")) // after every base key
	if _, err := b.Get([]byte("bad")); err != errBase {
		t.Errorf("Get(bad) = %v, want the base's error", err)
	}
	b.Put([]byte("bad"), []byte("ok"))
	if v, err := b.Get([]byte("bad")); err != nil || string(v) != "ok" {
		t.Errorf("Get(bad) after Put = %q, %v; the base must not be asked", v, err)
	}
	if _, err := b.NewIterator(storage.IterOptions{Lower: []byte("bad")}); err != errBase {
		t.Errorf("NewIterator error = %v, want the base's", err)
	}
	for _, rev := range []bool{false, true} {
		it, err := b.NewIterator(storage.IterOptions{Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for it.Next() {
			keys = append(keys, string(it.Key()))
		}
		// Two base keys and at most the pending keys ordered before the
		// failure: the iteration must stop, not carry on without the base.
		if !errors.Is(it.Err(), errBase) || len(keys) > 4 || slices.Contains(keys, "z") != rev {
			t.Errorf("reverse=%v: keys %q, Err %v; want a stop with the base's error", rev, keys, it.Err())
		}
		if it.Next() {
			t.Error("Next after an error = true")
		}
		it.Close()
	}
}

// recorder is a storage.Batch that records its operations.
type recorder struct{ ops []op }

func (r *recorder) Put(k, v []byte)        { r.ops = append(r.ops, put(string(k), string(v))) }
func (r *recorder) Delete(k []byte)        { r.ops = append(r.ops, del(string(k))) }
func (r *recorder) Len() int               { return len(r.ops) }
func (r *recorder) Commit(sync bool) error { return nil }
func (r *recorder) Close() error           { return nil }

func TestApplyTo(t *testing.T) {
	b := overlay.New(newEngine(t, base))
	apply(b, []op{
		put("m", "1"), del("a"), put("b", "1"), put("m", "2"), del("z"),
		put("a", "back"), del("b"), put("c", ""), put("\xff", "hi"), put("\x00", "lo"),
	})
	if b.Len() != 7 {
		t.Errorf("Len = %d, want 7 distinct keys", b.Len())
	}
	var r recorder
	b.ApplyTo(&r)
	want := []op{put("\x00", "lo"), put("a", "back"), del("b"), put("c", ""), put("m", "2"), del("z"), put("\xff", "hi")}
	if !slices.Equal(r.ops, want) {
		t.Errorf("ApplyTo wrote %+v, want %+v", r.ops, want)
	}
	// ApplyTo does not consume the batch.
	if b.Len() != 7 {
		t.Errorf("Len after ApplyTo = %d", b.Len())
	}
	b.Reset(newEngine(t, model{}))
	if b.Len() != 0 {
		t.Errorf("Len after Reset = %d", b.Len())
	}
	var r2 recorder
	b.ApplyTo(&r2)
	if len(r2.ops) != 0 {
		t.Errorf("ApplyTo after Reset wrote %+v", r2.ops)
	}
}

// TestConcurrentIterator consumes an iterator on another goroutine while
// the batch keeps being written; run with -race.
func TestConcurrentIterator(t *testing.T) {
	m := model{}
	for i := range 500 {
		m[fmt.Sprintf("k%03d", i)] = "base"
	}
	e := newEngine(t, m)
	b := overlay.New(e)
	for i := 0; i < 500; i += 2 {
		b.Put(fmt.Appendf(nil, "k%03d", i), []byte("p"))
		m[fmt.Sprintf("k%03d", i)] = "p"
	}
	var wg sync.WaitGroup
	for _, rev := range []bool{false, true} {
		opts := storage.IterOptions{Reverse: rev}
		want := m.want(opts)
		it, err := b.NewIterator(opts)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer it.Close()
			var got []kv
			for it.Next() {
				got = append(got, kv{string(it.Key()), string(it.Value())})
			}
			if d := diff(got, want); d != "" || it.Err() != nil {
				t.Errorf("reverse=%v: %s %v", rev, d, it.Err())
			}
		})
	}
	for i := range 2000 {
		k := fmt.Appendf(nil, "k%03d", i%500)
		if i%3 == 0 {
			b.Delete(k)
		} else {
			b.Put(k, []byte("later"))
		}
		if i%100 == 0 {
			it, err := b.NewIterator(storage.IterOptions{}) // re-clones
			if err != nil {
				t.Fatal(err)
			}
			it.Close()
		}
	}
	wg.Wait()
}

// liveIter is an iterator the model test keeps open across writes, with
// what it must yield.
type liveIter struct {
	it   storage.Iterator
	opts storage.IterOptions
	want []kv
	pos  int
}

// step advances li by up to n positions, checking each against the model
// taken at its creation, and reports whether li is finished (and closed).
func (li *liveIter) step(t *testing.T, n int) bool {
	t.Helper()
	for ; n > 0; n-- {
		if !li.it.Next() {
			if err := li.it.Err(); err != nil {
				t.Fatalf("live iterator %s: %v", fmtOpts(li.opts), err)
			}
			if li.pos != len(li.want) {
				t.Fatalf("live iterator %s ended after %d pairs, want %d", fmtOpts(li.opts), li.pos, len(li.want))
			}
			if err := li.it.Close(); err != nil {
				t.Fatal(err)
			}
			return true
		}
		got := kv{string(li.it.Key()), string(li.it.Value())}
		if li.pos >= len(li.want) || got != li.want[li.pos] {
			var w any = "the end"
			if li.pos < len(li.want) {
				w = li.want[li.pos]
			}
			t.Fatalf("live iterator %s: pair %d is %q, want %q", fmtOpts(li.opts), li.pos, got, w)
		}
		li.pos++
	}
	return false
}

// TestModel applies random operations to a Batch over a pre-filled memory
// engine and compares every read with a map, over several Readies: each
// round ends with ApplyTo, a commit and a Reset that reuses the Batch.
func TestModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { testModel(t, seed) })
	}
}

func testModel(t *testing.T, seed uint64) {
	const (
		rounds      = 4
		opsPerRound = 2500
	)
	rng := rand.New(rand.NewPCG(seed, 0x6f7665726c6179))
	// Short keys over an alphabet with signed-byte and prefix traps, so
	// that writes collide with base keys and with each other.
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff}
	randKey := func() []byte {
		k := make([]byte, 1+rng.IntN(3))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	randValue := func() []byte {
		if rng.IntN(10) == 0 {
			return nil // empty values must read like any other
		}
		return fmt.Appendf(nil, "v%d", rng.Uint32())
	}
	randBound := func() []byte {
		switch rng.IntN(8) {
		case 0, 1:
			return nil
		case 2:
			return []byte{} // empty but not nil: a real bound
		case 3:
			return []byte{0xff, 0xff, 0xff, 0xff} // past every key
		default:
			return randKey()
		}
	}

	m := model{}
	for range 300 {
		m[string(randKey())] = string(randValue())
	}
	e := newEngine(t, m)
	b := overlay.New(e)
	var live []*liveIter
	defer func() {
		for _, li := range live {
			li.it.Close()
		}
	}()
	written := map[string]bool{}
	var stats struct{ puts, dels, gets, scans, lives int }

	for round := range rounds {
		for range opsPerRound {
			switch r := rng.IntN(100); {
			case r < 30:
				k, v := randKey(), randValue()
				b.Put(k, v)
				m[string(k)], written[string(k)] = string(v), true
				stats.puts++
			case r < 45:
				k := randKey()
				b.Delete(k)
				delete(m, string(k))
				written[string(k)] = true
				stats.dels++
			case r < 65:
				k := randKey()
				got, err := b.Get(k)
				want, ok := m[string(k)]
				if !ok {
					if err != storage.ErrNotFound {
						t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", k, got, err)
					}
				} else if err != nil || string(got) != want {
					t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, want)
				}
				stats.gets++
			case r < 85:
				opts := storage.IterOptions{Lower: randBound(), Upper: randBound(), Reverse: rng.IntN(2) == 0}
				want := m.want(opts)
				if rng.IntN(3) == 0 {
					// Stop early, like a range read with a limit.
					it, err := b.NewIterator(opts)
					if err != nil {
						t.Fatal(err)
					}
					li := &liveIter{it: it, opts: opts, want: want}
					if !li.step(t, rng.IntN(5)) {
						it.Close()
					}
				} else if d := diff(scan(t, b, opts), want); d != "" {
					t.Fatalf("round %d: scan %s: %s", round, fmtOpts(opts), d)
				}
				stats.scans++
			case r < 90 && len(live) < 4:
				opts := storage.IterOptions{Lower: randBound(), Upper: randBound(), Reverse: rng.IntN(2) == 0}
				it, err := b.NewIterator(opts)
				if err != nil {
					t.Fatal(err)
				}
				live = append(live, &liveIter{it: it, opts: opts, want: m.want(opts)})
				stats.lives++
			case len(live) > 0:
				i := rng.IntN(len(live))
				if live[i].step(t, 1+rng.IntN(20)) {
					live = slices.Delete(live, i, i+1)
				}
			}
		}

		if b.Len() != len(written) {
			t.Fatalf("round %d: Len = %d, want %d distinct keys written", round, b.Len(), len(written))
		}
		for _, rev := range []bool{false, true} {
			o := storage.IterOptions{Reverse: rev}
			if d := diff(scan(t, b, o), m.want(o)); d != "" {
				t.Fatalf("round %d: full scan %s: %s", round, fmtOpts(o), d)
			}
		}

		// Commit the Ready: the engine must then hold exactly the model.
		eb := e.NewBatch()
		b.ApplyTo(eb)
		if eb.Len() != len(written) {
			t.Fatalf("round %d: ApplyTo queued %d operations, want %d", round, eb.Len(), len(written))
		}
		if err := eb.Commit(false); err != nil {
			t.Fatal(err)
		}
		if d := diff(scan(t, e, storage.IterOptions{}), m.want(storage.IterOptions{})); d != "" {
			t.Fatalf("round %d: engine after commit: %s", round, d)
		}
		st, err := e.Stats()
		if err != nil || st.Keys != int64(len(m)) {
			t.Fatalf("round %d: engine Stats = %+v, %v; want %d keys", round, st, err, len(m))
		}

		b.Reset(e)
		clear(written)
		if b.Len() != 0 {
			t.Fatalf("Len after Reset = %d", b.Len())
		}
		if d := diff(scan(t, b, storage.IterOptions{Reverse: true}), m.want(storage.IterOptions{Reverse: true})); d != "" {
			t.Fatalf("round %d: batch after Reset: %s", round, d)
		}
		// Iterators still open span the commit and the Reset; finish half
		// of them now, the rest in the next round.
		for i := 0; i < len(live); i++ {
			if rng.IntN(2) == 0 {
				for !live[i].step(t, 100) {
				}
				live = slices.Delete(live, i, i+1)
				i--
			}
		}
	}
	for _, li := range live {
		for !li.step(t, 100) {
		}
	}
	live = nil
	t.Logf("%+v", stats)
}

// TestIteratorBoundsExhaustive: each of the pending keys b, d, f absent,
// put or deleted (trees of 0 to 3 items), over bases {c, d}, {d, f} and
// {}, with every pair of bounds from nil and a to g, in both directions.
// (Written by a reviewer of the move to tidwall/btree.)
func TestIteratorBoundsExhaustive(t *testing.T) {
	bounds := [][]byte{nil, []byte("a"), []byte("b"), []byte("c"), []byte("d"), []byte("e"), []byte("f"), []byte("g")}
	for _, baseKeys := range [][]string{{"c", "d"}, {"d", "f"}, {}} {
		bm := model{}
		for _, k := range baseKeys {
			bm[k] = "base"
		}
		e := newEngine(t, bm)
		for mask := range 27 {
			b := overlay.New(e)
			m := maps.Clone(bm)
			for i, k := range []string{"b", "d", "f"} {
				switch mask / []int{1, 3, 9}[i] % 3 {
				case 1:
					b.Put([]byte(k), []byte("p"+k))
					m[k] = "p" + k
				case 2:
					b.Delete([]byte(k))
					delete(m, k)
				}
			}
			for _, lo := range bounds {
				for _, hi := range bounds {
					for _, rev := range []bool{false, true} {
						o := storage.IterOptions{Lower: lo, Upper: hi, Reverse: rev}
						if d := diff(scan(t, b, o), m.want(o)); d != "" {
							t.Fatalf("base %q mask %d %s: %s", baseKeys, mask, fmtOpts(o), d)
						}
					}
				}
			}
		}
	}
}
