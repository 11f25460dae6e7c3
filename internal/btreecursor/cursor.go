package btreecursor

import (
	"bytes"

	"github.com/tidwall/btree"
)

// Cursor walks a frozen BTreeG over [lower, upper) (a nil bound is open).
// It holds the library's iterator, whose stack lives inside it, so a
// Cursor must not be copied after Init: embed it in an iterator on the
// heap.
type Cursor[T any] struct {
	key   func(T) []byte
	probe func([]byte) T

	walk         btree.IterG[T]
	lower, upper []byte
	reverse      bool
	started      bool // walk has been positioned
	done         bool // walk has left the range or the tree
}

// Init starts a walk of t. The Cursor keeps lower and upper; the caller
// must not modify them during the walk.
func (c *Cursor[T]) Init(t *btree.BTreeG[T], key func(T) []byte, probe func([]byte) T, lower, upper []byte, reverse bool) {
	c.key, c.probe = key, probe
	c.lower, c.upper, c.reverse = lower, upper, reverse
	c.started = false
	c.done = lower != nil && upper != nil && bytes.Compare(lower, upper) >= 0
	c.walk.Init(t, false)
}

// Next returns the next item of the walk, or false once it is exhausted.
func (c *Cursor[T]) Next() (T, bool) {
	var zero T
	if c.done {
		return zero, false
	}
	var ok bool
	switch {
	case c.started && !c.reverse:
		ok = c.walk.Next()
	case c.started:
		ok = c.walk.Prev()
	case !c.reverse && c.lower == nil:
		ok = c.walk.First()
	case !c.reverse:
		ok = c.walk.Seek(c.probe(c.lower))
	case c.upper == nil:
		ok = c.walk.Last()
	case c.walk.Seek(c.probe(c.upper)):
		// The first key at or above upper: the walk starts below it.
		ok = c.walk.Prev()
	default:
		// Every key is below upper.
		ok = c.walk.Last()
	}
	c.started = true
	if ok {
		x := c.walk.Item()
		k := c.key(x)
		if c.reverse {
			ok = c.lower == nil || bytes.Compare(k, c.lower) >= 0
		} else {
			ok = c.upper == nil || bytes.Compare(k, c.upper) < 0
		}
		if ok {
			return x, true
		}
	}
	c.done = true
	return zero, false
}

// Release ends the walk and drops its references into the tree. The
// Cursor must be initialized again before reuse.
func (c *Cursor[T]) Release() {
	c.walk.Release()
	// Release keeps the stack's backing array, which holds node pointers
	// once a deep walk moved it to the heap.
	c.walk = btree.IterG[T]{}
	c.done = true
	c.lower, c.upper = nil, nil
}
