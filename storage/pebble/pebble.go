package pebble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/metcd/metcd/storage"
)

// DefaultCacheSize is the block cache size used when Options.CacheSize is 0.
const DefaultCacheSize = 64 << 20

// Options tune an Engine. The zero value, like a nil *Options, means the
// defaults.
type Options struct {
	// CacheSize is the block cache size in bytes; 0 means DefaultCacheSize.
	CacheSize int64
	// MemTableSize is the size in bytes of one memtable, which bounds how
	// much of the WAL must be replayed on Open; 0 means Pebble's default
	// (4 MiB).
	MemTableSize uint64
	// Logger receives Pebble's messages. Nil means a quiet logger that drops
	// informational messages, writes errors to the standard log and exits
	// the process on fatal errors, as Pebble's DefaultLogger does.
	Logger pebble.Logger
}

// quietLogger is the default Logger: Pebble reports every flush,
// compaction and WAL rotation through Infof, which would drown a server's
// log.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}

func (quietLogger) Errorf(format string, args ...any) {
	_ = log.Output(2, "pebble: "+fmt.Sprintf(format, args...))
}

// Fatalf must not return: Pebble calls it when a commit could not be
// written to the WAL and carries on as if the commit succeeded.
func (quietLogger) Fatalf(format string, args ...any) {
	_ = log.Output(2, "pebble: fatal: "+fmt.Sprintf(format, args...))
	os.Exit(1)
}

// Engine is a storage.Engine on a Pebble DB. Create it with Open.
type Engine struct {
	dir string

	// mu guards closed and db. Every call that uses db holds it for
	// reading, so Close (the only writer) waits for calls in flight and
	// nothing touches db after it is closed. Iterators and snapshots have
	// their own locks; Close closes them one by one before the DB.
	mu     sync.RWMutex
	closed bool
	db     *pebble.DB
	opts   *pebble.Options // as opened, with Pebble's defaults filled in

	iters registry[*iterator] // open iterators on the engine itself
	snaps registry[*snapshot] // open snapshots
}

var _ storage.Engine = (*Engine)(nil)

// Open opens the Pebble store in dir, creating dir and the store if they do
// not exist. opts may be nil.
func Open(dir string, opts *Options) (*Engine, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.CacheSize < 0 {
		return nil, fmt.Errorf("pebble: open %s: negative CacheSize %d", dir, o.CacheSize)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = quietLogger{}
	}
	path, err := canonicalDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}

	// The DB takes its own reference to the cache; dropping ours means the
	// cache is freed when the DB is closed.
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       o.MemTableSize,
		Logger:             o.Logger,
		EventListener:      &pebble.EventListener{BackgroundError: stopOnDiskError(o.Logger)},
	}
	// A put reads its key's current record first, and a key being created
	// has none: without a filter that miss reads a data block of every
	// table whose range covers the key. A filter answers it from memory.
	// Pebble's Get never reads the last level's filters (a key it looks up
	// is usually found there), so that level is written without them.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	po.Levels[len(po.Levels)-1].FilterPolicy = pebble.NoFilterPolicy
	(&stallReporter{lg: o.Logger, after: stallReportAfter}).listen(po.EventListener)
	db, err := pebble.Open(path, po)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	// Open filled in its own copy; a load's table writers need the same.
	po = po.Clone()
	po.EnsureDefaults()
	return &Engine{dir: path, db: db, opts: po}, nil
}

// stopOnDiskError makes a background flush or compaction that fails for
// want of disk space or with an I/O error fatal. Pebble would otherwise
// stall every later commit forever, and a member that hangs without saying
// why is worse than one that stops with the reason.
func stopOnDiskError(lg pebble.Logger) func(error) {
	return func(err error) {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EDQUOT) {
			lg.Fatalf("pebble: background write failed, cannot make progress: %v", err)
		}
	}
}

// canonicalDir creates dir and returns its absolute path with symlinks
// resolved. Pebble refuses a second Open of a directory within one process
// by remembering the LOCK file's path (the fcntl lock it also takes does
// not conflict within a process), so two spellings of the same directory
// must map to one path.
func canonicalDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// Dir returns the directory the engine was opened in, as an absolute path
// with symlinks resolved.
func (e *Engine) Dir() string { return e.dir }

// Name implements storage.Engine.
func (e *Engine) Name() string { return "pebble" }

// Durable implements storage.Engine.
func (e *Engine) Durable() bool { return true }

// Get implements storage.Reader.
func (e *Engine) Get(key []byte) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, fmt.Errorf("pebble: get: %w", storage.ErrClosed)
	}
	return get(e.db, key)
}

