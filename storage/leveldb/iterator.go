package leveldb

import (
	"bytes"
	"fmt"
	"sync"

	liter "github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/util"

	"github.com/metcd/metcd/storage"
)

// iterator adapts a goleveldb iterator (First/Next or Last/Prev) to the
// storage.Iterator pull loop.
//
// Slices: goleveldb's dbIter copies each key and value into its own
// buffers, which it overwrites on the next move. The value buffer is only
// ever written by the library, so Value returns it directly; the key
// buffer is also read by the library (to skip older versions of the same
// key), so Key returns a copy in the iterator's own buffer, and a caller
// writing into Key's slice cannot derail the iteration.
type iterator struct {
	e    *Engine
	snap *snapshot // nil for an iterator on the engine
	// mu serialises the owner's calls with Engine.Close, which releases li
	// from another goroutine. The owner is the only other user.
	mu      sync.Mutex
	li      liter.Iterator // nil once released
	reverse bool
	started bool

	// Owner-only state: Key and Value read only these, so they need no
	// lock even while Engine.Close releases li.
	valid bool
	key   []byte
	val   []byte
	err   error
	done  bool // reached the end; li already released
	// closed is set by Close.
	closed bool
}

// newIterator opens an iterator on the engine, or on snap if not nil. The
// caller holds e.mu for reading and has checked that nothing is closed.
func (e *Engine) newIterator(snap *snapshot, opts storage.IterOptions) *iterator {
	it := &iterator{e: e, snap: snap, reverse: opts.Reverse}
	// Only nil is unbounded. goleveldb agrees, but an empty range is
	// answered here without building a merged iterator at all.
	if (opts.Upper != nil && len(opts.Upper) == 0) ||
		(opts.Lower != nil && opts.Upper != nil && bytes.Compare(opts.Lower, opts.Upper) >= 0) {
		it.done = true
		return it
	}
	var rng *util.Range
	if opts.Lower != nil || opts.Upper != nil {
		// goleveldb builds internal keys from the bounds, so they are
		// copied and the caller may reuse its slices.
		rng = &util.Range{Start: opts.Lower, Limit: opts.Upper}
	}
	if snap != nil {
		it.li = snap.s.NewIterator(rng, nil)
	} else {
		it.li = e.db.NewIterator(rng, nil)
	}
	e.register(it)
	return it
}

// release frees the library iterator; it.mu must be held.
func (it *iterator) release() {
	if it.li != nil {
		it.li.Release()
		it.li = nil
	}
}

func (it *iterator) Next() bool {
	it.valid, it.key, it.val = false, it.key[:0], nil
	if it.closed || it.err != nil {
		return false
	}
	if it.e.closed.Load() || (it.snap != nil && it.snap.closed.Load()) {
		it.err = fmt.Errorf("leveldb: iterator next: %w", storage.ErrClosed)
		it.finish()
		return false
	}
	if it.done {
		return false
	}
	it.mu.Lock()
	li := it.li
	if li == nil {
		// Released by Engine.Close, which set the closed flag first.
		it.mu.Unlock()
		it.err = fmt.Errorf("leveldb: iterator next: %w", storage.ErrClosed)
		return false
	}
	var ok bool
	switch {
	case !it.started && it.reverse:
		ok = li.Last()
	case !it.started:
		ok = li.First()
	case it.reverse:
		ok = li.Prev()
	default:
		ok = li.Next()
	}
	it.started = true
	if ok {
		it.key = append(it.key, li.Key()...)
		it.val = li.Value()
		it.valid = true
		it.mu.Unlock()
		return true
	}
	if err := li.Error(); err != nil {
		it.err = fmt.Errorf("leveldb: iterator next: %w", mapErr(err))
	}
	it.mu.Unlock()
	// Release at the end rather than at Close, so a drained iterator pins
	// no memtable or table file.
	it.finish()
	return false
}

// finish releases the library iterator and unregisters it.
func (it *iterator) finish() {
	it.done = true
	it.mu.Lock()
	had := it.li != nil
	it.release()
	it.mu.Unlock()
	if had {
		it.e.unregister(it)
	}
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
		return fmt.Errorf("leveldb: iterator close: %w", storage.ErrClosed)
	}
	it.closed, it.valid = true, false
	it.err = fmt.Errorf("leveldb: iterator: %w", storage.ErrClosed)
	it.finish()
	it.key, it.val = nil, nil
	return nil
}
