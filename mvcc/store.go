package mvcc

import (
	"errors"
	"fmt"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
)

// Options configure a Store. The zero value is valid.
type Options struct {
	// LeaseExists reports whether a lease is granted. A Put (alone or in a
	// Txn) naming a lease for which it returns false fails with
	// lease.ErrLeaseNotFound, as in etcd. Nil accepts every lease. It is
	// called on the apply goroutine and must be deterministic across
	// members (answer from the applied state).
	LeaseExists func(id int64) bool
	// Leases, if not nil, is told about every change of the lease a key
	// is attached to, in the write's batch: a put moving a key to another
	// lease (or off one) detaches it from the old lease and attaches it to
	// the new one, and a delete detaches it, as etcd's mvcc does with its
	// lessor. *lease.Lessor implements it. Detach errors are ignored (etcd
	// logs them); an Attach error fails the write (etcd panics), which the
	// LeaseExists check before any write prevents.
	Leases Attacher
}

// Attacher keeps the key-to-lease attachments of the lease layer.
type Attacher interface {
	Attach(b *overlay.Batch, id int64, key []byte) error
	Detach(b *overlay.Batch, id int64, key []byte) error
}

// Store is the MVCC key space inside an engine. It holds no data of its
// own: every revision, index entry and meta value lives in the engine (see
// doc.go), so any storage.Reader over that engine (the engine, a snapshot,
// an overlay.Batch) is a complete view.
//
// Reads (Range, History) may run on any goroutine against any Reader.
// Writes (Write, Txn, Compact) run on one goroutine at a time, the apply
// goroutine, through an *overlay.Batch whose base is the engine; they read
// the current revision from the batch, so a Ready's successive write
// transactions in one batch get successive revisions. PhysicalCompact may
// run on its own goroutine.
type Store struct {
	opts Options
	// rev and compact cache the revisions of the last write transaction
	// and logical compaction made through this Store (or loaded by Open),
	// for Rev and CompactRev. They include writes to batches that were not
	// committed yet.
	rev      atomic.Int64
	compact  atomic.Int64
	physical atomic.Int64

	// committed is what the engine holds, for RangeCommitted.
	committed committedRevs
}

// committedRevs is a sequence lock over the revision the engine holds:
// seq is odd while Commit runs (or after one failed), even otherwise, and
// changes whenever the engine may have. A reader that finds seq even and
// unchanged around its engine reads saw the engine at rev, without reading
// the revision from the engine. One goroutine writes it (the apply
// goroutine, through Commit).
type committedRevs struct {
	seq atomic.Uint64
	rev atomic.Int64
}

// begin marks a commit in progress; after a failed one seq is odd already.
func (c *committedRevs) begin() {
	if c.seq.Load()%2 == 0 {
		c.seq.Add(1)
	}
}

// end publishes the revision the engine now holds.
func (c *committedRevs) end(rev int64) {
	c.rev.Store(rev)
	c.seq.Add(1)
}

// Commit runs commit, the call that changes the engine under s: the
// commit of the batches written through s since the last one, or the
// installation of a new engine followed by Reload. Every such change must
// go through Commit, on the goroutine that writes, so that RangeCommitted
// knows the revision the engine is at without asking it. If commit fails,
// RangeCommitted reads the revision from the engine until a later Commit
// succeeds.
func (s *Store) Commit(commit func() error) error {
	s.committed.begin()
	if err := commit(); err != nil {
		return err
	}
	s.committed.end(s.rev.Load())
	return nil
}

// Open returns the Store over the MVCC key space r holds; an engine with
// no MVCC data is an empty store at revision 1.
func Open(r storage.Reader, opts Options) (*Store, error) {
	s := &Store{opts: opts}
	m, err := readMeta(r)
	if err != nil {
		return nil, err
	}
	s.rev.Store(m.rev)
	s.compact.Store(m.compact)
	s.physical.Store(m.physical)
	s.committed.begin()
	s.committed.end(m.rev)
	return s, nil
}

// Reload re-reads the revision state from r, after the engine under the
// store was replaced (a snapshot was installed). Both belong inside one
// Commit.
func (s *Store) Reload(r storage.Reader) error {
	m, err := readMeta(r)
	if err != nil {
		return err
	}
	s.rev.Store(m.rev)
	s.compact.Store(m.compact)
	s.physical.Store(m.physical)
	return nil
}

// CurrentRev returns the current revision r holds.
func CurrentRev(r storage.Reader) (int64, error) {
	m, err := readRevs(r)
	return m.rev, err
}