// getter is what pebble.DB and pebble.Snapshot have in common for reads.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// get reads key from g and returns a copy the caller owns: Pebble's slice
// is only valid until its closer is closed. ErrNotFound is returned
// unwrapped, as misses are common and wrapping would allocate.
func get(g getter, key []byte) ([]byte, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("pebble: get %q: %w", key, err)
	}
	// A non-nil copy, so an empty value stays distinguishable from a miss.
	out := append(make([]byte, 0, len(v)), v...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("pebble: get %q: %w", key, err)
	}
	return out, nil
}

// NewIterator implements storage.Reader. The iterator is a point-in-time
// view: Pebble iterators read at the sequence number current when they are
// created.
func (e *Engine) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, fmt.Errorf("pebble: new iterator: %w", storage.ErrClosed)
	}
	it, err := newIterator(e.db, &e.iters, opts)
	if err != nil {
		return nil, fmt.Errorf("pebble: new iterator: %w", err)
	}
	return it, nil
}

// NewSnapshot implements storage.Engine with a Pebble snapshot, O(1): it
// records the current sequence number and keeps compactions from dropping
// versions it can see.
func (e *Engine) NewSnapshot() (storage.Snapshot, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, fmt.Errorf("pebble: new snapshot: %w", storage.ErrClosed)
	}
	s := &snapshot{e: e, snap: e.db.NewSnapshot()}
	e.snaps.add(s)
	return s, nil
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return e.NewBatchSize(0, 0) }

// NewBatchSize implements storage.BatchSizer: one buffer for the batch's
// records (storage.LevelDBBatchSize).
func (e *Engine) NewBatchSize(keys, bytes int) storage.Batch {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		// Queued writes are dropped; Commit reports ErrClosed.
		return &batch{e: e}
	}
	return &batch{e: e, b: e.db.NewBatchWithSize(storage.LevelDBBatchSize(keys, bytes))}
}

// Sync implements storage.Engine. Pebble v2 has no DB.Sync/Flush-the-WAL
// call; instead we commit an empty LogData record with pebble.Sync. A
// LogData batch is not empty (commitPipeline.Commit returns early only for
// batches with no records at all), so it goes through the normal commit
// pipeline: it is appended to the WAL after every batch whose Commit has
// already returned (WAL writes are ordered under the pipeline's mutex) and
// Apply waits until the log writer has fsynced past it, which makes all of
// those batches durable. LogData consumes no sequence number and never
// reaches the memtable.
func (e *Engine) Sync() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return fmt.Errorf("pebble: sync: %w", storage.ErrClosed)
	}
	if err := e.syncWAL(); err != nil {
		return fmt.Errorf("pebble: sync: %w", err)
	}
	return nil
}

// syncWAL fsyncs the WAL; the caller holds mu for reading.
func (e *Engine) syncWAL() error {
	return e.db.LogData(nil, pebble.Sync)
}

// Stats implements storage.Engine. DiskBytes is the sum of the sizes of
// the files in the engine's directory, where Pebble keeps everything (WAL,
// sstables, manifest). Pebble's own Metrics.DiskSpaceUsage is not used: it
// counts the live WAL at its size when it was opened, so it misses
// everything written since the last WAL rotation. Keys is -1 because an LSM
// tree only knows estimates.
func (e *Engine) Stats() (storage.Stats, error) {
	live, err := e.LiveBytes()
	if err != nil {
		return storage.Stats{}, fmt.Errorf("pebble: stats: %w", storage.ErrClosed)
	}
	size, err := dirSize(e.dir)
	if err != nil {
		return storage.Stats{}, fmt.Errorf("pebble: stats: %w", err)
	}
	return storage.Stats{DiskBytes: size, Keys: -1, LiveBytes: live}, nil
}

// LiveBytes implements storage.LiveSizer from Pebble's metrics: the
// sstables and the live WAL, without the directory listing Stats makes.
func (e *Engine) LiveBytes() (int64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return 0, fmt.Errorf("pebble: live bytes: %w", storage.ErrClosed)
	}
	m := e.db.Metrics()
	return m.Total().TablesSize + int64(m.WAL.Size), nil
}

// dirSize sums the sizes of the regular files in dir. Files that vanish
// while it runs (compactions delete obsolete sstables) are skipped.
func dirSize(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var size int64
	for _, ent := range entries {
		if !ent.Type().IsRegular() {
			continue
		}
		info, err := ent.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		size += info.Size()
	}
	return size, nil
}

// Close implements storage.Engine. It waits for calls in flight, closes
// every snapshot and iterator still open (they return ErrClosed from then
// on; closing them again is harmless), then closes the DB, which flushes
// and fsyncs the WAL. It never panics on leftover handles.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("pebble: close: %w", storage.ErrClosed)
	}
	e.closed = true
	var errs []error
	// No snapshot or iterator can be created any more: they are created
	// and registered under mu held for reading.
	for _, s := range e.snaps.drain() {
		if err := s.release(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, it := range e.iters.drain() {
		if err := it.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.db.Close(); err != nil {
		errs = append(errs, err)
	}
	e.db = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pebble: close %s: %w", e.dir, err)
	}
	return nil
}

// registry is a set of open handles that a Close must close. The zero
// value is an empty set.
type registry[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{}
}

func (r *registry[T]) add(x T) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[T]struct{})
	}
	r.m[x] = struct{}{}
	r.mu.Unlock()
}

