package leveldb

import (
	"errors"
	"fmt"
	"github.com/syndtr/goleveldb/leveldb/util"
	"os"
	"sync"
	"sync/atomic"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"

	"github.com/metcd/metcd/storage"
)

// Compression selects how table blocks are compressed.
type Compression int

const (
	// Snappy compresses blocks with snappy; the default.
	Snappy Compression = iota
	// NoCompression stores blocks as they are.
	NoCompression
)

// Defaults used for zero Options fields.
const (
	// DefaultBlockCacheCapacity holds the 100k-key working set of the
	// shared benchmarks (about 26 MiB of 256-byte values) in memory.
	DefaultBlockCacheCapacity = 32 << 20
	// DefaultWriteBuffer is the memtable size (goleveldb's default is 4
	// MiB). Larger memtables mean fewer level-0 flushes and tables, which
	// measurably helped both writes and reads of 256-byte values, but more
	// memory: goleveldb preallocates each memtable's full buffer and keeps
	// up to three (active, one being flushed, one pooled spare). The
	// journal replayed at Open is at most about this big.
	DefaultWriteBuffer = 16 << 20
	// bloomBitsPerKey sizes the per-table bloom filter, which lets Get skip
	// tables that cannot hold the key (about 1% false positives).
	bloomBitsPerKey = 10
)

// Options tune the engine. The zero value (or a nil *Options) gives the
// defaults.
type Options struct {
	// BlockCacheCapacity is the size in bytes of the cache of uncompressed
	// table blocks; 0 means DefaultBlockCacheCapacity, negative disables
	// the cache.
	BlockCacheCapacity int
	// WriteBuffer is the memtable size in bytes; 0 or less means
	// DefaultWriteBuffer. A batch larger than this bypasses the journal
	// (see the package documentation).
	WriteBuffer int
	// Compression is the block compression; the zero value is Snappy.
	Compression Compression
}

func (o *Options) leveldb() *opt.Options {
	var x Options
	if o != nil {
		x = *o
	}
	lo := &opt.Options{
		BlockCacheCapacity: x.BlockCacheCapacity,
		WriteBuffer:        x.WriteBuffer,
		Filter:             filter.NewBloomFilter(bloomBitsPerKey),
	}
	// goleveldb reads 0 as "use my default" and a negative capacity as
	// "no cache".
	if lo.BlockCacheCapacity == 0 {
		lo.BlockCacheCapacity = DefaultBlockCacheCapacity
	} else if lo.BlockCacheCapacity < 0 {
		lo.BlockCacheCapacity = -1
	}
	if lo.WriteBuffer <= 0 {
		lo.WriteBuffer = DefaultWriteBuffer
	}
	switch x.Compression {
	case NoCompression:
		lo.Compression = opt.NoCompression
	default:
		lo.Compression = opt.SnappyCompression
	}
	return lo
}

// syncMarker is the key Sync deletes to force a synced journal record.
// Keys are non-empty by the storage contract, so the empty key never
// collides with data, and a deletion is invisible to Get and iterators.
var syncMarker = []byte{}

var (
	syncWrite   = &opt.WriteOptions{Sync: true}
	noSyncWrite = &opt.WriteOptions{}
)

// Engine is a storage.Engine on goleveldb. Use Open to create one.
type Engine struct {
	dir string
	db  *leveldb.DB

	// mu is read-held by every call into db and write-held by Close, so
	// Close waits for calls in flight and none starts after it.
	mu     sync.RWMutex
	closed atomic.Bool // set under mu's write lock; read without it
	// dirty is set after every unsynced commit and cleared just before a
	// synced write, so Sync can skip the fsync when nothing is pending.
	dirty atomic.Bool

	// regMu guards iters, the iterators holding library resources, which
	// Close must release before closing db (goleveldb's rule).
	regMu sync.Mutex
	iters map[*iterator]struct{}

	journals journalSyncer
}

var _ storage.Engine = (*Engine)(nil)

// Open opens or creates the database in dir, creating dir if needed.
// goleveldb locks the directory, so a second Open of a directory already
// open, in this process or another, fails.
func Open(dir string, opts *Options) (*Engine, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("leveldb: open %s: %w", dir, err)
	}
	db, err := leveldb.OpenFile(dir, opts.leveldb())
	if err != nil {
		if lerrors.IsCorrupted(err) {
			return nil, fmt.Errorf("leveldb: open %s: database is corrupted (goleveldb's leveldb.RecoverFile may salvage it): %w", dir, err)
		}
		return nil, fmt.Errorf("leveldb: open %s: %w", dir, err)
	}
	return &Engine{
		dir:      dir,
		db:       db,
		iters:    make(map[*iterator]struct{}),
		journals: journalSyncer{dir: dir},
	}, nil
}

// Name implements storage.Engine.
func (e *Engine) Name() string { return "leveldb" }

