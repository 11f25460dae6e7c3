package storage

import "errors"

var (
	// ErrNotFound is returned by Get when the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrClosed is returned by any call on an engine, snapshot, batch or
	// iterator after it was closed.
	ErrClosed = errors.New("storage: closed")
)

// Reader reads an ordered key space. Keys are non-empty byte strings,
// compared bytewise.
type Reader interface {
	// Get returns the value stored under key, or ErrNotFound. The returned
	// slice belongs to the caller.
	Get(key []byte) ([]byte, error)
	// NewIterator returns an iterator over the keys in [opts.Lower,
	// opts.Upper), showing the state at one point in time (writes committed
	// after NewIterator are not seen). The iterator must be closed by the
	// caller.
	NewIterator(opts IterOptions) (Iterator, error)
}

// IterOptions bound an iteration. Only nil means unbounded; Lower >= Upper
// gives an empty iteration.
type IterOptions struct {
	// Lower is the inclusive lower bound; nil means the first key.
	Lower []byte
	// Upper is the exclusive upper bound; nil means past the last key.
	Upper []byte
	// Reverse iterates from the largest key in range down to the smallest.
	Reverse bool
}

// Iterator walks a key range in order. It is not safe for concurrent use.
//
//	it, err := r.NewIterator(storage.IterOptions{Lower: a, Upper: b})
//	if err != nil { ... }
//	defer it.Close()
//	for it.Next() { use(it.Key(), it.Value()) }
//	if err := it.Err(); err != nil { ... }
type Iterator interface {
	// Next moves to the next key (the first key on the first call) and
	// reports whether there is one.
	Next() bool
	// Key returns the current key. The slice is valid only until the next
	// call to Next or Close; copy it to keep it.
	Key() []byte
	// Value returns the current value, with the same lifetime as Key.
	Value() []byte
	// Err returns the error that ended the iteration, if any.
	Err() error
	// Close releases the iterator's resources.
	Close() error
}

// Batch collects writes that are applied atomically by Commit: after a
// crash either all of them are visible or none is. A batch is used by one
// goroutine at a time.
type Batch interface {
	// Put sets key to value. The batch copies both slices.
	Put(key, value []byte)
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte)
	// Len returns the number of operations queued.
	Len() int
	// Commit applies the batch atomically. With sync set, the batch is
	// durable when Commit returns; otherwise it becomes durable at the next
	// Sync or synced Commit (an engine may make it durable sooner). A batch
	// cannot be reused after Commit: a second Commit returns an error, and
	// Put or Delete after Commit are ignored.
	Commit(sync bool) error
	// Close discards the batch if it was not committed; after Commit it is
	// a no-op returning nil, so `defer b.Close()` is always safe.
	Close() error
}

// Snapshot is a consistent read view: writes committed after it was taken
// are not visible through it. It must be closed.
type Snapshot interface {
	Reader
	Close() error
}

// Stats describe an engine's size.
type Stats struct {
	// DiskBytes is the size of the engine's files; 0 for a memory engine.
	DiskBytes int64
	// Keys is the number of keys, or -1 when counting them is not cheap.
	Keys int64
	// LiveBytes is the size of the live data where the engine knows it
	// cheaply (the memory engine's keys and values; pebble's sstables and
	// live WAL, without recycled and obsolete files), else 0.
	LiveBytes int64
}

// Engine is an ordered key-value store. Reads, snapshots and batch commits
// may be called from many goroutines at once.
type Engine interface {
	Reader
	// NewBatch returns an empty write batch.
	NewBatch() Batch
	// NewSnapshot returns a consistent read view of the committed state.
	NewSnapshot() (Snapshot, error)
	// Sync makes every committed batch durable.
	Sync() error
	// Stats reports the engine's size.
	Stats() (Stats, error)
	// Name is the engine's name as given to --engine.
	Name() string
	// Durable reports whether committed data survives a process restart
	// without the help of raft snapshots.
	Durable() bool
	// Close releases the engine; unsynced commits may be lost. Callers
	// should close snapshots and iterators first: an engine may wait for
	// them, and they return ErrClosed afterwards.
	Close() error
}

// Compacter is implemented by engines that can rewrite their files to
// reclaim the space of deleted data (etcd's defragment).
type Compacter interface {
	Compact() error
}

// LiveSizer is implemented by engines that know the size of their live
// data cheaply although their Stats is not cheap (Pebble lists its
// directory for DiskBytes). A write quota asks for it every 100 ms.
type LiveSizer interface {
	// LiveBytes is Stats().LiveBytes.
	LiveBytes() (int64, error)
}

// BatchSizer is implemented by engines whose batches can take room for a
// known number of writes at once, rather than grow, copying, as they fill
// (Pebble's and goleveldb's buffers, the memory engine's and bolt's lists
// of writes).
type BatchSizer interface {
	// NewBatchSize is NewBatch with room for about keys writes holding
	// bytes of keys and values in all.
	NewBatchSize(keys, bytes int) Batch
}

// NewBatchSize returns e's batch sized for about keys writes holding bytes
// of keys and values if e is a BatchSizer, and e.NewBatch() otherwise.
func NewBatchSize(e Engine, keys, bytes int) Batch {
	if bs, ok := e.(BatchSizer); ok {
		return bs.NewBatchSize(keys, bytes)
	}
	return e.NewBatch()
}

// LevelDBBatchSize is the size of a batch in LevelDB's write-batch format,
// which goleveldb and Pebble share, holding keys records with bytes of keys
// and values in all: a 12-byte header, and per record a kind byte and two
// length varints (11 bytes at most). It is 0 for no records.
func LevelDBBatchSize(keys, bytes int) int {
	const header, frame = 12, 11
	if keys <= 0 {
		return 0
	}
	return header + frame*keys + bytes
}

// Loader is implemented by engines that take a long run of keys in
// ascending order faster than through batches: Pebble writes them straight
// into sorted tables and adds the tables to its tree, skipping its log, its
// memtables and the compactions that would follow. A snapshot install
// into a fresh engine is such a run.
type Loader interface {
	NewLoad() (Load, error)
}

// Load is a bulk load in progress. Nothing it holds is visible until
// Finish, which makes all of it visible at once and durable; keys already
// in the engine are overwritten by loaded ones. A Load is used by one
// goroutine, and an engine runs one Load at a time.
type Load interface {
	// Put adds key with value. Keys must come in strictly ascending order;
	// a key not greater than the one before is an error, and the load must
	// then be aborted.
	Put(key, value []byte) error
	// Finish makes the loaded keys visible and durable.
	Finish() error
	// Abort discards the load and what it wrote. After Finish it is a
	// no-op returning nil, so `defer l.Abort()` is always safe.
	Abort() error
}
