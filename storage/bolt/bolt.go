package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/metcd/metcd/storage"
)

// FileName is the name of the database file inside the engine's directory.
const FileName = "bolt.db"

// DefaultLockTimeout is how long Open waits for the file lock by default.
const DefaultLockTimeout = time.Second

// DefaultInitialMmapSize is the address space mapped at Open: 10 GiB on
// 64-bit platforms, 512 MiB on 32-bit ones. See the package documentation.
var DefaultInitialMmapSize = func() int {
	if strconv.IntSize == 32 {
		return 512 << 20
	}
	return 10 << 30
}()

// ErrEmptyKey is returned by Commit for a batch that puts an empty key.
var ErrEmptyKey = errors.New("bolt: empty key")

// bucketName is the one bucket holding every key.
var bucketName = []byte("kv")

// Options configure Open. The zero value (or nil) gives the defaults.
type Options struct {
	// InitialMmapSize is the size in bytes of the memory map set up at
	// Open. While the file fits in it, commits never wait for open
	// snapshots and iterators. 0 means DefaultInitialMmapSize; a negative
	// value maps only the current file (bbolt's default), which makes
	// commits that grow the file wait for every open read view.
	InitialMmapSize int
	// NoSync skips the fsync of each commit. UNSAFE: a power loss or OS
	// crash can corrupt the database; only a process crash is survived.
	// Sync and sync=true commits still call fdatasync.
	NoSync bool
	// LockTimeout is how long Open waits for another holder of the
	// database file lock to go away. 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Engine is a storage.Engine backed by a bbolt database file. Create it
// with Open.
type Engine struct {
	db     *bbolt.DB
	dir    string
	noSync bool

	// mu is held shared by every call that uses db directly and
	// exclusively by Close, which sets closed first.
	mu     sync.RWMutex
	closed atomic.Bool

	// views are the open read transactions of snapshots and iterators,
	// which Close must end before bbolt can unmap the file.
	viewsMu sync.Mutex
	views   map[*view]struct{}
}

var _ storage.Engine = (*Engine)(nil)

// Open opens (creating if needed) the engine stored in dir. opts may be nil.
// It fails, after LockTimeout, if another Engine or process has the
// database open.
func Open(dir string, opts *Options) (*Engine, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	switch {
	case o.InitialMmapSize == 0:
		o.InitialMmapSize = DefaultInitialMmapSize
	case o.InitialMmapSize < 0:
		o.InitialMmapSize = 0
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bolt: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         o.LockTimeout,
		NoGrowSync:      false,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: o.InitialMmapSize,
		NoSync:          o.NoSync,
		NoStatistics:    true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: locked by another engine or process (waited %v): %w", path, o.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if err := ensureBucket(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: open %s: creating bucket: %w", path, err)
	}
	return &Engine{db: db, dir: dir, noSync: o.NoSync, views: make(map[*view]struct{})}, nil
}

// ensureBucket creates the bucket unless it exists, without a write
// transaction (and its fsyncs) in the common case.
func ensureBucket(db *bbolt.DB) error {
	exists := false
	if err := db.View(func(tx *bbolt.Tx) error {
		exists = tx.Bucket(bucketName) != nil
		return nil
	}); err != nil || exists {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
}

// Name implements storage.Engine.
func (e *Engine) Name() string { return "bolt" }

// Durable implements storage.Engine.
func (e *Engine) Durable() bool { return true }

// Dir returns the directory holding the database file.
func (e *Engine) Dir() string { return e.dir }

// acquire takes the shared lock for a call on the engine, or returns
// ErrClosed. The caller releases e.mu.RUnlock when it returns nil.
func (e *Engine) acquire() error {
	e.mu.RLock()
	if e.closed.Load() {
		e.mu.RUnlock()
		return storage.ErrClosed
	}
	return nil
}

// Get implements storage.Reader. ErrNotFound is returned unwrapped: misses
// are common and wrapping would allocate for each.
func (e *Engine) Get(key []byte) ([]byte, error) {
	if err := e.acquire(); err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	defer e.mu.RUnlock()
	tx, err := e.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("bolt: get: %w", err)
	}
	defer tx.Rollback()
	b := tx.Bucket(bucketName)
	if b == nil {
		return nil, fmt.Errorf("bolt: get: bucket %q missing", bucketName)
	}
	return get(b, key)
}

