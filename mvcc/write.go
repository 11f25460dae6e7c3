package mvcc

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
)

// Write is one write transaction: all its changes share one new revision
// (the current one plus one), ordered by sub-revision, and a transaction
// that changes nothing leaves the revision alone. Its reads see its own
// writes, as etcd's do.
//
// A Write belongs to the goroutine that began it, like its batch. Start no
// other write on the same batch before End. If a method returns an error
// other than an etcd sentinel or validation error, the engine failed
// mid-write: discard the batch.
type Write struct {
	s *Store
	b *overlay.Batch
	// begin is the revision before the transaction; changes count its
	// changes so far (the next sub-revision).
	begin, compact int64
	changes        int64
	err            error
	// skipRanges makes a Txn's range ops answer only a header.
	skipRanges bool
}

// Write begins a write transaction in b. It reads the revision state from
// b, so successive write transactions in one batch see each other.
func (s *Store) Write(b *overlay.Batch) *Write {
	w := &Write{s: s, b: b}
	m, err := readRevs(b)
	w.begin, w.compact, w.err = m.rev, m.compact, err
	return w
}

// rev is the revision the transaction's reads see: its own once it
// changed something.
func (w *Write) rev() int64 {
	if w.changes > 0 {
		return w.begin + 1
	}
	return w.begin
}

// End ends the transaction. The batch already holds everything; End only
// updates the Store's cached revision.
func (w *Write) End() {
	if w.changes > 0 && w.err == nil {
		w.s.rev.Store(w.begin + 1)
	}
}

// Put is etcd's Put: it validates req (ValidatePut, with the longer key
// limit of an entry being applied: maxAppliedKeyBytes), checks its lease and
// ignore_value/ignore_lease (which need an existing key:
// ErrKeyNotFound), and writes the key at the transaction's revision.
func (w *Write) Put(req *pb.PutRequest) (*pb.PutResponse, error) {
	if w.err != nil {
		return nil, w.err
	}
	if err := validatePut(req, maxAppliedKeyBytes); err != nil {
		return nil, err
	}
	if err := w.s.checkLease(req); err != nil {
		return nil, err
	}
	prev, err := w.prevKV(req)
	if err != nil {
		return nil, err
	}
	if (req.IgnoreValue || req.IgnoreLease) && prev == nil {
		return nil, ErrKeyNotFound
	}
	return w.put(req, prev)
}

func (s *Store) checkLease(req *pb.PutRequest) error {
	if req.Lease != 0 && s.opts.LeaseExists != nil && !s.opts.LeaseExists(req.Lease) {
		return ErrLeaseNotFound
	}
	return nil
}

// needsPrev reports whether a put must read the key's whole current pair
// (prevKV) rather than only what writePut needs of it.
func needsPrev(req *pb.PutRequest) bool {
	return req.IgnoreValue || req.IgnoreLease || req.PrevKv
}

// prevKV reads the key's current pair when the request needs it.
func (w *Write) prevKV(req *pb.PutRequest) (*mvccpb.KeyValue, error) {
	if !needsPrev(req) {
		return nil, nil
	}
	return getCurrent(w.b, req.Key)
}

func getCurrent(r storage.Reader, key []byte) (*mvccpb.KeyValue, error) {
	return decodeCurrent(r.Get(currentKey(key)))
}

// getCurrentMeta reads what a put needs of the key's current pair (its
// revisions, version and lease; Key and Value may be missing, see TrimHot).
func getCurrentMeta(b *overlay.Batch, key []byte) (*mvccpb.KeyValue, error) {
	return decodeCurrent(b.GetTrimmed(currentKey(key)))
}

func decodeCurrent(v []byte, err error) (*mvccpb.KeyValue, error) {
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeKV(v)
}