func (r *registry[T]) remove(x T) {
	r.mu.Lock()
	delete(r.m, x)
	r.mu.Unlock()
}

// drain empties the set and returns what it held.
func (r *registry[T]) drain() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]T, 0, len(r.m))
	for x := range r.m {
		out = append(out, x)
	}
	clear(r.m)
	return out
}

type snapshot struct {
	e *Engine

	// mu guards snap and userClosed. Reads hold it for reading, so release
	// waits for them before closing the Pebble snapshot.
	mu         sync.RWMutex
	snap       *pebble.Snapshot // nil once released
	userClosed bool

	iters registry[*iterator]
}

func (s *snapshot) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.snap == nil {
		return nil, fmt.Errorf("pebble: snapshot get: %w", storage.ErrClosed)
	}
	return get(s.snap, key)
}

func (s *snapshot) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.snap == nil {
		return nil, fmt.Errorf("pebble: snapshot new iterator: %w", storage.ErrClosed)
	}
	it, err := newIterator(s.snap, &s.iters, opts)
	if err != nil {
		return nil, fmt.Errorf("pebble: snapshot new iterator: %w", err)
	}
	return it, nil
}

// Close closes the snapshot and the iterators created from it. The first
// Close after the engine was closed returns nil, like on an open engine.
func (s *snapshot) Close() error {
	s.mu.Lock()
	if s.userClosed {
		s.mu.Unlock()
		return fmt.Errorf("pebble: snapshot close: %w", storage.ErrClosed)
	}
	s.userClosed = true
	err := s.releaseLocked()
	s.mu.Unlock()
	s.e.snaps.remove(s)
	return err
}

// release closes the Pebble snapshot and its iterators, once.
func (s *snapshot) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.releaseLocked()
}

func (s *snapshot) releaseLocked() error {
	if s.snap == nil {
		return nil
	}
	var errs []error
	for _, it := range s.iters.drain() {
		if err := it.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.snap.Close(); err != nil {
		errs = append(errs, err)
	}
	s.snap = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pebble: snapshot close: %w", err)
	}
	return nil
}

type batch struct {
	e    *Engine
	b    *pebble.Batch // nil once committed or closed, or if the engine was closed
	n    int
	done bool // committed or closed
}

// Put copies key and value into the Pebble batch's buffer.
func (b *batch) Put(key, value []byte) {
	if b.done {
		return
	}
	b.n++
	if b.b != nil {
		// Set only fails on a batch that is already committed.
		_ = b.b.Set(key, value, nil)
	}
}

func (b *batch) Delete(key []byte) {
	if b.done {
		return
	}
	b.n++
	if b.b != nil {
		_ = b.b.Delete(key, nil)
	}
}

func (b *batch) Len() int { return b.n }

// Commit writes the batch to the WAL as one record and applies it to the
// memtable; readers see all of it or none of it. With sync it returns after
// the WAL fsync. An empty batch committed with sync still fsyncs the WAL,
// so it makes earlier unsynced commits durable as the contract says.
func (b *batch) Commit(sync bool) error {
	if b.done {
		return fmt.Errorf("pebble: commit: batch already committed or closed: %w", storage.ErrClosed)
	}
	b.done = true
	pb := b.b
	b.b = nil
	if pb == nil {
		return fmt.Errorf("pebble: commit: %w", storage.ErrClosed)
	}
	e := b.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		_ = pb.Close()
		return fmt.Errorf("pebble: commit: %w", storage.ErrClosed)
	}
	var err error
	switch {
	case pb.Empty() && sync:
		err = e.syncWAL()
	case sync:
		err = pb.Commit(pebble.Sync)
	default:
		err = pb.Commit(pebble.NoSync)
	}
	// Close returns the batch to Pebble's pool (or lets the commit pipeline
	// release it once it no longer needs the data).
	err = errors.Join(err, pb.Close())
	if err != nil {
		return fmt.Errorf("pebble: commit of %d ops: %w", b.n, err)
	}
	return nil
}

// Close discards an uncommitted batch; after Commit it is a no-op.
func (b *batch) Close() error {
	b.done = true
	if b.b != nil {
		_ = b.b.Close()
		b.b = nil
	}
	return nil
}

// Compact compacts the whole key range, dropping deleted data from the
// files (Maintenance.Defragment).
func (e *Engine) Compact() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	return e.db.Compact(context.Background(), []byte{}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true)
}
