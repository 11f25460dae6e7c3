package btreecursor

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/btree"
)

type kv struct{ k []byte }

func key(x kv) []byte            { return x.k }
func probe(k []byte) kv          { return kv{k} }
func less(a, b kv) bool          { return bytes.Compare(a.k, b.k) < 0 }
func keyOf(i int) []byte         { return []byte(fmt.Sprintf("k%05d", i)) }
func newTree() *btree.BTreeG[kv] { return btree.NewG(4, less) }

// want lists the keys of all in [lower, upper), in order.
func want(all [][]byte, lower, upper []byte, reverse bool) [][]byte {
	var out [][]byte
	for _, k := range all {
		if lower != nil && bytes.Compare(k, lower) < 0 || upper != nil && bytes.Compare(k, upper) >= 0 {
			continue
		}
		out = append(out, k)
	}
	if reverse {
		slices.Reverse(out)
	}
	return out
}

func collect(c *Cursor[kv]) [][]byte {
	var out [][]byte
	for {
		x, ok := c.Next()
		if !ok {
			return out
		}
		out = append(out, x.k)
	}
}

func TestCursorMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Sizes around the chunk boundaries (16, 16+32, ..., MaxChunk).
	for _, n := range []int{0, 1, 15, 16, 17, 47, 48, 49, 111, 112, 113, 240, 496, 1000} {
		tr := newTree()
		var all [][]byte
		for i := range n {
			k := keyOf(2 * i) // odd keys are absent, for bounds between items
			tr.ReplaceOrInsert(kv{k})
			all = append(all, k)
		}
		var c Cursor[kv]
		c.Init(key, probe, make([]kv, 0, MaxChunk))
		bound := func() []byte {
			if rng.IntN(4) == 0 {
				return nil
			}
			return keyOf(rng.IntN(2*n + 3))
		}
		for range 50 {
			lower, upper, reverse := bound(), bound(), rng.IntN(2) == 0
			c.Reset(tr, lower, upper, reverse)
			got, exp := collect(&c), want(all, lower, upper, reverse)
			if !slices.EqualFunc(got, exp, bytes.Equal) {
				t.Fatalf("n=%d [%q, %q) reverse=%v: got %d keys, want %d", n, lower, upper, reverse, len(got), len(exp))
			}
			// Exhausted cursors stay exhausted.
			if _, ok := c.Next(); ok {
				t.Fatalf("n=%d: Next after end returned an item", n)
			}
		}
		c.Release()
	}
}

func TestCursorReleaseClears(t *testing.T) {
	tr := newTree()
	for i := range 100 {
		tr.ReplaceOrInsert(kv{keyOf(i)})
	}
	var c Cursor[kv]
	c.Init(key, probe, make([]kv, 0, MaxChunk))
	c.Reset(tr, nil, nil, false)
	if got := len(collect(&c)); got != 100 {
		t.Fatalf("got %d items, want 100", got)
	}
	b := c.Release()
	if cap(b) != MaxChunk {
		t.Fatalf("Release returned cap %d, want the buffer given to Init", cap(b))
	}
	for i, x := range b[:cap(b)] {
		if x.k != nil {
			t.Fatalf("slot %d still holds %q after Release", i, x.k)
		}
	}
}

func TestCursorSmallBuffer(t *testing.T) {
	tr := newTree()
	var all [][]byte
	for i := range 600 {
		tr.ReplaceOrInsert(kv{keyOf(i)})
		all = append(all, keyOf(i))
	}
	var c Cursor[kv]
	c.Init(key, probe, nil)
	c.Reset(tr, nil, nil, true)
	if got := collect(&c); !slices.EqualFunc(got, want(all, nil, nil, true), bytes.Equal) {
		t.Fatalf("got %d keys, want 600", len(got))
	}
	c.Release()
}
