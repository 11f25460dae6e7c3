package memory

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"

	"github.com/metcd/metcd/internal/btreecursor"
	"github.com/metcd/metcd/storage"
)

// degree is the B-tree degree. Nodes hold up to 2*degree-1 items; 32
// keeps lookups shallow while bounding the per-commit copy-on-write cost
// once a snapshot shares the nodes.
const degree = 32

// item is one key-value pair stored as key||value in one slice. One
// pointer per item instead of two makes nodes smaller, which cuts both the
// copy-on-write cost after a clone and the garbage collector's scan work.
// The bytes are owned by the tree and never modified after insertion, so
// clones can share them.
type item struct {
	kv   []byte
	klen int
}

// keyItem is a lookup probe for key; it does not copy.
func keyItem(key []byte) item { return item{kv: key, klen: len(key)} }

func (x item) key() []byte   { return x.kv[:x.klen:x.klen] }
func (x item) value() []byte { return x.kv[x.klen:] }

func less(a, b item) bool { return bytes.Compare(a.key(), b.key()) < 0 }

type tree = btree.BTreeG[item]

func newTree() *tree {
	// The engine's mutex guards the live tree, and its copies are never
	// written, so the tree needs no lock of its own.
	return btree.NewBTreeGOptions(less, btree.Options{Degree: degree, NoLocks: true})
}

// Engine is an in-memory storage.Engine. The zero value is not usable; call
// New.
type Engine struct {
	mu sync.RWMutex
	// t is the live tree, written only by Commit under mu; nil once closed.
	t *tree
	// view caches a frozen copy of t taken after the last commit, shared
	// by every snapshot and iterator until the next commit invalidates it.
	// Without it every iterator would copy under the write lock, and each
	// copy makes the following commit copy its path again.
	view   atomic.Pointer[tree]
	closed atomic.Bool
	// bytes is the size of the live keys and values, under mu.
	bytes int64
	// hints are Commit's path hints, under mu; kept across commits, so
	// that a run of one-write commits in ascending order uses them too.
	hints btreecursor.Hints
}

var _ storage.Engine = (*Engine)(nil)

// New returns an empty engine.
func New() *Engine {
	return &Engine{t: newTree()}
}

// Name implements storage.Engine.
func (e *Engine) Name() string { return "memory" }

// Durable implements storage.Engine: nothing survives the process.
func (e *Engine) Durable() bool { return false }

// Get implements storage.Reader.
func (e *Engine) Get(key []byte) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.t == nil {
		return nil, fmt.Errorf("memory: get: %w", storage.ErrClosed)
	}
	return get(e.t, key)
}

// get looks key up in t. ErrNotFound is returned unwrapped: misses are
// common on the read path and wrapping would allocate for each of them.
func get(t *tree, key []byte) ([]byte, error) {
	it, ok := t.Get(keyItem(key))
	if !ok {
		return nil, storage.ErrNotFound
	}
	// A non-nil copy, so an empty value stays distinguishable from a miss.
	v := it.value()
	return append(make([]byte, 0, len(v)), v...), nil
}

// frozen returns a read-only copy of the committed state.
func (e *Engine) frozen() (*tree, error) {
	if e.closed.Load() {
		return nil, storage.ErrClosed
	}
	if v := e.view.Load(); v != nil {
		return v, nil
	}
	// Copy gives the source tree a new copy-on-write identity, so it needs
	// the exclusive lock; it is O(1), so readers wait only briefly.
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t == nil {
		return nil, storage.ErrClosed
	}
	v := e.view.Load()
	if v == nil {
		v = e.t.Copy()
		e.view.Store(v)
	}
	return v, nil
}

// NewIterator implements storage.Reader. The iterator reads a frozen copy,
// so it sees the state as of this call and holds no lock while it runs.
func (e *Engine) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	v, err := e.frozen()
	if err != nil {
		return nil, fmt.Errorf("memory: new iterator: %w", err)
	}
	return newIterator(v, &e.closed, nil, opts), nil
}

