package mvcc

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/storage/overlay"
)

// Txn is etcd's Txn in b: all compares, those of nested txns included, are
// evaluated first against the state before the transaction; the chosen
// branch's ranges and puts are then checked against that state too
// (ErrFutureRev, ErrCompacted, ErrLeaseNotFound, ErrKeyNotFound, the
// first failure in op order wins and nothing is written); then the ops run
// in order as one write transaction, each seeing the writes before it. A
// transaction that writes nothing (all reads, or deletes of absent keys)
// keeps the revision. The request is validated first (ValidateTxn without
// an op limit, and with the key limit of an entry being applied).
//
// A read-only transaction may be served outside the apply loop by running
// it in a throwaway overlay.New(snapshot).
//
// An engine error in the middle of the ops leaves some of them in b:
// discard the batch (etcd panics in that case).
func (s *Store) Txn(b *overlay.Batch, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	return s.txn(b, req, false)
}

// TxnSkipRanges is Txn for a member that applies the transaction but
// answers no client (etcd's skipRangeExecution on members the request did
// not come to): the range ops are not executed, and their responses carry
// only the header revision. Writes, revisions and errors are Txn's.
func (s *Store) TxnSkipRanges(b *overlay.Batch, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	return s.txn(b, req, true)
}

func (s *Store) txn(b *overlay.Batch, req *pb.TxnRequest, skipRanges bool) (*pb.TxnResponse, error) {
	if err := validateTxn(req, 0, maxAppliedKeyBytes); err != nil {
		return nil, err
	}
	w := s.Write(b)
	if w.err != nil {
		return nil, w.err
	}
	defer w.End()
	var path []bool
	if err := w.comparePath(req, &path); err != nil {
		return nil, err
	}
	if _, err := w.checkTxn(req, path); err != nil {
		return nil, err
	}
	if ignoredPutOfDeletedKey(req, path) {
		return nil, ErrKeyNotFound
	}
	w.skipRanges = skipRanges
	resp, _, err := w.executeTxn(req, path)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = w.rev()
	return resp, nil
}

