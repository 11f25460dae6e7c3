package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/storage"
)

// Range answers req from r, which may be the engine, a snapshot of it or
// an overlay.Batch. The header carries the revision r is at (header.revision
// is the only header field set; the server fills the others). Serializable
// is not looked at: choosing the reader is the caller's business.
//
// Errors: the rpctypes validation errors of ValidateRange, ErrFutureRev for
// a revision above the current one, ErrCompacted below the compacted one.
//
// A snapshot (or a batch) gives a consistent answer in one pass. On the
// live engine, concurrent commits may land between the reads Range makes;
// it detects that from the meta keys and retries, and a past-revision read
// that a concurrent compaction overtook fails with ErrCompacted, so the
// answer is always that of one revision.
func (s *Store) Range(r storage.Reader, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := ValidateRange(req); err != nil {
		return nil, err
	}
	const attempts = 4
	for i := 0; ; i++ {
		m, err := readRevs(r)
		if err != nil {
			return nil, err
		}
		rev := req.Revision
		if rev > m.rev {
			return nil, ErrFutureRev
		}
		if rev <= 0 {
			rev = m.rev
		}
		if rev < m.compact {
			return nil, ErrCompacted
		}
		if rev == m.rev && i == attempts-1 {
			// Commits keep racing the current-state scan: read the
			// revision index instead, which later commits do not change.
			resp, err := executeRange(r, req, rev, m.rev, true)
			if err == nil {
				err = checkCompactedAfter(r, rev)
			}
			if err != nil {
				return nil, err
			}
			return resp, nil
		}
		resp, err := executeRange(r, req, rev, m.rev, false)
		if err != nil {
			return nil, err
		}
		if rev < m.rev {
			if err := checkCompactedAfter(r, rev); err != nil {
				return nil, err
			}
			return resp, nil
		}
		now, err := readInt64(r, metaRev, 1)
		if err != nil {
			return nil, err
		}
		if now == m.rev {
			return resp, nil
		}
	}
}

// RangeCommitted answers req from eng, the live engine under s, whose
// every change goes through s.Commit. A read at the current revision takes
// that revision from s instead of from the engine, and checks that no
// commit overlapped its reads; this saves the two or three engine reads of
// the meta keys that Range needs to tell which revision it saw. Reads at
// past revisions, and reads that keep overlapping commits, are Range's.
func (s *Store) RangeCommitted(eng storage.Reader, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := ValidateRange(req); err != nil {
		return nil, err
	}
	c := &s.committed
	for range 2 {
		seq := c.seq.Load()
		if seq%2 == 1 {
			break
		}
		rev := c.rev.Load()
		if req.Revision > 0 && req.Revision != rev {
			break
		}
		resp, err := executeRange(eng, req, rev, rev, false)
		if c.seq.Load() != seq {
			// A commit overlapped the reads: the answer (or the error)
			// may mix two revisions.
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	return s.Range(eng, req)
}

// checkCompactedAfter returns ErrCompacted if a compaction above rev was
// recorded in r by now: a physical compaction (which only follows a
// committed logical one) may then have removed history the read needed.
func checkCompactedAfter(r storage.Reader, rev int64) error {
	c, err := readInt64(r, metaCompact, -1)
	if err != nil {
		return err
	}
	if rev < c {
		return ErrCompacted
	}
	return nil
}

// executeRange is etcd's range execution over r at revision rev (already
// checked against the compacted and current revisions), r being at
// revision cur: the storage read with etcd's limit rules, then the
// revision filters, the sort and the limit. forcePast reads rev from the
// revision index even when rev is cur.
func executeRange(r storage.Reader, req *pb.RangeRequest, rev, cur int64, forcePast bool) (*pb.RangeResponse, error) {
	sp := rangeSpec{
		key:       req.Key,
		end:       req.RangeEnd,
		rev:       rev,
		limit:     storageLimit(req),
		countOnly: req.CountOnly,
		fastKeys:  req.KeysOnly && req.SortTarget != pb.RangeRequest_VALUE,
	}
	var kvs []*mvccpb.KeyValue
	var count int64
	var err error
	if rev == cur && !forcePast {
		kvs, count, err = rangeCurrent(r, sp)
	} else {
		kvs, count, err = rangePast(r, sp)
	}
	if err != nil {
		return nil, err
	}
	kvs = filterKVs(kvs, req)
	sortKVs(kvs, req)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: cur}, Count: count}
	if req.Limit > 0 && int64(len(kvs)) > req.Limit {
		kvs = kvs[:req.Limit]
		resp.More = true
	}
	if req.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

// storageLimit is how many keys etcd asks its index for: none when the
// response is re-sorted or filtered afterwards, else one more than the
// limit so that `more` can be told.
func storageLimit(req *pb.RangeRequest) int64 {
	limit := req.Limit
	if !isDefaultOrdering(req.SortTarget, req.SortOrder) || hasRevisionFilters(req) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++
	}
	return limit
}

