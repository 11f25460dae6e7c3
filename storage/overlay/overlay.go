package overlay

import (
	"bytes"

	"github.com/tidwall/btree"

	"github.com/metcd/metcd/internal/btreecursor"
	"github.com/metcd/metcd/storage"
)

// degree is the B-tree degree. Every write that follows an iterator's
// clone copies the nodes on its path, so nodes are kept smaller than the
// library's default: 31 items of 40 bytes per node.
const degree = 16

// entry is one pending write: a put of key||value, or a delete (tombstone)
// of key. The bytes are owned by the Batch and never modified once
// inserted, so clones share them.
type entry struct {
	kv   []byte
	klen int
	del  bool
}

// probe is a lookup key for key; it does not copy.
func probe(key []byte) entry { return entry{kv: key, klen: len(key)} }

func (e entry) key() []byte   { return e.kv[:e.klen:e.klen] }
func (e entry) value() []byte { return e.kv[e.klen:] }

func less(a, b entry) bool { return bytes.Compare(a.key(), b.key()) < 0 }

type tree = btree.BTreeG[entry]

func newTree() *tree {
	// The Batch is owned by one goroutine and its clones are never
	// written, so the tree needs no lock of its own.
	return btree.NewBTreeGOptions(less, btree.Options{Degree: degree, NoLocks: true})
}

// Batch collects writes over a base reader and serves reads that see them:
// a pending put overrides the base value, a pending delete hides the base
// key, and keys the batch does not touch read through to the base. Keys
// follow storage.Reader's rules (non-empty, compared bytewise).
//
// A Batch is not safe for concurrent use; the apply loop owns it. It never
// writes to or closes its base. The zero value is not usable; call New.
type Batch struct {
	base storage.Reader
	t    *tree
	// hints speed up runs of writes that ascend within a family of keys.
	hints btreecursor.Hints
	// view is a frozen clone of t shared by the iterators created since
	// the last write, so a run of reads with no write in between clones
	// once; nil when t changed after the last clone.
	view *tree
	// slab is where the next entries' bytes are carved from, so that a
	// Ready of many small writes makes a few large allocations rather
	// than one per write. A slab is never written again once carved, and
	// Reset starts a new one rather than reusing it, so entries that
	// iterator clones still hold stay intact.
	slab []byte
	// slabCap is the size of the last slab: slabs double from minSlab up
	// to slabSize, so that the Batch of a Ready of one small write (the
	// server makes one per Ready) stays small.
	slabCap int
	// bytes sums the keys and values written since the last Reset.
	bytes int
}

// minSlab and slabSize are the sizes of the first slab and of the
// largest; pairs larger than slabSize/8 get their own allocation.
const minSlab, slabSize = 512, 64 << 10

// alloc returns n bytes carved from the slab, with a capacity of exactly
// n so that no append can reach the bytes that follow.
func (b *Batch) alloc(n int) []byte {
	if n > slabSize/8 {
		return make([]byte, n)
	}
	if len(b.slab) < n {
		b.slabCap = min(slabSize, max(minSlab, 2*b.slabCap))
		for b.slabCap < n {
			b.slabCap *= 2
		}
		b.slab = make([]byte, b.slabCap)
	}
	p := b.slab[:n:n]
	b.slab = b.slab[n:]
	return p
}

var _ storage.Reader = (*Batch)(nil)

// New returns an empty batch over base, which must not be nil. The base is
// typically the engine the batch will be applied to. Reads of keys the
// batch has not written go to the base as it is at each call, so for
// transactions to see one consistent state the base should change only
// when this batch is committed, followed by Reset.
func New(base storage.Reader) *Batch {
	return &Batch{base: base, t: newTree()}
}

// Put sets key to value in the batch, replacing any earlier write to key.
// It copies both slices, so the caller may reuse them.
func (b *Batch) Put(key, value []byte) {
	kv := b.alloc(len(key) + len(value))
	copy(kv[copy(kv, key):], value)
	b.write(entry{kv: kv, klen: len(key)})
}

// Delete records a deletion of key, replacing any earlier write to key;
// the key then reads as absent whether or not the base has it. It copies
// key.
func (b *Batch) Delete(key []byte) {
	kv := b.alloc(len(key))
	copy(kv, key)
	b.write(entry{kv: kv, klen: len(key), del: true})
}

func (b *Batch) write(e entry) {
	b.view = nil
	b.bytes += len(e.kv)
	b.t.SetHint(e, b.hints.For(e.key()))
}

// Get returns the value of key as the batch sees it: the pending value if
// the batch put key, storage.ErrNotFound (unwrapped) if the batch deleted
// it, and otherwise whatever the base returns, errors included. The
// returned slice belongs to the caller; an empty value is a non-nil empty
// slice.
func (b *Batch) Get(key []byte) ([]byte, error) {
	e, ok := b.get(key)
	if !ok {
		return b.base.Get(key)
	}
	if e.del {
		return nil, storage.ErrNotFound
	}
	v := e.value()
	return append(make([]byte, 0, len(v)), v...), nil
}