// get copies key's value out of the memory map.
func get(b *bbolt.Bucket, key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, storage.ErrNotFound
	}
	k, v := b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, storage.ErrNotFound
	}
	// A non-nil copy, so an empty value stays distinguishable from a miss.
	return append(make([]byte, 0, len(v)), v...), nil
}

// openView begins a tracked read-only transaction.
func (e *Engine) openView() (*view, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	tx, err := e.db.Begin(false)
	if err != nil {
		return nil, err
	}
	b := tx.Bucket(bucketName)
	if b == nil {
		tx.Rollback()
		return nil, fmt.Errorf("bucket %q missing", bucketName)
	}
	v := &view{e: e, tx: tx, b: b}
	e.viewsMu.Lock()
	e.views[v] = struct{}{}
	e.viewsMu.Unlock()
	return v, nil
}

// NewIterator implements storage.Reader. The iterator has its own read
// transaction, so it is a point-in-time view; it never blocks commits while
// the file fits in the memory map.
func (e *Engine) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	v, err := e.openView()
	if err != nil {
		return nil, fmt.Errorf("bolt: new iterator: %w", err)
	}
	return newIterator(v, true, opts), nil
}

// NewSnapshot implements storage.Engine with a read-only transaction.
func (e *Engine) NewSnapshot() (storage.Snapshot, error) {
	v, err := e.openView()
	if err != nil {
		return nil, fmt.Errorf("bolt: new snapshot: %w", err)
	}
	return &snapshot{v: v}, nil
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return &batch{e: e} }

// NewBatchSize implements storage.BatchSizer: room in the list of writes,
// and one buffer the pairs are copied into, since the batch keeps them
// only until its commit. A range delete's batch of 1.5 M writes otherwise
// regrows its list about twenty times and makes as many allocations as
// writes.
func (e *Engine) NewBatchSize(keys, bytes int) storage.Batch {
	return &batch{e: e, ops: make([]op, 0, keys), buf: make([]byte, 0, bytes)}
}

// Sync implements storage.Engine. Every commit is already fsynced unless
// Options.NoSync is set, in which case Sync calls fdatasync.
func (e *Engine) Sync() error {
	if err := e.acquire(); err != nil {
		return fmt.Errorf("bolt: sync: %w", err)
	}
	defer e.mu.RUnlock()
	if e.noSync {
		if err := e.db.Sync(); err != nil {
			return fmt.Errorf("bolt: sync: %w", err)
		}
	}
	return nil
}

// Stats implements storage.Engine. DiskBytes is the apparent size of the
// files in the directory. bbolt grows its file 16 MiB beyond what it needs
// (sparse, so not yet allocated on disk): a fresh database reports about
// 16 MiB. Keys is -1: bbolt can only count keys by walking every page.
func (e *Engine) Stats() (storage.Stats, error) {
	if err := e.acquire(); err != nil {
		return storage.Stats{}, fmt.Errorf("bolt: stats: %w", err)
	}
	defer e.mu.RUnlock()
	var total int64
	err := filepath.WalkDir(e.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return storage.Stats{}, fmt.Errorf("bolt: stats: %w", err)
	}
	return storage.Stats{DiskBytes: total, Keys: -1}, nil
}

// closeViews ends every tracked read transaction.
func (e *Engine) closeViews() {
	e.viewsMu.Lock()
	vs := make([]*view, 0, len(e.views))
	for v := range e.views {
		vs = append(vs, v)
	}
	e.viewsMu.Unlock()
	for _, v := range vs {
		v.close()
	}
}

// Close implements storage.Engine. Snapshots and iterators still open are
// invalidated (they return ErrClosed from then on) rather than waited for;
// in-flight calls finish first.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("bolt: close: %w", storage.ErrClosed)
	}
	// End the read transactions before waiting for in-flight calls: a
	// commit remapping the file waits for them.
	e.closeViews()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closeViews() // opened by calls that were in flight
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// view is a read-only transaction shared by a snapshot and its iterators,
// or owned by one engine iterator. mu is held shared while the transaction
// is used and exclusively to end it, so Close can end it from another
// goroutine safely.
type view struct {
	e  *Engine
	mu sync.RWMutex
	tx *bbolt.Tx     // nil once closed
	b  *bbolt.Bucket // the bucket in tx
}

// close ends the transaction and reports whether it was still open.
func (v *view) close() bool {
	v.mu.Lock()
	tx := v.tx
	v.tx, v.b = nil, nil
	v.mu.Unlock()
	if tx == nil {
		return false
	}
	v.e.viewsMu.Lock()
	delete(v.e.views, v)
	v.e.viewsMu.Unlock()
	// A read-only rollback only fails if the transaction already ended.
	_ = tx.Rollback()
	return true
}

