package btreecursor

import (
	"bytes"

	"github.com/google/btree"
)

const (
	// FirstChunk is the size of the first chunk a walk collects.
	FirstChunk = 16
	// MaxChunk is the largest chunk; the buffer given to Init should have
	// at least this capacity so chunks do not reallocate.
	MaxChunk = 256
)

// Cursor walks a frozen BTreeG in chunks. Its zero value is not usable:
// call Init once, then Reset before each walk. A Cursor is meant to be
// embedded by value in an iterator; it must not be copied after Init.
type Cursor[T any] struct {
	key     func(T) []byte
	probe   func([]byte) T
	visitFn func(T) bool // c.visit, bound once

	t            *btree.BTreeG[T]
	lower, upper []byte
	reverse      bool

	items []T // current chunk; its backing array is the buffer from Init
	pos   int
	chunk int  // size of the next chunk
	high  int  // longest chunk so far, to clear on Release
	walks bool // a chunk has been collected
	done  bool // the walk reached the end of the range

	skip    []byte // resume point the next walk must not return again
	hasSkip bool
}

// Init sets how to read an item's key and how to build a search probe
// for a key, and the buffer chunks are collected into.
func (c *Cursor[T]) Init(key func(T) []byte, probe func([]byte) T, buf []T) {
	c.key, c.probe, c.items = key, probe, buf[:0]
	c.visitFn = c.visit
}

// Reset starts a walk of t over [lower, upper) (a nil bound is open), in
// descending order if reverse. The Cursor keeps lower and upper; the
// caller must not modify them during the walk.
func (c *Cursor[T]) Reset(t *btree.BTreeG[T], lower, upper []byte, reverse bool) {
	c.t, c.lower, c.upper, c.reverse = t, lower, upper, reverse
	c.items, c.pos, c.chunk = c.items[:0], -1, FirstChunk
	c.walks, c.done = false, false
	c.skip, c.hasSkip = nil, false
	if lower != nil && upper != nil && bytes.Compare(lower, upper) >= 0 {
		c.done = true
	}
}

// Next returns the next item of the walk, or false once it is exhausted.
func (c *Cursor[T]) Next() (T, bool) {
	c.pos++
	if c.pos >= len(c.items) && !c.fill() {
		var zero T
		return zero, false
	}
	return c.items[c.pos], true
}

// Release ends the walk and returns the buffer given to Init (or the
// larger one a chunk grew it into, if it was under MaxChunk), with every
// slot a chunk used cleared so it holds no references into the tree. The
// Cursor must be initialized again before reuse.
func (c *Cursor[T]) Release() []T {
	b := c.items[:0]
	clear(b[:c.high])
	*c = Cursor[T]{}
	return b
}

// fill collects the next chunk and reports whether it is non-empty.
func (c *Cursor[T]) fill() bool {
	if c.done {
		c.items = c.items[:0]
		return false
	}
	var pivot T
	resume := c.walks
	if resume {
		pivot = c.items[len(c.items)-1]
	}
	c.walks = true
	c.items = c.items[:0]
	switch {
	case !c.reverse && resume:
		c.skip, c.hasSkip = c.key(pivot), true
		c.t.AscendGreaterOrEqual(pivot, c.visitFn)
	case !c.reverse && c.lower != nil:
		c.t.AscendGreaterOrEqual(c.probe(c.lower), c.visitFn)
	case !c.reverse:
		c.t.Ascend(c.visitFn)
	case resume:
		c.skip, c.hasSkip = c.key(pivot), true
		c.t.DescendLessOrEqual(pivot, c.visitFn)
	case c.upper != nil:
		// Upper is exclusive but the walk starts at it inclusively.
		c.skip, c.hasSkip = c.upper, true
		c.t.DescendLessOrEqual(c.probe(c.upper), c.visitFn)
	default:
		c.t.Descend(c.visitFn)
	}
	c.hasSkip, c.skip = false, nil
	// A short chunk means the walk hit the bound or the end of the tree.
	c.done = len(c.items) < c.chunk
	c.high = max(c.high, len(c.items))
	if c.chunk < MaxChunk {
		c.chunk *= 2
	}
	c.pos = 0
	return len(c.items) > 0
}

// visit is the btree callback collecting one chunk.
func (c *Cursor[T]) visit(x T) bool {
	k := c.key(x)
	if c.hasSkip {
		c.hasSkip = false
		if bytes.Equal(k, c.skip) {
			return true
		}
	}
	if c.reverse {
		if c.lower != nil && bytes.Compare(k, c.lower) < 0 {
			return false
		}
	} else if c.upper != nil && bytes.Compare(k, c.upper) >= 0 {
		return false
	}
	c.items = append(c.items, x)
	return len(c.items) < c.chunk
}