// get finds the pending write of key. It shares the hint of key's family
// with writes, as a put usually reads its key just before writing it.
func (b *Batch) get(key []byte) (entry, bool) {
	return b.t.GetHint(probe(key), b.hints.For(key))
}

// A TrimGetter is a base that can answer a point read with a trimmed
// value: a form of it, defined by the base's owner, that holds only what
// some callers need (kvstore's read cache keeps such a form of the keys a
// write reads, so that it can keep more keys). It may return the whole
// value instead.
type TrimGetter interface {
	GetTrimmed(key []byte) ([]byte, error)
}

// GetTrimmed is Get for a caller that can use a trimmed value: a pending
// write gives its whole value; otherwise the base answers, through its
// GetTrimmed if it is a TrimGetter.
func (b *Batch) GetTrimmed(key []byte) ([]byte, error) {
	if tg, ok := b.base.(TrimGetter); ok {
		if _, pending := b.get(key); !pending {
			return tg.GetTrimmed(key)
		}
	}
	return b.Get(key)
}

// NewIterator returns an iterator over [opts.Lower, opts.Upper) in the
// direction opts asks for, merging the pending writes with an iterator the
// base opens with the same options: a pending put yields its value in the
// key's place (overriding the base value), and a pending delete hides the
// base key. The caller may reuse the slices in opts once NewIterator
// returns, and must close the iterator. An error from the base's
// NewIterator, or later from its iterator (which ends the iteration and is
// reported by Err), is returned as is.
//
// The iterator sees the pending writes as they are at this call: writes
// made to the batch afterwards, Reset included, are not seen and cannot
// make it skip or repeat a key. The base part sees what the base's own
// iterator sees, which storage.Reader pins at this call too. Because it
// shares no mutable state with the batch, the iterator may be consumed
// while the batch keeps being written, even on another goroutine if the
// base iterator allows that.
//
// Key and Value follow storage.Iterator: they are valid until the next
// call to Next or Close, and must be copied to be kept. When the batch has
// no pending write in the range, the base iterator is returned unwrapped.
func (b *Batch) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	bi, err := b.base.NewIterator(opts)
	if err != nil || !b.pendingIn(opts.Lower, opts.Upper) {
		return bi, err
	}
	if b.view == nil {
		b.view = b.t.Copy()
	}
	return newIterator(b.view, bi, opts), nil
}

// pendingIn reports whether a pending write falls in [lower, upper). A
// range the batch has not touched needs no merge, and no clone whose
// copy-on-write the next write would pay for.
func (b *Batch) pendingIn(lower, upper []byte) bool {
	if b.t.Len() == 0 || lower != nil && upper != nil && bytes.Compare(lower, upper) >= 0 {
		return false
	}
	var first entry
	var ok bool
	if lower == nil {
		first, ok = b.t.Min()
	} else {
		b.t.Ascend(probe(lower), func(e entry) bool {
			first, ok = e, true
			return false
		})
	}
	return ok && (upper == nil || bytes.Compare(first.key(), upper) < 0)
}

// Len returns the number of distinct keys written (put or deleted) since
// New or the last Reset.
func (b *Batch) Len() int { return b.t.Len() }

// Size returns the bytes of keys and values written since New or the last
// Reset, a key written twice counted twice: with Len, the size of the
// engine batch ApplyTo fills (storage.NewBatchSize).
func (b *Batch) Size() int { return b.bytes }

// ApplyTo replays the net writes into dst in ascending key order: one Put
// or Delete per distinct key, carrying the last write to that key. The
// slices passed to dst belong to b; storage.Batch copies them. Deletes are
// replayed even for keys the base never had, which storage.Batch allows.
// ApplyTo does not change b: call Reset after committing dst.
func (b *Batch) ApplyTo(dst storage.Batch) {
	b.Ascend(func(key, value []byte, deleted bool) bool {
		if deleted {
			dst.Delete(key)
		} else {
			dst.Put(key, value)
		}
		return true
	})
}

// Ascend calls fn for each pending write in ascending key order (the last
// write to each key) until fn returns false. The slices belong to b and
// are valid until the next write or Reset; value is nil for a delete.
func (b *Batch) Ascend(fn func(key, value []byte, deleted bool) bool) {
	b.t.Scan(func(e entry) bool {
		if e.del {
			return fn(e.key(), nil, true)
		}
		return fn(e.key(), e.value(), false)
	})
}

// Reset drops every pending write and sets the base reader, typically the
// same engine after the previous batch was committed, so the Batch can
// serve the next Ready. Open iterators keep reading what they saw before.
func (b *Batch) Reset(base storage.Reader) {
	b.base = base
	b.view = nil
	b.slab, b.slabCap = nil, 0
	b.bytes = 0
	// Clones keep the nodes they share. The hints may stay: a stale one
	// costs what a search without one costs.
	b.t.Clear()
}