func isDefaultOrdering(target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) bool {
	return order == pb.RangeRequest_NONE || target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND
}

func hasRevisionFilters(req *pb.RangeRequest) bool {
	return req.MinModRevision != 0 || req.MaxModRevision != 0 ||
		req.MinCreateRevision != 0 || req.MaxCreateRevision != 0
}

// filterKVs drops the pairs outside the request's revision filters. Like
// etcd it runs after the read, so Count still counts them.
func filterKVs(kvs []*mvccpb.KeyValue, req *pb.RangeRequest) []*mvccpb.KeyValue {
	if !hasRevisionFilters(req) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case req.MaxModRevision != 0 && kv.ModRevision > req.MaxModRevision,
			req.MinModRevision != 0 && kv.ModRevision < req.MinModRevision,
			req.MaxCreateRevision != 0 && kv.CreateRevision > req.MaxCreateRevision,
			req.MinCreateRevision != 0 && kv.CreateRevision < req.MinCreateRevision:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// sortKVs sorts like etcd: a target other than KEY with order NONE means
// ascending; key-ascending input needs no sort. It uses sort.Sort, as etcd
// does, so that pairs that tie on the target end up in the same order.
func sortKVs(kvs []*mvccpb.KeyValue, req *pb.RangeRequest) {
	order := req.SortOrder
	if req.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if isDefaultOrdering(req.SortTarget, order) {
		return
	}
	var s sort.Interface
	switch req.SortTarget {
	case pb.RangeRequest_KEY:
		s = byKey{kvs}
	case pb.RangeRequest_VERSION:
		s = byVersion{kvs}
	case pb.RangeRequest_CREATE:
		s = byCreate{kvs}
	case pb.RangeRequest_MOD:
		s = byMod{kvs}
	case pb.RangeRequest_VALUE:
		s = byValue{kvs}
	default:
		return // refused by ValidateRange
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(s)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(s))
	}
}

type kvSlice []*mvccpb.KeyValue

func (s kvSlice) Len() int      { return len(s) }
func (s kvSlice) Swap(i, j int) { s[i], s[j] = s[j], s[i] }

type (
	byKey     struct{ kvSlice }
	byVersion struct{ kvSlice }
	byCreate  struct{ kvSlice }
	byMod     struct{ kvSlice }
	byValue   struct{ kvSlice }
)

func (s byKey) Less(i, j int) bool { return bytes.Compare(s.kvSlice[i].Key, s.kvSlice[j].Key) < 0 }
func (s byVersion) Less(i, j int) bool {
	return s.kvSlice[i].Version-s.kvSlice[j].Version < 0
}
func (s byCreate) Less(i, j int) bool {
	return s.kvSlice[i].CreateRevision-s.kvSlice[j].CreateRevision < 0
}
func (s byMod) Less(i, j int) bool {
	return s.kvSlice[i].ModRevision-s.kvSlice[j].ModRevision < 0
}
func (s byValue) Less(i, j int) bool {
	return bytes.Compare(s.kvSlice[i].Value, s.kvSlice[j].Value) < 0
}

// rangeSpec is one storage read: the pairs of [key, end) (etcd's range_end
// rules) live at rev.
type rangeSpec struct {
	key, end []byte
	rev      int64
	// limit caps the pairs returned (<= 0: no cap); the count is always
	// the total.
	limit int64
	// countOnly returns no pairs, only the count.
	countOnly bool
	// fastKeys returns pairs with key, create and mod revisions and
	// version only, as etcd's index-only keys_only read does (no value,
	// no lease).
	fastKeys bool
	// keyLease returns pairs with key and lease only, which is all a
	// delete needs; the records are not decoded whole.
	keyLease bool
}

func (sp rangeSpec) wants(n int) bool {
	return !sp.countOnly && (sp.limit <= 0 || int64(n) < sp.limit)
}

func (sp rangeSpec) shape(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if sp.fastKeys {
		return &mvccpb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	}
	return kv
}

// rangeCurrent reads the current pairs (vk).
func rangeCurrent(r storage.Reader, sp rangeSpec) ([]*mvccpb.KeyValue, int64, error) {
	if sp.countOnly && wholeSpace(sp.key, sp.end) {
		// Counting every key (etcdctl get "" --prefix --count-only) is
		// the live-key counter, which writes keep in the same batch.
		n, err := Keys(r)
		return nil, n, err
	}
	if len(sp.end) == 0 {
		v, err := r.Get(currentKey(sp.key))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if sp.countOnly {
			return nil, 1, nil
		}
		if sp.keyLease {
			lease, err := currentLease(v)
			if err != nil {
				return nil, 0, err
			}
			return []*mvccpb.KeyValue{{Key: sp.key, Lease: lease}}, 1, nil
		}
		kv, err := decodeKV(v)
		if err != nil {
			return nil, 0, err
		}
		return []*mvccpb.KeyValue{sp.shape(kv)}, 1, nil
	}
	lower, upper := currentBounds(sp.key, sp.end)
	it, err := r.NewIterator(storage.IterOptions{Lower: lower, Upper: upper})
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	var kvs []*mvccpb.KeyValue
	var count int64
	for it.Next() {
		switch {
		case !sp.wants(len(kvs)):
		case sp.keyLease:
			lease, err := currentLease(it.Value())
			if err != nil {
				return nil, 0, err
			}
			key := bytes.Clone(it.Key()[len(prefixCurrent):])
			kvs = append(kvs, &mvccpb.KeyValue{Key: key, Lease: lease})
		default:
			kv, err := decodeKV(it.Value())
			if err != nil {
				return nil, 0, err
			}
			kvs = append(kvs, sp.shape(kv))
		}
		count++
	}
	if err := it.Err(); err != nil {
		return nil, 0, err
	}
	return kvs, count, nil
}

