package overlay

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/metcd/metcd/storage"
)

// The btree only offers push-style walks, so the pending side is pulled in
// chunks: each refill walks the frozen clone from just past the last entry
// it returned. Chunks start small because transactions mostly read short
// ranges, and double up to maxChunk so long scans pay one O(log n)
// descent per maxChunk entries.
const (
	firstChunk = 16
	maxChunk   = 256
	// maxScratch bounds the key/value scratch kept in the pool, so one
	// huge value does not pin memory forever.
	maxScratch = 64 << 10
)

// iterBuf is the reusable part of an iterator: the chunk and the scratch
// space for pending keys and values.
type iterBuf struct {
	items    []entry
	key, val []byte
}

var bufPool = sync.Pool{New: func() any {
	return &iterBuf{items: make([]entry, 0, maxChunk)}
}}

var (
	errClosed      = fmt.Errorf("overlay: iterator: %w", storage.ErrClosed)
	errCloseClosed = fmt.Errorf("overlay: iterator close: %w", storage.ErrClosed)
)

// iterator is a sorted two-way merge of a frozen clone of the pending
// writes (the "pending" side) with a base iterator opened with the same
// options. Each side has a head, the next entry it offers; Next emits the
// smaller head in iteration order, the pending one on a tie, and advances
// a side only on the following Next, so the base's Key and Value stay
// valid while its head is the current position.
type iterator struct {
	base storage.Iterator

	// The pending side.
	t            *tree // frozen: never written
	lower, upper []byte
	reverse      bool
	visitFn      func(entry) bool // it.visit, bound once
	buf          *iterBuf
	items        []entry // current chunk, a prefix of buf.items
	pos          int
	chunk        int  // size of the next chunk
	high         int  // longest chunk so far, to clear before pooling
	walked       bool // a chunk has been collected
	drained      bool // the walk reached the end of the range
	skip         []byte
	hasSkip      bool // the next visited entry is skipped if its key is skip

	pend    entry // pending head, if pendOK
	pendOK  bool
	baseKey []byte // base head's key, if baseOK
	baseOK  bool
	// advPend and advBase say which heads the current position consumed,
	// to be advanced by the next call to Next; both are set before the
	// first call.
	advPend, advBase bool

	valid    bool
	fromPend bool // the current position is the pending head
	haveKey  bool // buf.key holds the current pending key
	haveVal  bool // buf.val holds the current pending value

	err    error
	closed bool
}

func newIterator(t *tree, base storage.Iterator, opts storage.IterOptions) *iterator {
	it := &iterator{
		base:    base,
		t:       t,
		lower:   bytes.Clone(opts.Lower), // the caller may reuse its slices
		upper:   bytes.Clone(opts.Upper),
		reverse: opts.Reverse,
		chunk:   firstChunk,
		advPend: true,
		advBase: true,
		pos:     -1,
		buf:     bufPool.Get().(*iterBuf),
	}
	it.visitFn = it.visit
	if it.lower != nil && it.upper != nil && bytes.Compare(it.lower, it.upper) >= 0 {
		it.drained = true
	}
	return it
}

// Next implements storage.Iterator.
func (it *iterator) Next() bool {
	if it.closed || it.err != nil {
		return false
	}
	it.valid = false
	if it.advPend {
		it.advPend = false
		it.nextPend()
	}
	if it.advBase {
		it.advBase = false
		if !it.nextBase() {
			return false
		}
	}
	for {
		var c int // < 0: the pending head comes first; > 0: the base head
		switch {
		case !it.pendOK && !it.baseOK:
			return false
		case !it.pendOK:
			c = 1
		case !it.baseOK:
			c = -1
		default:
			c = bytes.Compare(it.pend.key(), it.baseKey)
			if it.reverse {
				c = -c
			}
		}
		if c > 0 {
			it.advBase, it.fromPend = true, false
			break
		}
		if it.pend.del {
			// A tombstone emits nothing and hides the base key it ties.
			it.nextPend()
			if c == 0 && !it.nextBase() {
				return false
			}
			continue
		}
		it.advPend, it.advBase, it.fromPend = true, c == 0, true
		break
	}
	it.valid, it.haveKey, it.haveVal = true, false, false
	return true
}