type snapshot struct {
	v *view
}

func (s *snapshot) Get(key []byte) ([]byte, error) {
	s.v.mu.RLock()
	defer s.v.mu.RUnlock()
	if s.v.tx == nil {
		return nil, fmt.Errorf("bolt: snapshot get: %w", storage.ErrClosed)
	}
	return get(s.v.b, key)
}

func (s *snapshot) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	s.v.mu.RLock()
	closed := s.v.tx == nil
	s.v.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("bolt: snapshot new iterator: %w", storage.ErrClosed)
	}
	return newIterator(s.v, false, opts), nil
}

// Close ends the snapshot's transaction; its iterators return ErrClosed
// from then on.
func (s *snapshot) Close() error {
	if !s.v.close() {
		return fmt.Errorf("bolt: snapshot close: %w", storage.ErrClosed)
	}
	return nil
}

// op is one queued write. kv holds key||value in one allocation owned by
// the batch; bbolt requires it to stay valid until the commit ends.
type op struct {
	kv   []byte
	klen int
	del  bool
}

type batch struct {
	e   *Engine
	ops []op
	// buf is where pairs are copied while it has room (NewBatchSize).
	buf  []byte
	n    int   // operations queued, kept after Commit for error messages
	err  error // first invalid operation
	done bool  // committed or closed
}

// Put implements storage.Batch. An empty key makes Commit fail.
func (b *batch) Put(key, value []byte) {
	if b.done {
		return
	}
	b.n++
	if len(key) == 0 {
		if b.err == nil {
			b.err = fmt.Errorf("bolt: commit: put #%d: %w", b.n, ErrEmptyKey)
		}
		return
	}
	kv := b.alloc(len(key) + len(value))
	copy(kv[copy(kv, key):], value)
	b.ops = append(b.ops, op{kv: kv, klen: len(key)})
}

// alloc returns n bytes from buf if it has room, with a capacity of
// exactly n so that no append reaches the bytes that follow.
func (b *batch) alloc(n int) []byte {
	if cap(b.buf)-len(b.buf) < n {
		return make([]byte, n)
	}
	p := b.buf[len(b.buf) : len(b.buf)+n : len(b.buf)+n]
	b.buf = b.buf[:len(b.buf)+n]
	return p
}

// Delete implements storage.Batch. Deleting an empty key is a no-op: no
// such key can exist.
func (b *batch) Delete(key []byte) {
	if b.done {
		return
	}
	b.n++
	if len(key) == 0 {
		return
	}
	kv := b.alloc(len(key))
	copy(kv, key)
	b.ops = append(b.ops, op{kv: kv, klen: len(key), del: true})
}

func (b *batch) Len() int { return b.n }

// Commit applies the batch in one bbolt read-write transaction, which is
// fsynced unless Options.NoSync is set (see the package documentation).
func (b *batch) Commit(sync bool) error {
	if b.done {
		return fmt.Errorf("bolt: commit: batch already committed or closed: %w", storage.ErrClosed)
	}
	b.done = true
	ops := b.ops
	b.ops, b.buf = nil, nil
	e := b.e
	if err := e.acquire(); err != nil {
		return fmt.Errorf("bolt: commit: %w", err)
	}
	defer e.mu.RUnlock()
	if b.err != nil {
		return b.err
	}
	if len(ops) > 0 {
		err := e.db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucketName)
			if bk == nil {
				return fmt.Errorf("bucket %q missing", bucketName)
			}
			for i := range ops {
				o := &ops[i]
				k := o.kv[:o.klen:o.klen]
				var err error
				if o.del {
					err = bk.Delete(k)
				} else {
					err = bk.Put(k, o.kv[o.klen:])
				}
				if err != nil {
					return fmt.Errorf("op #%d (key of %d bytes): %w", i+1, o.klen, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bolt: commit of %d ops: %w", len(ops), err)
		}
	}
	if sync && e.noSync {
		if err := e.db.Sync(); err != nil {
			return fmt.Errorf("bolt: commit: sync: %w", err)
		}
	}
	return nil
}

// Close discards an uncommitted batch; after Commit it is a no-op.
func (b *batch) Close() error {
	b.done = true
	b.ops, b.buf = nil, nil
	return nil
}
