package bolt

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/metcd/metcd/storage"
)

// iterator is a bbolt cursor in a view's transaction. Each Next copies the
// current pair out of the memory map while holding the view's lock, so
// Key and Value stay valid (and writable) even if the view is closed by
// another goroutine, and no caller can write into the read-only map.
type iterator struct {
	v   *view
	own bool // the view belongs to this iterator (engine iterators)
	c   *bbolt.Cursor

	lower, upper []byte
	reverse      bool

	started bool
	done    bool // the range is exhausted
	valid   bool // key and val hold the current pair
	closed  bool
	err     error

	key, val []byte
}

func newIterator(v *view, own bool, opts storage.IterOptions) *iterator {
	it := &iterator{
		v:       v,
		own:     own,
		lower:   bytes.Clone(opts.Lower), // the caller may reuse its slices
		upper:   bytes.Clone(opts.Upper),
		reverse: opts.Reverse,
	}
	if it.lower != nil && it.upper != nil && bytes.Compare(it.lower, it.upper) >= 0 {
		it.finish()
	}
	return it
}

// finish marks the range exhausted and releases an owned transaction early,
// so an exhausted iterator no longer pins pages.
func (it *iterator) finish() {
	it.done, it.valid, it.c = true, false, nil
	if it.own {
		it.v.close()
	}
}

func (it *iterator) Next() bool {
	if it.closed || it.err != nil || it.done {
		it.valid = false
		return false
	}
	v := it.v
	v.mu.RLock()
	if v.tx == nil {
		v.mu.RUnlock()
		it.valid, it.c = false, nil
		it.err = fmt.Errorf("bolt: iterator next: %w", storage.ErrClosed)
		return false
	}
	var k, val []byte
	if !it.started {
		it.started = true
		it.c = v.b.Cursor()
		k, val = it.first()
	} else if it.reverse {
		k, val = it.c.Prev()
	} else {
		k, val = it.c.Next()
	}
	ok := k != nil && it.inRange(k)
	if ok {
		it.key = append(it.key[:0], k...)
		it.val = append(it.val[:0], val...)
	}
	v.mu.RUnlock()
	if !ok {
		it.finish()
		return false
	}
	it.valid = true
	return true
}

// first positions the cursor on the first pair of the range in iteration
// order, or returns a nil key.
func (it *iterator) first() (k, v []byte) {
	if !it.reverse {
		if it.lower != nil {
			return it.c.Seek(it.lower)
		}
		return it.c.First()
	}
	if it.upper == nil {
		return it.c.Last()
	}
	// Seek finds the first key >= upper; the range ends just before it.
	k, _ = it.c.Seek(it.upper)
	if k == nil {
		return it.c.Last()
	}
	return it.c.Prev()
}

// inRange checks the bound the iteration moves towards; the cursor
// started inside the other one.
func (it *iterator) inRange(k []byte) bool {
	if it.reverse {
		return it.lower == nil || bytes.Compare(k, it.lower) >= 0
	}
	return it.upper == nil || bytes.Compare(k, it.upper) < 0
}

func (it *iterator) Key() []byte {
	if !it.valid {
		return nil
	}
	return it.key
}

func (it *iterator) Value() []byte {
	if !it.valid {
		return nil
	}
	return it.val
}

func (it *iterator) Err() error { return it.err }

func (it *iterator) Close() error {
	if it.closed {
		return fmt.Errorf("bolt: iterator close: %w", storage.ErrClosed)
	}
	it.closed, it.valid, it.c = true, false, nil
	it.err = fmt.Errorf("bolt: iterator: %w", storage.ErrClosed)
	if it.own {
		it.v.close()
	}
	it.key, it.val = nil, nil
	return nil
}