// NewSnapshot implements storage.Engine in O(1).
func (e *Engine) NewSnapshot() (storage.Snapshot, error) {
	v, err := e.frozen()
	if err != nil {
		return nil, fmt.Errorf("memory: new snapshot: %w", err)
	}
	return &snapshot{t: v, eng: &e.closed}, nil
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return &batch{e: e} }

// NewBatchSize implements storage.BatchSizer: room in the list of writes.
// Each pair still gets its own allocation, which the tree keeps.
func (e *Engine) NewBatchSize(keys, bytes int) storage.Batch {
	return &batch{e: e, ops: make([]op, 0, keys)}
}

// Sync implements storage.Engine; there is nothing to flush.
func (e *Engine) Sync() error {
	if e.closed.Load() {
		return fmt.Errorf("memory: sync: %w", storage.ErrClosed)
	}
	return nil
}

// Stats implements storage.Engine with an exact key count.
func (e *Engine) Stats() (storage.Stats, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.t == nil {
		return storage.Stats{}, fmt.Errorf("memory: stats: %w", storage.ErrClosed)
	}
	return storage.Stats{Keys: int64(e.t.Len()), LiveBytes: e.bytes}, nil
}

// Close implements storage.Engine. It drops the tree; snapshots and
// iterators still open report ErrClosed from then on.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t == nil {
		return fmt.Errorf("memory: close: %w", storage.ErrClosed)
	}
	e.t = nil
	e.view.Store(nil)
	e.closed.Store(true)
	return nil
}

type snapshot struct {
	t      *tree // frozen: never written, so reads need no lock
	eng    *atomic.Bool
	closed atomic.Bool
}

func (s *snapshot) err() error {
	if s.closed.Load() || s.eng.Load() {
		return storage.ErrClosed
	}
	return nil
}

func (s *snapshot) Get(key []byte) ([]byte, error) {
	if err := s.err(); err != nil {
		return nil, fmt.Errorf("memory: snapshot get: %w", err)
	}
	return get(s.t, key)
}

func (s *snapshot) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	if err := s.err(); err != nil {
		return nil, fmt.Errorf("memory: snapshot new iterator: %w", err)
	}
	return newIterator(s.t, s.eng, &s.closed, opts), nil
}

func (s *snapshot) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("memory: snapshot close: %w", storage.ErrClosed)
	}
	return nil
}

// op is one queued write; the batch owns x.kv.
type op struct {
	x   item
	del bool
}

type batch struct {
	e    *Engine
	ops  []op
	done bool // committed or closed
}

// Put copies key and value into a single allocation that the tree then
// owns, so Commit inserts without copying again.
func (b *batch) Put(key, value []byte) {
	if b.done {
		return
	}
	kv := make([]byte, len(key)+len(value))
	copy(kv[copy(kv, key):], value)
	b.ops = append(b.ops, op{x: item{kv: kv, klen: len(key)}})
}

func (b *batch) Delete(key []byte) {
	if b.done {
		return
	}
	b.ops = append(b.ops, op{x: keyItem(bytes.Clone(key)), del: true})
}

func (b *batch) Len() int { return len(b.ops) }

// Commit applies every operation under one write lock, so readers observe
// all of the batch or none of it. sync is irrelevant in memory.
func (b *batch) Commit(sync bool) error {
	if b.done {
		return fmt.Errorf("memory: commit: batch already committed or closed: %w", storage.ErrClosed)
	}
	b.done = true
	ops := b.ops
	b.ops = nil
	e := b.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t == nil {
		return fmt.Errorf("memory: commit: %w", storage.ErrClosed)
	}
	if len(ops) == 0 {
		return nil
	}
	for i := range ops {
		var old item
		var had bool
		hint := e.hints.For(ops[i].x.key())
		if ops[i].del {
			old, had = e.t.DeleteHint(ops[i].x, hint)
		} else {
			old, had = e.t.SetHint(ops[i].x, hint)
			e.bytes += int64(len(ops[i].x.kv))
		}
		if had {
			e.bytes -= int64(len(old.kv))
		}
	}
	e.view.Store(nil)
	return nil
}

// Close discards an uncommitted batch; after Commit it is a no-op so that
// "defer b.Close()" is always safe.
func (b *batch) Close() error {
	b.done = true
	b.ops = nil
	return nil
}