// comparePath appends the outcome of req's compares and then, depth first,
// those of the nested txns of the branch it chose.
func (w *Write) comparePath(req *pb.TxnRequest, path *[]bool) error {
	ok, err := w.compares(req.GetCompare())
	if err != nil {
		return err
	}
	*path = append(*path, ok)
	for _, op := range branch(req, ok) {
		if t := op.GetRequestTxn(); t != nil {
			if err := w.comparePath(t, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func branch(req *pb.TxnRequest, ok bool) []*pb.RequestOp {
	if ok {
		return req.GetSuccess()
	}
	return req.GetFailure()
}

func (w *Write) compares(cs []*pb.Compare) (bool, error) {
	for _, c := range cs {
		ok, err := w.compare(c)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// compare is etcd's: every key in the compare's range must satisfy it; a
// range with no key compares a zero KeyValue, except that a VALUE compare
// then fails.
func (w *Write) compare(c *pb.Compare) (bool, error) {
	var kvs []*mvccpb.KeyValue
	if len(c.GetRangeEnd()) == 0 && c.GetTarget() != pb.Compare_VALUE {
		// One key and not its value: the read a put makes answers it,
		// from the read cache's trimmed record where there is one.
		kv, err := getCurrentMeta(w.b, c.GetKey())
		if err != nil {
			return false, err
		}
		if kv != nil {
			kvs = []*mvccpb.KeyValue{kv}
		}
	} else {
		var err error
		kvs, _, err = rangeCurrent(w.b, rangeSpec{key: c.GetKey(), end: c.GetRangeEnd(), rev: w.rev()})
		if err != nil {
			return false, err
		}
	}
	if len(kvs) == 0 {
		if c.GetTarget() == pb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var res int
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		var v []byte
		if t, _ := c.GetTargetUnion().(*pb.Compare_Value); t != nil {
			v = t.Value
		}
		res = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		var rev int64
		if t, _ := c.GetTargetUnion().(*pb.Compare_CreateRevision); t != nil {
			rev = t.CreateRevision
		}
		res = cmpInt64(kv.CreateRevision, rev)
	case pb.Compare_MOD:
		var rev int64
		if t, _ := c.GetTargetUnion().(*pb.Compare_ModRevision); t != nil {
			rev = t.ModRevision
		}
		res = cmpInt64(kv.ModRevision, rev)
	case pb.Compare_VERSION:
		var v int64
		if t, _ := c.GetTargetUnion().(*pb.Compare_Version); t != nil {
			v = t.Version
		}
		res = cmpInt64(kv.Version, v)
	case pb.Compare_LEASE:
		var l int64
		if t, _ := c.GetTargetUnion().(*pb.Compare_Lease); t != nil {
			l = t.Lease
		}
		res = cmpInt64(kv.Lease, l)
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkTxn checks the ops of the branches path chose against the state
// before the transaction, returning how many path entries nested txns
// used.
func (w *Write) checkTxn(req *pb.TxnRequest, path []bool) (int, error) {
	used := 0
	for _, op := range branch(req, path[0]) {
		var err error
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			err = w.checkRange(v.RequestRange)
		case *pb.RequestOp_RequestPut:
			err = w.checkPut(v.RequestPut)
		case *pb.RequestOp_RequestTxn:
			var n int
			n, err = w.checkTxn(v.RequestTxn, path[1:])
			used += n + 1
			path = path[n+1:]
		}
		if err != nil {
			return 0, err
		}
	}
	return used, nil
}

// checkRange is etcd's check of a range inside a txn. It differs from a
// plain range on negative revisions: below the compacted revision they
// fail (with no compaction yet, -1 passes and reads the current state).
func (w *Write) checkRange(r *pb.RangeRequest) error {
	switch {
	case r.GetRevision() == 0:
		return nil
	case r.GetRevision() > w.begin:
		return ErrFutureRev
	case r.GetRevision() < w.compact:
		return ErrCompacted
	}
	return nil
}

func (w *Write) checkPut(p *pb.PutRequest) error {
	if err := w.s.checkLease(p); err != nil {
		return err
	}
	if p.GetIgnoreValue() || p.GetIgnoreLease() {
		prev, err := getCurrent(w.b, p.GetKey())
		if err != nil {
			return err
		}
		if prev == nil {
			return ErrKeyNotFound
		}
	}
	return nil
}

// ignoredPutOfDeletedKey reports whether a put with ignore_value or
// ignore_lease on the chosen path names a key that an earlier op of the
// same transaction deleted (and no later put recreated). checkTxn only
// checks that such a key exists before the transaction, and etcd's
// duplicate-key rule misses some of these (a delete with range_end "\x00"
// covers no put, for one), so etcd v3.7.3 executes the put, finds no
// previous value and panics in its apply loop. The Store refuses the
// transaction instead, before writing anything, with ErrKeyNotFound (the
// error of an ignore_value put on an absent key).
func ignoredPutOfDeletedKey(req *pb.TxnRequest, path []bool) bool {
	type effect struct {
		key, end []byte
		del      bool
	}
	var done []effect
	var walk func(req *pb.TxnRequest, path []bool) (used int, found bool)
	walk = func(req *pb.TxnRequest, path []bool) (int, bool) {
		used := 0
		for _, op := range branch(req, path[0]) {
			switch v := op.GetRequest().(type) {
			case *pb.RequestOp_RequestPut:
				p := v.RequestPut
				if p.IgnoreValue || p.IgnoreLease {
					for i := len(done) - 1; i >= 0; i-- {
						if e := done[i]; e.del && inRange(p.Key, e.key, e.end) {
							return 0, true
						} else if !e.del && bytes.Equal(e.key, p.Key) {
							break
						}
					}
				}
				done = append(done, effect{key: p.Key})
			case *pb.RequestOp_RequestDeleteRange:
				done = append(done, effect{key: v.RequestDeleteRange.Key, end: v.RequestDeleteRange.RangeEnd, del: true})
			case *pb.RequestOp_RequestTxn:
				n, found := walk(v.RequestTxn, path[1:])
				if found {
					return 0, true
				}
				used += n + 1
				path = path[n+1:]
			}
		}
		return used, false
	}
	_, found := walk(req, path)
	return found
}

// executeTxn runs the ops of the branch path chose and returns the
// response (header revision not set) and how many path entries nested
// txns used.
func (w *Write) executeTxn(req *pb.TxnRequest, path []bool) (*pb.TxnResponse, int, error) {
	ops := branch(req, path[0])
	resp := &pb.TxnResponse{
		Header:    &pb.ResponseHeader{},
		Succeeded: path[0],
		Responses: make([]*pb.ResponseOp, len(ops)),
	}
	used := 0
	for i, op := range ops {
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			r := v.RequestRange
			rev := r.Revision
			if rev <= 0 {
				rev = w.rev()
			}
			rr := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: w.rev()}}
			if !w.skipRanges {
				var err error
				if rr, err = w.rangeAt(r, rev); err != nil {
					return nil, 0, err
				}
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			p := v.RequestPut
			prev, err := w.prevKV(p)
			if err != nil {
				return nil, 0, err
			}
			pr, err := w.put(p, prev)
			if err != nil {
				return nil, 0, err
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
		case *pb.RequestOp_RequestDeleteRange:
			dr, err := w.deleteRange(v.RequestDeleteRange)
			if err != nil {
				return nil, 0, err
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
		case *pb.RequestOp_RequestTxn:
			tr, n, err := w.executeTxn(v.RequestTxn, path[1:])
			if err != nil {
				return nil, 0, err
			}
			// etcd sets a nested txn's header revision nowhere: it stays 0.
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}}
			used += n + 1
			path = path[n+1:]
		}
	}
	return resp, used, nil
}