// nextBase moves the base head forward. It returns false, with it.err
// set, if the base iterator failed: the merge must not go on with a base
// that silently lost keys.
func (it *iterator) nextBase() bool {
	if it.base.Next() {
		it.baseKey, it.baseOK = it.base.Key(), true
		return true
	}
	it.baseKey, it.baseOK = nil, false
	if err := it.base.Err(); err != nil {
		it.err = err
		return false
	}
	return true
}

// nextPend moves the pending head forward.
func (it *iterator) nextPend() {
	it.pos++
	if it.pos >= len(it.items) && !it.fill() {
		it.pend, it.pendOK = entry{}, false
		return
	}
	it.pend, it.pendOK = it.items[it.pos], true
}

// fill collects the next chunk of pending entries and reports whether it
// is non-empty.
func (it *iterator) fill() bool {
	if it.drained {
		it.items = it.items[:0]
		return false
	}
	var pivot entry
	resume := it.walked
	if resume {
		pivot = it.items[len(it.items)-1]
	}
	it.walked = true
	it.items = it.buf.items[:0]
	switch {
	case !it.reverse && resume:
		it.skip, it.hasSkip = pivot.key(), true
		it.t.AscendGreaterOrEqual(pivot, it.visitFn)
	case !it.reverse && it.lower != nil:
		it.t.AscendGreaterOrEqual(probe(it.lower), it.visitFn)
	case !it.reverse:
		it.t.Ascend(it.visitFn)
	case resume:
		it.skip, it.hasSkip = pivot.key(), true
		it.t.DescendLessOrEqual(pivot, it.visitFn)
	case it.upper != nil:
		// Upper is exclusive but the walk starts at it inclusively.
		it.skip, it.hasSkip = it.upper, true
		it.t.DescendLessOrEqual(probe(it.upper), it.visitFn)
	default:
		it.t.Descend(it.visitFn)
	}
	it.hasSkip, it.skip = false, nil
	// A short chunk means the walk hit the bound or the end of the tree.
	it.drained = len(it.items) < it.chunk
	it.high = max(it.high, len(it.items))
	if it.chunk < maxChunk {
		it.chunk *= 2
	}
	it.pos = 0
	return len(it.items) > 0
}

// visit is the btree callback collecting one chunk.
func (it *iterator) visit(e entry) bool {
	k := e.key()
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
	it.items = append(it.items, e)
	return len(it.items) < it.chunk
}

// Key implements storage.Iterator. A pending key is copied into scratch
// space, so a caller writing into the slice cannot corrupt the pending
// entry that the batch and other iterators share; a base key is the base
// iterator's own slice.
func (it *iterator) Key() []byte {
	switch {
	case !it.valid:
		return nil
	case !it.fromPend:
		return it.base.Key()
	case !it.haveKey:
		it.buf.key = append(it.buf.key[:0], it.pend.key()...)
		it.haveKey = true
	}
	return it.buf.key
}

// Value implements storage.Iterator, like Key.
func (it *iterator) Value() []byte {
	switch {
	case !it.valid:
		return nil
	case !it.fromPend:
		return it.base.Value()
	case !it.haveVal:
		it.buf.val = append(it.buf.val[:0], it.pend.value()...)
		it.haveVal = true
	}
	return it.buf.val
}

// Err implements storage.Iterator: the base iterator's error that ended
// the iteration, or ErrClosed after Close.
func (it *iterator) Err() error { return it.err }

// Close implements storage.Iterator. It closes the base iterator and
// returns its error; a second Close returns an error wrapping ErrClosed.
func (it *iterator) Close() error {
	if it.closed {
		return errCloseClosed
	}
	it.closed, it.valid = true, false
	if it.err == nil {
		it.err = errClosed
	}
	b := it.buf
	it.t, it.buf, it.items, it.pend, it.baseKey, it.skip = nil, nil, nil, entry{}, nil, nil
	// Drop references to pending entries so a pooled buffer does not keep
	// a dead batch's writes alive.
	clear(b.items[:it.high])
	if cap(b.key) > maxScratch {
		b.key = nil
	}
	if cap(b.val) > maxScratch {
		b.val = nil
	}
	bufPool.Put(b)
	return it.base.Close()
}