// wholeSpace reports whether [key, end) holds every key: etcd's "\x00"
// range end means no upper bound, and no key is below "\x00".
func wholeSpace(key, end []byte) bool {
	return len(end) == 1 && end[0] == 0 && (len(key) == 0 || len(key) == 1 && key[0] == 0)
}

// rangePast reads the pairs live at sp.rev from the revision index: for
// each key, the last index entry at or below sp.rev, if it is a put. It
// scans every index entry of the keys in range, history after sp.rev
// included, so its cost grows with the history not yet compacted.
func rangePast(r storage.Reader, sp rangeSpec) ([]*mvccpb.KeyValue, int64, error) {
	revs, count, err := scanIndex(r, sp)
	if err != nil {
		return nil, 0, err
	}
	kvs := make([]*mvccpb.KeyValue, 0, len(revs))
	for _, rv := range revs {
		v, err := r.Get(revKey(rv))
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				// Removed by a physical compaction that overtook this
				// read (possible on a live engine only).
				return nil, 0, ErrCompacted
			}
			return nil, 0, err
		}
		kind, kv, err := decodeRecord(v)
		if err != nil {
			return nil, 0, err
		}
		if kind != kindPut {
			return nil, 0, fmt.Errorf("%w: index entry %v names a tombstone", errCorrupt, rv)
		}
		kvs = append(kvs, sp.shape(kv))
	}
	return kvs, count, nil
}

// scanIndex finds the revisions of the pairs rangePast returns, and the
// count.
func scanIndex(r storage.Reader, sp rangeSpec) (revs []revision, count int64, err error) {
	if len(sp.end) == 0 {
		rv, ok, err := lastIndexEntry(r, sp.key, sp.rev)
		if err != nil || !ok {
			return nil, 0, err
		}
		if sp.wants(0) {
			revs = append(revs, rv)
		}
		return revs, 1, nil
	}
	lower, upper := indexBounds(sp.key, sp.end)
	it, err := r.NewIterator(storage.IterOptions{Lower: lower, Upper: upper})
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	var (
		group   []byte // escaped key of the entries being read
		best    revision
		bestPut bool
		found   bool
	)
	flush := func() {
		if found && bestPut {
			if sp.wants(len(revs)) {
				revs = append(revs, best)
			}
			count++
		}
		found = false
	}
	for it.Next() {
		prefix, rv, err := splitIndexKey(it.Key())
		if err != nil {
			return nil, 0, err
		}
		if !bytes.Equal(prefix, group) {
			flush()
			group = append(group[:0], prefix...)
		}
		if rv.main > sp.rev {
			continue
		}
		v := it.Value()
		if len(v) != 1 || v[0] != kindPut && v[0] != kindDelete {
			return nil, 0, fmt.Errorf("%w: index value", errCorrupt)
		}
		best, bestPut, found = rv, v[0] == kindPut, true
	}
	if err := it.Err(); err != nil {
		return nil, 0, err
	}
	flush()
	return revs, count, nil
}

// lastIndexEntry returns the revision of key's last index entry at or
// below rev if it is a put (ok false if there is none or it is a delete):
// one bounded reverse step, whatever the key's history.
func lastIndexEntry(r storage.Reader, key []byte, rev int64) (rv revision, ok bool, err error) {
	lower := indexPrefix(key)
	upper := appendRev(bytes.Clone(lower), revision{main: rev + 1})
	it, err := r.NewIterator(storage.IterOptions{Lower: lower, Upper: upper, Reverse: true})
	if err != nil {
		return revision{}, false, err
	}
	defer it.Close()
	if !it.Next() {
		return revision{}, false, it.Err()
	}
	_, rv, err = splitIndexKey(it.Key())
	if err != nil {
		return revision{}, false, err
	}
	v := it.Value()
	if len(v) != 1 || v[0] != kindPut && v[0] != kindDelete {
		return revision{}, false, fmt.Errorf("%w: index value", errCorrupt)
	}
	return rv, v[0] == kindPut, nil
}
