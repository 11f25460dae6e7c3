package enginetest

import (
	"math/rand/v2"
	"testing"

	"github.com/metcd/metcd/storage"
)

func testIterate(t *testing.T, f Factory) {
	t.Run("tricky-keys", func(t *testing.T) { testIterateTricky(t, f) })
	t.Run("random", func(t *testing.T) { testIterateRandom(t, f) })
	t.Run("exhausted", func(t *testing.T) { testIterateExhausted(t, f) })
}

// readers returns the engine and a snapshot of it, which must agree.
func readers(t *testing.T, e storage.Engine) map[string]storage.Reader {
	s, err := e.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return map[string]storage.Reader{"engine": e, "snapshot": s}
}

// testIterateTricky checks every pair of bounds, drawn from the keys
// themselves and from probes between them, over keys built to catch
// signed-byte comparisons, prefix ordering and off-by-one bounds.
func testIterateTricky(t *testing.T, f Factory) {
	e := open(t, f)
	keys := [][]byte{
		{0x00}, {0x00, 0x00}, {0x00, 0x00, 0x00}, {0x00, 0x01}, {0x01},
		[]byte("a"), []byte("a\x00"), []byte("a\x00\x00"), []byte("a\xff"),
		[]byte("ab"), []byte("abc"), []byte("abd"), []byte("b"),
		{0x7f}, {0x80}, {0xfe, 0xff}, {0xff}, {0xff, 0x00}, {0xff, 0xff}, {0xff, 0xff, 0xff},
	}
	probes := [][]byte{
		nil, {0x00, 0x00, 0x01}, {0x02}, []byte("aa"), []byte("abcd"), []byte("c"),
		{0x81}, {0xff, 0x01}, {0xff, 0xff, 0xff, 0xff},
	}
	probes = append(probes, keys...)

	m := model{}
	commit(t, e, false, func(b storage.Batch) {
		for i, k := range keys {
			v := append([]byte("v:"), k...)
			if i%5 == 0 {
				v = nil // empty values must iterate like any other
			}
			m[string(k)] = v
			b.Put(k, v)
		}
	})
	for name, r := range readers(t, e) {
		for _, lo := range probes {
			for _, hi := range probes {
				for _, rev := range []bool{false, true} {
					opts := storage.IterOptions{Lower: lo, Upper: hi, Reverse: rev}
					got, err := scan(r, opts)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if d := diff(got, m.want(opts)); d != "" {
						t.Errorf("%s: scan %s: %s", name, fmtOpts(opts), d)
					}
				}
			}
		}
	}
}

// testIterateRandom compares random bounded scans with a model over a few
// thousand keys with shared prefixes and deletions, enough to cross any
// internal paging of an iterator.
func testIterateRandom(t *testing.T, f Factory) {
	e := open(t, f)
	rng := rand.New(rand.NewPCG(7, 11))
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff}
	randKey := func() []byte {
		k := make([]byte, 1+rng.IntN(6))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	m := model{}
	var written [][]byte
	for range 6 {
		commit(t, e, false, func(b storage.Batch) {
			for range 600 {
				if len(written) > 0 && rng.IntN(5) == 0 {
					k := written[rng.IntN(len(written))]
					delete(m, string(k))
					b.Delete(k)
					continue
				}
				k := randKey()
				v := make([]byte, rng.IntN(24))
				for i := range v {
					v[i] = byte(rng.Uint32())
				}
				m[string(k)] = v
				written = append(written, k)
				b.Put(k, v)
			}
		})
	}
	bound := func() []byte {
		switch n := rng.IntN(10); {
		case n < 2:
			return nil
		case n < 6:
			return written[rng.IntN(len(written))]
		default:
			return randKey()
		}
	}
	for name, r := range readers(t, e) {
		if err := checkModel(r, m, storage.IterOptions{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for range 300 {
			opts := storage.IterOptions{Lower: bound(), Upper: bound(), Reverse: rng.IntN(2) == 0}
			got, err := scan(r, opts)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if d := diff(got, m.want(opts)); d != "" {
				t.Errorf("%s: scan %s: %s", name, fmtOpts(opts), d)
			}
		}
		for range 200 {
			k := randKey()
			if _, ok := m[string(k)]; !ok {
				wantMissing(t, r, k)
			}
		}
	}
}

func testIterateExhausted(t *testing.T, f Factory) {
	e := open(t, f)
	for _, rev := range []bool{false, true} {
		it, err := e.NewIterator(storage.IterOptions{Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		if it.Next() {
			t.Errorf("Next on an empty engine = true (reverse=%v)", rev)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, e, false, func(b storage.Batch) {
		b.Put([]byte("a"), []byte("1"))
		b.Put([]byte("b"), []byte("2"))
	})
	for _, rev := range []bool{false, true} {
		it, err := e.NewIterator(storage.IterOptions{Reverse: rev})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for it.Next() {
			n++
		}
		for range 3 {
			if it.Next() {
				t.Errorf("Next after the end = true (reverse=%v)", rev)
			}
		}
		if n != 2 || it.Err() != nil {
			t.Errorf("reverse=%v: %d keys, Err %v; want 2, nil", rev, n, it.Err())
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
