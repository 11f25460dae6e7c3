package btreecursor

import (
	"runtime"
	"testing"
	"weak"
)

// A released Cursor that is still referenced keeps nothing of the tree it
// walked alive, deep walks included (the library's iterator moves its
// stack to the heap past four levels).
func TestReleaseDropsTree(t *testing.T) {
	for _, n := range []int{10, 100_000} {
		tr := newTree()
		var first []byte
		for i := range n {
			k := keyOf(i)
			if i == 0 {
				first = k
			}
			tr.Set(kv{k})
		}
		w := weak.Make(&first[0])
		first = nil
		height := tr.Height()
		view := tr.Copy()
		c := new(Cursor[kv])
		c.Init(view, key, probe, nil, nil, false)
		for {
			if _, ok := c.Next(); !ok {
				break
			}
		}
		c.Release()
		tr, view = nil, nil
		runtime.GC()
		runtime.GC()
		if w.Value() != nil {
			t.Errorf("n=%d, height %d: the released cursor keeps the tree's items alive", n, height)
		}
		runtime.KeepAlive(c)
	}
}
