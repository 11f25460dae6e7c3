package memory

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/metcd/metcd/storage"
)

// The btree only offers push-style walks, so the iterator pulls items in
// chunks: each refill walks the frozen tree from just past the last item
// it returned. Chunks start small because most ranges are short, and
// double up to maxChunk so long scans pay one O(log n) descent per
// maxChunk items.
const (
	firstChunk = 16
	maxChunk   = 256
	// maxScratch bounds the key/value scratch kept in the pool, so one
	// huge value does not pin memory forever.
	maxScratch = 64 << 10
)

// iterBuf is the reusable part of an iterator.
type iterBuf struct {
	items    []item
	key, val []byte
}

var bufPool = sync.Pool{New: func() any {
	return &iterBuf{items: make([]item, 0, maxChunk)}
}}

type iterator struct {
	t            *tree // frozen
	eng, snap    *atomic.Bool
	lower, upper []byte
	reverse      bool
	visitFn      func(item) bool // it.visit, bound once

	buf   *iterBuf
	items []item // current chunk, a prefix of buf.items
	pos   int
	chunk int  // size of the next chunk
	high  int  // longest chunk so far, to clear before pooling
	walks bool // a chunk has been collected
	done  bool // the walk reached the end of the range

	skip    []byte // resume point the next walk must not return again
	hasSkip bool

	cur              item
	valid            bool
	haveKey, haveVal bool

	err    error
	closed bool
}

func newIterator(t *tree, eng, snap *atomic.Bool, opts storage.IterOptions) *iterator {
	it := &iterator{
		t:       t,
		eng:     eng,
		snap:    snap,
		lower:   bytes.Clone(opts.Lower), // the caller may reuse its slices
		upper:   bytes.Clone(opts.Upper),
		reverse: opts.Reverse,
		chunk:   firstChunk,
		pos:     -1,
		buf:     bufPool.Get().(*iterBuf),
	}
	it.visitFn = it.visit
	if it.lower != nil && it.upper != nil && bytes.Compare(it.lower, it.upper) >= 0 {
		it.done = true
	}
	return it
}

func (it *iterator) Next() bool {
	if it.closed || it.err != nil {
		return false
	}
	if it.eng.Load() || (it.snap != nil && it.snap.Load()) {
		it.err = fmt.Errorf("memory: iterator next: %w", storage.ErrClosed)
		it.valid = false
		return false
	}
	it.pos++
	if it.pos >= len(it.items) && !it.fill() {
		it.valid = false
		return false
	}
	it.cur = it.items[it.pos]
	it.valid, it.haveKey, it.haveVal = true, false, false
	return true
}

// fill collects the next chunk and reports whether it is non-empty.
func (it *iterator) fill() bool {
	if it.done {
		it.items = it.items[:0]
		return false
	}
	var pivot item
	resume := it.walks
	if resume {
		pivot = it.items[len(it.items)-1]
	}
	it.walks = true
	it.items = it.buf.items[:0]
	switch {
	case !it.reverse && resume:
		it.skip, it.hasSkip = pivot.key(), true
		it.t.AscendGreaterOrEqual(pivot, it.visitFn)
	case !it.reverse && it.lower != nil:
		it.t.AscendGreaterOrEqual(keyItem(it.lower), it.visitFn)
	case !it.reverse:
		it.t.Ascend(it.visitFn)
	case resume:
		it.skip, it.hasSkip = pivot.key(), true
		it.t.DescendLessOrEqual(pivot, it.visitFn)
	case it.upper != nil:
		// Upper is exclusive but the walk starts at it inclusively.
		it.skip, it.hasSkip = it.upper, true
		it.t.DescendLessOrEqual(keyItem(it.upper), it.visitFn)
	default:
		it.t.Descend(it.visitFn)
	}
	it.hasSkip = false
	// A short chunk means the walk hit the bound or the end of the tree.
	it.done = len(it.items) < it.chunk
	it.high = max(it.high, len(it.items))
	if it.chunk < maxChunk {
		it.chunk *= 2
	}
	it.pos = 0
	return len(it.items) > 0
}

// visit is the btree callback collecting one chunk.
func (it *iterator) visit(x item) bool {
	k := x.key()
	if it.hasSkip {
		it.hasSkip = false
		if bytes.Equal(k, it.skip) {
			return true
		}
	}
	if it.reverse {
		if it.lower != nil && bytes.Compare(k, it.lower) < 0 {
			return false
		}
	} else if it.upper != nil && bytes.Compare(k, it.upper) >= 0 {
		return false
	}
	it.items = append(it.items, x)
	return len(it.items) < it.chunk
}

// Key returns a copy in the iterator's scratch buffer rather than the
// tree's own slice, so a caller writing into it cannot corrupt the tree
// that snapshots share.
func (it *iterator) Key() []byte {
	if !it.valid {
		return nil
	}
	if !it.haveKey {
		it.buf.key = append(it.buf.key[:0], it.cur.key()...)
		it.haveKey = true
	}
	return it.buf.key
}

// Value returns a copy, like Key.
func (it *iterator) Value() []byte {
	if !it.valid {
		return nil
	}
	if !it.haveVal {
		it.buf.val = append(it.buf.val[:0], it.cur.value()...)
		it.haveVal = true
	}
	return it.buf.val
}

func (it *iterator) Err() error { return it.err }

func (it *iterator) Close() error {
	if it.closed {
		return fmt.Errorf("memory: iterator close: %w", storage.ErrClosed)
	}
	it.closed, it.valid = true, false
	it.err = fmt.Errorf("memory: iterator: %w", storage.ErrClosed)
	b := it.buf
	it.buf, it.items, it.cur, it.skip = nil, nil, item{}, nil
	// Drop references into the tree so a pooled buffer does not keep a
	// dead snapshot's items alive.
	clear(b.items[:it.high])
	if cap(b.key) > maxScratch {
		b.key = nil
	}
	if cap(b.val) > maxScratch {
		b.val = nil
	}
	bufPool.Put(b)
	return nil
}
