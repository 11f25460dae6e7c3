package btreecursor

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tidwall/btree"
)

type kv struct{ k []byte }

func key(x kv) []byte    { return x.k }
func probe(k []byte) kv  { return kv{k} }
func less(a, b kv) bool  { return bytes.Compare(a.k, b.k) < 0 }
func keyOf(i int) []byte { return []byte(fmt.Sprintf("k%05d", i)) }

// newTree has small nodes, so that walks cross many of them.
func newTree() *btree.BTreeG[kv] {
	return btree.NewBTreeGOptions(less, btree.Options{Degree: 2, NoLocks: true})
}

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

// Every bound, present or absent, below, inside or above the keys, in
// both directions, gives the model's keys; an exhausted cursor stays so.
func TestCursorMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 4, 7, 15, 16, 17, 100, 1000} {
		tr := newTree()
		var all [][]byte
		for i := range n {
			k := keyOf(2*i + 1) // even keys are absent, for bounds between items
			tr.Set(kv{k})
			all = append(all, k)
		}
		view := tr.Copy()
		bound := func() []byte {
			if rng.IntN(4) == 0 {
				return nil
			}
			return keyOf(rng.IntN(2*n + 3))
		}
		c := new(Cursor[kv])
		for range 100 {
			lower, upper, reverse := bound(), bound(), rng.IntN(2) == 0
			c.Init(view, key, probe, lower, upper, reverse)
			got, exp := collect(c), want(all, lower, upper, reverse)
			if !slices.EqualFunc(got, exp, bytes.Equal) {
				t.Fatalf("n=%d [%q, %q) reverse=%v: got %q, want %q", n, lower, upper, reverse, got, exp)
			}
			if _, ok := c.Next(); ok {
				t.Fatalf("n=%d: Next after the end returned an item", n)
			}
			c.Release()
			if _, ok := c.Next(); ok {
				t.Fatalf("n=%d: Next after Release returned an item", n)
			}
		}
		// Writes to the tree after the copy do not reach the walk.
		tr.Set(kv{keyOf(0)})
		c.Init(view, key, probe, nil, nil, false)
		if got := collect(c); !slices.EqualFunc(got, all, bytes.Equal) {
			t.Fatalf("n=%d: a walk of the copy saw a later write: %d keys", n, len(got))
		}
		c.Release()
	}
}

func TestScratchDropsLargeBuffers(t *testing.T) {
	s := GetScratch()
	s.Key = make([]byte, 0, maxScratch+1)
	s.Val = make([]byte, 0, 16)
	PutScratch(s)
	if s.Key != nil || cap(s.Val) != 16 {
		t.Fatalf("PutScratch kept a key of cap %d or dropped a small value (cap %d)", cap(s.Key), cap(s.Val))
	}
}