// Durable implements storage.Engine.
func (e *Engine) Durable() bool { return true }

// Dir returns the directory the engine was opened in.
func (e *Engine) Dir() string { return e.dir }

// mapErr turns goleveldb's sentinel errors into the storage package's.
func mapErr(err error) error {
	switch {
	case errors.Is(err, leveldb.ErrClosed), errors.Is(err, leveldb.ErrSnapshotReleased),
		errors.Is(err, leveldb.ErrIterReleased):
		return fmt.Errorf("%w (%v)", storage.ErrClosed, err)
	}
	return err
}

// Get implements storage.Reader. goleveldb returns its own copy (with the
// buffer pool enabled, as here), so the slice is handed over as is.
func (e *Engine) Get(key []byte) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return nil, fmt.Errorf("leveldb: get: %w", storage.ErrClosed)
	}
	return get(e.db.Get(key, nil))
}

// get finishes a library Get. ErrNotFound is returned unwrapped: misses
// are common and wrapping would allocate for each of them.
func get(v []byte, err error) ([]byte, error) {
	switch {
	case err == nil:
		if v == nil {
			// goleveldb returns nil for an empty value; a non-nil empty
			// slice keeps it distinguishable from a miss.
			v = []byte{}
		}
		return v, nil
	case errors.Is(err, leveldb.ErrNotFound):
		return nil, storage.ErrNotFound
	default:
		return nil, fmt.Errorf("leveldb: get: %w", mapErr(err))
	}
}

// NewIterator implements storage.Reader. A goleveldb iterator is already
// a point-in-time view: it reads at the sequence number current when it
// was created and pins the memtables and table files of that moment, so no
// snapshot is needed.
func (e *Engine) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return nil, fmt.Errorf("leveldb: new iterator: %w", storage.ErrClosed)
	}
	return e.newIterator(nil, opts), nil
}

// NewSnapshot implements storage.Engine with a goleveldb snapshot, which
// pins a sequence number: compaction keeps every version it can see.
func (e *Engine) NewSnapshot() (storage.Snapshot, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return nil, fmt.Errorf("leveldb: new snapshot: %w", storage.ErrClosed)
	}
	s, err := e.db.GetSnapshot()
	if err != nil {
		return nil, fmt.Errorf("leveldb: new snapshot: %w", mapErr(err))
	}
	return &snapshot{e: e, s: s}, nil
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return &batch{e: e} }

// NewBatchSize implements storage.BatchSizer. Past a few thousand records
// goleveldb grows a batch's buffer by about that many records at a time,
// copying it each time, so a batch of millions (a range delete's) costs
// time quadratic in its size unless it has its room from the start
// (storage.LevelDBBatchSize).
func (e *Engine) NewBatchSize(keys, bytes int) storage.Batch {
	b := &batch{e: e}
	if size := storage.LevelDBBatchSize(keys, bytes); size > 0 {
		b.b = *leveldb.MakeBatch(size)
	}
	return b
}

// Sync implements storage.Engine. goleveldb has no call that only syncs
// the journal, and it ignores an empty batch entirely, so Sync writes a
// one-record batch (a deletion of the empty key, see syncMarker) with
// Sync set. Because the journal is append-only, that fsync also makes
// every earlier record of the same journal file durable; journalSyncer
// covers the older journal files, which goleveldb closes unsynced when it
// switches to a new memtable.
func (e *Engine) Sync() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return fmt.Errorf("leveldb: sync: %w", storage.ErrClosed)
	}
	if err := e.syncLocked(); err != nil {
		return fmt.Errorf("leveldb: sync: %w", err)
	}
	return nil
}

// syncLocked does Sync's work; mu must be held, in either mode.
func (e *Engine) syncLocked() error {
	if !e.dirty.Swap(false) {
		return nil // every commit so far was covered by a synced write
	}
	var b leveldb.Batch
	b.Delete(syncMarker)
	if err := e.db.Write(&b, syncWrite); err != nil {
		e.dirty.Store(true)
		return mapErr(err)
	}
	if err := e.journals.sync(); err != nil {
		e.dirty.Store(true)
		return err
	}
	return nil
}

// Stats implements storage.Engine. DiskBytes is the total size of the
// files in the directory (tables, journals, manifest and goleveldb's LOG);
// goleveldb keeps no key count, so Keys is -1.
func (e *Engine) Stats() (storage.Stats, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return storage.Stats{}, fmt.Errorf("leveldb: stats: %w", storage.ErrClosed)
	}
	n, err := dirSize(e.dir)
	if err != nil {
		return storage.Stats{}, fmt.Errorf("leveldb: stats: %w", err)
	}
	return storage.Stats{DiskBytes: n, Keys: -1}, nil
}

