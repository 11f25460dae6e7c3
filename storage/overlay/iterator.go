package overlay

import (
	"bytes"
	"fmt"

	"github.com/metcd/metcd/internal/btreecursor"
	"github.com/metcd/metcd/storage"
)

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

	// The pending side: a walk of a frozen clone, never written.
	walk    btreecursor.Cursor[entry]
	reverse bool
	buf     *btreecursor.Scratch

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
	haveKey  bool // buf.Key holds the current pending key
	haveVal  bool // buf.Val holds the current pending value

	err    error
	closed bool
}

func newIterator(t *tree, base storage.Iterator, opts storage.IterOptions) *iterator {
	it := &iterator{
		base:    base,
		reverse: opts.Reverse,
		advPend: true,
		advBase: true,
		buf:     btreecursor.GetScratch(),
	}
	// it is on the heap and never copied, as the walk's stack requires.
	// The caller may reuse its slices.
	it.walk.Init(t, entry.key, probe, bytes.Clone(opts.Lower), bytes.Clone(opts.Upper), opts.Reverse)
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
	it.pend, it.pendOK = it.walk.Next()
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
		it.buf.Key = append(it.buf.Key[:0], it.pend.key()...)
		it.haveKey = true
	}
	return it.buf.Key
}

// Value implements storage.Iterator, like Key.
func (it *iterator) Value() []byte {
	switch {
	case !it.valid:
		return nil
	case !it.fromPend:
		return it.base.Value()
	case !it.haveVal:
		it.buf.Val = append(it.buf.Val[:0], it.pend.value()...)
		it.haveVal = true
	}
	return it.buf.Val
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
	it.buf, it.pend, it.baseKey = nil, entry{}, nil
	it.walk.Release()
	btreecursor.PutScratch(b)
	return it.base.Close()
}