// put writes a checked put; prev is the key's current pair if the request
// needed it.
func (w *Write) put(req *pb.PutRequest, prev *mvccpb.KeyValue) (*pb.PutResponse, error) {
	val, lease := req.Value, req.Lease
	if req.IgnoreValue {
		val = prev.Value
	}
	if req.IgnoreLease {
		lease = prev.Lease
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	if req.PrevKv && prev != nil {
		resp.PrevKv = prev
	}
	if err := w.writePut(req.Key, val, lease, prev, needsPrev(req)); err != nil {
		return nil, err
	}
	resp.Header.Revision = w.begin + 1
	return resp, nil
}

// writePut records a put of key at the next sub-revision. old is the
// key's current pair when read is set (prevKV read it already); otherwise
// writePut reads what it needs of it.
func (w *Write) writePut(key, value []byte, lease int64, old *mvccpb.KeyValue, read bool) error {
	if !read {
		var err error
		if old, err = getCurrentMeta(w.b, key); err != nil {
			w.err = err
			return err
		}
	}
	rv := revision{main: w.begin + 1, sub: w.changes}
	kv := &mvccpb.KeyValue{
		Key:            key,
		Value:          value,
		CreateRevision: rv.main,
		ModRevision:    rv.main,
		Version:        1,
		Lease:          lease,
	}
	var oldLease int64
	if old == nil {
		if err := w.countKeys(1); err != nil {
			return err
		}
	} else {
		kv.CreateRevision = old.CreateRevision
		kv.Version = old.Version + 1
		oldLease = old.Lease
	}
	rec := encodeKV(kindPut, kv)
	w.b.Put(currentKey(key), rec[1:])
	w.b.Put(revKey(rv), rec)
	w.b.Put(indexKey(key, rv), []byte{kindPut})
	w.changed()
	if oldLease != lease && w.s.opts.Leases != nil {
		if oldLease != 0 {
			// Like etcd, a failed detach (the lease is gone) does not stop
			// the put.
			_ = w.s.opts.Leases.Detach(w.b, oldLease, key)
		}
		if lease != 0 {
			if err := w.s.opts.Leases.Attach(w.b, lease, key); err != nil {
				w.err = err
				return err
			}
		}
	}
	return nil
}

// writeDelete records a delete of the existing pair kv at the next
// sub-revision. The caller updates the live-key count, once for all the
// pairs it deletes.
func (w *Write) writeDelete(kv *mvccpb.KeyValue) {
	key := kv.Key
	rv := revision{main: w.begin + 1, sub: w.changes}
	w.b.Delete(currentKey(key))
	if kv.Lease != 0 && w.s.opts.Leases != nil {
		_ = w.s.opts.Leases.Detach(w.b, kv.Lease, key)
	}
	w.b.Put(revKey(rv), encodeKV(kindDelete, &mvccpb.KeyValue{Key: key}))
	w.b.Put(indexKey(key, rv), []byte{kindDelete})
	w.changed()
}

// countKeys keeps the number of live keys (vmkeys) in the batch.
func (w *Write) countKeys(delta int64) error {
	n, err := readInt64(w.b, metaKeys, 0)
	if err != nil {
		w.err = err
		return err
	}
	w.b.Put(metaKeys, putInt64(n+delta))
	return nil
}

// changed counts a change; the first one moves the revision in the batch,
// so a later transaction in the same batch starts after this one even if
// End is forgotten.
func (w *Write) changed() {
	if w.changes == 0 {
		w.b.Put(metaRev, putInt64(w.begin+1))
	}
	w.changes++
}

// DeleteRange is etcd's DeleteRange: it deletes the keys of [key,
// range_end) that exist (in key order, one sub-revision each); deleting
// nothing changes nothing.
func (w *Write) DeleteRange(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if w.err != nil {
		return nil, w.err
	}
	if err := ValidateDeleteRange(req); err != nil {
		return nil, err
	}
	return w.deleteRange(req)
}

func (w *Write) deleteRange(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	kvs, _, err := rangeCurrent(w.b, rangeSpec{key: req.Key, end: req.RangeEnd, rev: w.rev(), keyLease: !req.PrevKv})
	if err != nil {
		w.err = err
		return nil, err
	}
	if req.PrevKv {
		resp.PrevKvs = kvs
	}
	for _, kv := range kvs {
		w.writeDelete(kv)
	}
	if len(kvs) > 0 {
		if err := w.countKeys(-int64(len(kvs))); err != nil {
			return nil, err
		}
	}
	resp.Deleted = int64(len(kvs))
	resp.Header.Revision = w.rev()
	return resp, nil
}

// Range is etcd's range inside a write transaction: it sees the
// transaction's writes, and its header carries the transaction's revision
// (the new one once something changed). It fails with ErrFutureRev above
// that revision and ErrCompacted below the compacted one.
func (w *Write) Range(req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if w.err != nil {
		return nil, w.err
	}
	if err := ValidateRange(req); err != nil {
		return nil, err
	}
	cur := w.rev()
	rev := req.Revision
	if rev > cur {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < w.compact {
		return nil, ErrCompacted
	}
	return w.rangeAt(req, rev)
}

func (w *Write) rangeAt(req *pb.RangeRequest, rev int64) (*pb.RangeResponse, error) {
	resp, err := executeRange(w.b, req, rev, w.rev(), false)
	if err != nil {
		w.err = err
	}
	return resp, err
}