// dirSize sums the sizes of the regular files in dir. Files that vanish
// while it runs (compaction deletes them) are skipped.
func dirSize(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, de := range ents {
		if !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, nil
}

// Close implements storage.Engine. It waits for calls in flight, syncs
// unsynced commits (so a clean shutdown loses nothing), releases the
// library resources of iterators still open, which then report ErrClosed
// like outstanding snapshots and batches, and closes the database.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return fmt.Errorf("leveldb: close: %w", storage.ErrClosed)
	}
	syncErr := e.syncLocked()
	e.closed.Store(true)

	e.regMu.Lock()
	open := make([]*iterator, 0, len(e.iters))
	for it := range e.iters {
		open = append(open, it)
	}
	clear(e.iters)
	e.regMu.Unlock()
	// Outside regMu: an iterator's Close takes it.mu then regMu.
	for _, it := range open {
		it.mu.Lock()
		it.release()
		it.mu.Unlock()
	}

	// goleveldb releases outstanding snapshots itself; ours report
	// ErrClosed from the closed flag.
	err := e.db.Close()
	if err = errors.Join(syncErr, err); err != nil {
		return fmt.Errorf("leveldb: close: %w", err)
	}
	return nil
}

func (e *Engine) register(it *iterator) {
	e.regMu.Lock()
	e.iters[it] = struct{}{}
	e.regMu.Unlock()
}

func (e *Engine) unregister(it *iterator) {
	e.regMu.Lock()
	delete(e.iters, it)
	e.regMu.Unlock()
}

type snapshot struct {
	e      *Engine
	s      *leveldb.Snapshot
	closed atomic.Bool
}

// Get implements storage.Reader; like DB.Get, Snapshot.Get returns a copy.
func (s *snapshot) Get(key []byte) ([]byte, error) {
	e := s.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() || s.closed.Load() {
		return nil, fmt.Errorf("leveldb: snapshot get: %w", storage.ErrClosed)
	}
	return get(s.s.Get(key, nil))
}

// NewIterator implements storage.Reader. The iterator reads at the
// snapshot's sequence number; it reports ErrClosed once the snapshot is
// closed.
func (s *snapshot) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	e := s.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() || s.closed.Load() {
		return nil, fmt.Errorf("leveldb: snapshot new iterator: %w", storage.ErrClosed)
	}
	return e.newIterator(s, opts), nil
}

// Close releases the snapshot. goleveldb's Release is idempotent and safe
// after the database is closed.
func (s *snapshot) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("leveldb: snapshot close: %w", storage.ErrClosed)
	}
	s.s.Release()
	return nil
}

// batch buffers writes in a leveldb.Batch, which copies keys and values
// into one buffer as they are added.
type batch struct {
	e    *Engine
	b    leveldb.Batch
	done bool // committed or closed
}

func (b *batch) Put(key, value []byte) {
	if !b.done {
		b.b.Put(key, value)
	}
}

func (b *batch) Delete(key []byte) {
	if !b.done {
		b.b.Delete(key)
	}
}

func (b *batch) Len() int { return b.b.Len() }

// Commit writes the batch as one journal record (or, past WriteBuffer, as
// one goleveldb transaction), which recovery applies whole or not at all.
func (b *batch) Commit(sync bool) error {
	if b.done {
		return fmt.Errorf("leveldb: commit: batch already committed or closed: %w", storage.ErrClosed)
	}
	b.done = true
	e := b.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return fmt.Errorf("leveldb: commit: %w", storage.ErrClosed)
	}
	if !sync {
		// goleveldb skips empty batches, which is right for both modes
		// except that a synced empty commit should still sync.
		if err := e.db.Write(&b.b, noSyncWrite); err != nil {
			return fmt.Errorf("leveldb: commit: %w", mapErr(err))
		}
		if b.b.Len() > 0 {
			e.dirty.Store(true)
		}
		return nil
	}
	if b.b.Len() == 0 {
		if err := e.syncLocked(); err != nil {
			return fmt.Errorf("leveldb: commit: %w", err)
		}
		return nil
	}
	// Cleared before the write: the synced record covers every commit that
	// returned before this point. Restored if the write fails.
	wasDirty := e.dirty.Swap(false)
	if err := e.db.Write(&b.b, syncWrite); err != nil {
		if wasDirty {
			e.dirty.Store(true)
		}
		return fmt.Errorf("leveldb: commit: %w", mapErr(err))
	}
	if err := e.journals.sync(); err != nil {
		e.dirty.Store(true)
		return fmt.Errorf("leveldb: commit: %w", err)
	}
	return nil
}

// Close discards an uncommitted batch; after Commit it is a no-op.
func (b *batch) Close() error {
	b.done = true
	b.b.Reset()
	return nil
}

// Compact compacts the whole key range, dropping deleted data from the
// files (Maintenance.Defragment).
func (e *Engine) Compact() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed.Load() {
		return storage.ErrClosed
	}
	return e.db.CompactRange(util.Range{})
}