// Keys returns the number of live keys r holds.
func Keys(r storage.Reader) (int64, error) { return readInt64(r, metaKeys, 0) }

// Rev returns the current revision as of the last write transaction ended
// through this Store (or as loaded by Open). An empty store is at revision
// 1, like etcd's. A batch that is discarded instead of committed leaves
// Rev ahead of the engine; Open a new Store after discarding one.
func (s *Store) Rev() int64 { return s.rev.Load() }

// CommittedRev returns the revision the engine holds as of the last
// Commit that succeeded (or as loaded by Open): the one a read of the live
// engine sees.
func (s *Store) CommittedRev() int64 { return s.committed.rev.Load() }

// CompactRev returns the revision of the last logical compaction, or -1
// if there was none (etcd's initial value: Compact(0) is then accepted).
func (s *Store) CompactRev() int64 { return s.compact.Load() }

// PhysicalRev returns the revision up to which history was physically
// removed (0 if never). After Open, if it is below CompactRev, a physical
// compaction was interrupted and PhysicalCompact(eng, CompactRev()) should
// be run again.
func (s *Store) PhysicalRev() int64 { return s.physical.Load() }

// meta is the revision state a reader sees.
type meta struct {
	rev, compact, physical int64
}

func readMeta(r storage.Reader) (meta, error) {
	m, err := readRevs(r)
	if err == nil {
		m.physical, err = readInt64(r, metaPhysical, 0)
	}
	return m, err
}

// readRevs reads the current and compacted revisions only.
func readRevs(r storage.Reader) (m meta, err error) {
	if m.rev, err = readInt64(r, metaRev, 1); err != nil {
		return meta{}, err
	}
	if m.compact, err = readInt64(r, metaCompact, -1); err != nil {
		return meta{}, err
	}
	return m, nil
}

// readInt64 reads one meta value, or def if it is absent.
func readInt64(r storage.Reader, key []byte, def int64) (int64, error) {
	v, err := r.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return def, nil
	}
	if err != nil {
		return 0, err
	}
	return parseInt64(v)
}

// Compact records a logical compaction at rev in b: once b is committed,
// reads below rev fail with mvcc.ErrCompacted. Like etcd it fails with
// mvcc.ErrCompacted if rev is not above the last compaction and with
// mvcc.ErrFutureRev if rev is above the current revision; the response
// header carries the current revision. The history below rev stays in the
// engine until PhysicalCompact removes it.
func (s *Store) Compact(b *overlay.Batch, rev int64) (*pb.CompactionResponse, error) {
	m, err := readRevs(b)
	if err != nil {
		return nil, err
	}
	if rev <= m.compact {
		return nil, ErrCompacted
	}
	if rev > m.rev {
		return nil, ErrFutureRev
	}
	b.Put(metaCompact, putInt64(rev))
	s.compact.Store(rev)
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: m.rev}}, nil
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

func encodeKV(kind byte, kv *mvccpb.KeyValue) []byte {
	b, err := marshalOpts.MarshalAppend([]byte{kind}, kv)
	if err != nil {
		// A KeyValue has only scalar fields: Marshal cannot fail.
		panic(fmt.Sprintf("mvcc: marshal KeyValue: %v", err))
	}
	return b
}

func decodeKV(b []byte) (*mvccpb.KeyValue, error) {
	kv := &mvccpb.KeyValue{}
	if err := proto.Unmarshal(b, kv); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return kv, nil
}

// currentLease reads the lease of a current record (vk value) without
// decoding the rest of it.
func currentLease(b []byte) (int64, error) {
	const leaseField = 6 // mvccpb.KeyValue's lease
	var lease int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			// proto.Unmarshal refuses field numbers past the largest.
			return 0, fmt.Errorf("%w: current record", errCorrupt)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0, fmt.Errorf("%w: current record", errCorrupt)
		}
		if num == leaseField && typ == protowire.VarintType {
			// As proto.Unmarshal, the last occurrence wins.
			x, _ := protowire.ConsumeVarint(b[n:])
			lease = int64(x)
		}
		b = b[n+m:]
	}
	return lease, nil
}

// decodeRecord decodes a vr value.
func decodeRecord(b []byte) (kind byte, kv *mvccpb.KeyValue, err error) {
	if len(b) == 0 || b[0] != kindPut && b[0] != kindDelete {
		return 0, nil, fmt.Errorf("%w: revision record", errCorrupt)
	}
	kv, err = decodeKV(b[1:])
	return b[0], kv, err
}
