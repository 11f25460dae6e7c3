package memory

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/metcd/metcd/internal/btreecursor"
	"github.com/metcd/metcd/storage"
)

type iterator struct {
	eng, snap *atomic.Bool
	walk      btreecursor.Cursor[item] // walks the frozen tree
	buf       *btreecursor.Scratch

	cur              item
	valid            bool
	haveKey, haveVal bool

	err    error
	closed bool
}

func newIterator(t *tree, eng, snap *atomic.Bool, opts storage.IterOptions) *iterator {
	it := &iterator{
		eng:  eng,
		snap: snap,
		buf:  btreecursor.GetScratch(),
	}
	// it is on the heap and never copied, as the walk's stack requires.
	// The caller may reuse its slices.
	it.walk.Init(t, item.key, keyItem, bytes.Clone(opts.Lower), bytes.Clone(opts.Upper), opts.Reverse)
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
	x, ok := it.walk.Next()
	if !ok {
		it.valid = false
		return false
	}
	it.cur = x
	it.valid, it.haveKey, it.haveVal = true, false, false
	return true
}

// Key returns a copy in the iterator's scratch buffer rather than the
// tree's own slice, so a caller writing into it cannot corrupt the tree
// that snapshots share.
func (it *iterator) Key() []byte {
	if !it.valid {
		return nil
	}
	if !it.haveKey {
		it.buf.Key = append(it.buf.Key[:0], it.cur.key()...)
		it.haveKey = true
	}
	return it.buf.Key
}

// Value returns a copy, like Key.
func (it *iterator) Value() []byte {
	if !it.valid {
		return nil
	}
	if !it.haveVal {
		it.buf.Val = append(it.buf.Val[:0], it.cur.value()...)
		it.haveVal = true
	}
	return it.buf.Val
}

func (it *iterator) Err() error { return it.err }

func (it *iterator) Close() error {
	if it.closed {
		return fmt.Errorf("memory: iterator close: %w", storage.ErrClosed)
	}
	it.closed, it.valid = true, false
	it.err = fmt.Errorf("memory: iterator: %w", storage.ErrClosed)
	b := it.buf
	it.buf, it.cur = nil, item{}
	// Drop references into the tree so that the iterator, if kept, does
	// not hold a dead snapshot's items alive.
	it.walk.Release()
	btreecursor.PutScratch(b)
	return nil
}
