package pebble

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/metcd/metcd/storage"
)

// iterator adapts a *pebble.Iterator to storage.Iterator.
//
// Each position's key and value are copied into the iterator's own
// buffers inside Next. That keeps Key and Value lock-free and valid even if
// the engine closes the Pebble iterator underneath (see release), and a
// caller writing into them cannot corrupt Pebble's blocks or memtable.
type iterator struct {
	// mu serializes the user's calls with release, which the engine or
	// snapshot calls from another goroutine when it is closed first.
	mu    sync.Mutex
	pi    *pebble.Iterator // nil once released, or for an empty range
	owner *registry[*iterator]
	err   error // ends the iteration; ErrClosed once closed or released

	reverse bool
	started bool
	done    bool // reached the end of the range
	closed  bool // by the user

	key, val []byte // copies of the current pair
	valid    bool
}

// newIterator opens an iterator on r and registers it with owner, so that
// closing the owner closes it. The caller holds the owner's lock for
// reading, which keeps the owner from being closed meanwhile.
func newIterator(r getter, owner *registry[*iterator], opts storage.IterOptions) (*iterator, error) {
	it := &iterator{owner: owner, reverse: opts.Reverse}
	// Only nil means unbounded, so a non-nil empty Upper admits no key.
	// Pebble would read an empty Upper as no bound, and asserts lower <=
	// upper in invariant builds; an inverted or empty range never reaches
	// it.
	if opts.Upper != nil && (len(opts.Upper) == 0 ||
		opts.Lower != nil && bytes.Compare(opts.Lower, opts.Upper) >= 0) {
		it.done = true
		return it, nil
	}
	// An empty Lower admits every key, as nil does; pass nil, because
	// Pebble's invariant builds (-race) read lower[0] when seeking to a
	// non-nil bound and panic on an empty one.
	lower := opts.Lower
	if len(lower) == 0 {
		lower = nil
	}
	// Pebble copies the bounds into iterator-owned buffers
	// (Iterator.processBounds), so the caller may reuse its slices.
	pi, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: opts.Upper})
	if err != nil {
		return nil, err
	}
	it.pi = pi
	owner.add(it)
	return it, nil
}

func (it *iterator) Next() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.valid = false
	if it.err != nil || it.done {
		return false
	}
	if it.pi == nil { // empty range
		it.done = true
		return false
	}
	var ok bool
	switch {
	case !it.started:
		it.started = true
		if it.reverse {
			ok = it.pi.Last()
		} else {
			ok = it.pi.First()
		}
	case it.reverse:
		ok = it.pi.Prev()
	default:
		ok = it.pi.Next()
	}
	if !ok {
		it.done = true
		if err := it.pi.Error(); err != nil {
			it.err = fmt.Errorf("pebble: iterator: %w", err)
		}
		return false
	}
	v, err := it.pi.ValueAndErr()
	if err != nil {
		it.err = fmt.Errorf("pebble: iterator value of %q: %w", it.pi.Key(), err)
		return false
	}
	it.key = append(it.key[:0], it.pi.Key()...)
	it.val = append(it.val[:0], v...)
	it.valid = true
	return true
}

// Key and Value read only fields that Next and Close set on the caller's
// goroutine, so they need no lock.
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

func (it *iterator) Err() error {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.err
}

// Close closes the iterator. The first Close after the engine or snapshot
// closed it returns nil, like on an open one.
func (it *iterator) Close() error {
	it.mu.Lock()
	if it.closed {
		it.mu.Unlock()
		return fmt.Errorf("pebble: iterator close: %w", storage.ErrClosed)
	}
	it.closed, it.valid = true, false
	it.key, it.val = nil, nil
	var err error
	registered := it.pi != nil
	if registered {
		err = it.pi.Close()
		it.pi = nil
	}
	it.err = fmt.Errorf("pebble: iterator: %w", storage.ErrClosed)
	it.mu.Unlock()
	if registered {
		it.owner.remove(it)
	}
	if err != nil {
		return fmt.Errorf("pebble: iterator close: %w", err)
	}
	return nil
}

// release closes the Pebble iterator on behalf of a closing engine or
// snapshot; the user's iterator reports ErrClosed from then on. It leaves
// the key and value buffers alone: the caller's goroutine may be reading
// them.
func (it *iterator) release() error {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.pi == nil {
		return nil
	}
	err := it.pi.Close()
	it.pi = nil
	it.err = fmt.Errorf("pebble: iterator: %w", storage.ErrClosed)
	if err != nil {
		return fmt.Errorf("pebble: iterator close: %w", err)
	}
	return nil
}
