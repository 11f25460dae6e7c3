package difftest

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcd v3.7.3 accepts some txns and then panics applying them: a put with
// ignore_value or ignore_lease of a key that an earlier op of the same txn
// deleted (and no later put recreated), on the branches the compares
// chose. Its check that such a put's key exists looks at the state before
// the txn, and its duplicate-key rule misses some of these (a delete with
// range_end "\x00" covers no put, for one). metcd refuses them with
// ErrKeyNotFound instead (a documented difference, see package mvcc), so
// a differential test must not send them to etcd.

// MayPanicEtcd reports whether req could be such a txn on some path: it
// holds both a put with ignore_value or ignore_lease and a delete.
func MayPanicEtcd(req *pb.TxnRequest) bool {
	var ignoredPut, del bool
	var walk func(t *pb.TxnRequest)
	walk = func(t *pb.TxnRequest) {
		for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
			for _, op := range ops {
				switch v := op.GetRequest().(type) {
				case *pb.RequestOp_RequestPut:
					ignoredPut = ignoredPut || v.RequestPut.GetIgnoreValue() || v.RequestPut.GetIgnoreLease()
				case *pb.RequestOp_RequestDeleteRange:
					del = true
				case *pb.RequestOp_RequestTxn:
					walk(v.RequestTxn)
				}
			}
		}
	}
	walk(req)
	return ignoredPut && del
}

// PanicsEtcd reports whether req is such a txn on the branches path
// chose: path holds the outcome of req's compares, then depth first those
// of the nested txns of the chosen branches (Client.ComparePath). It does
// not check that etcd would refuse req before applying it (an invalid
// request, a duplicate key, a range at a compacted or future revision, an
// unknown lease, a put with ignore_value of a key absent before the txn):
// it may report true for such a txn.
func PanicsEtcd(req *pb.TxnRequest, path []bool) bool {
	type effect struct {
		key, end []byte
		del      bool
	}
	var done []effect
	var walk func(req *pb.TxnRequest, path []bool) (used int, found bool)
	walk = func(req *pb.TxnRequest, path []bool) (int, bool) {
		if len(path) == 0 {
			return 0, false
		}
		used := 0
		for _, op := range branch(req, path[0]) {
			switch v := op.GetRequest().(type) {
			case *pb.RequestOp_RequestPut:
				p := v.RequestPut
				if p.GetIgnoreValue() || p.GetIgnoreLease() {
					for i := len(done) - 1; i >= 0; i-- {
						if e := done[i]; e.del && inRange(p.GetKey(), e.key, e.end) {
							return 0, true
						} else if !e.del && bytes.Equal(e.key, p.GetKey()) {
							break
						}
					}
				}
				done = append(done, effect{key: p.GetKey()})
			case *pb.RequestOp_RequestDeleteRange:
				d := v.RequestDeleteRange
				done = append(done, effect{key: d.GetKey(), end: d.GetRangeEnd(), del: true})
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

func branch(req *pb.TxnRequest, ok bool) []*pb.RequestOp {
	if ok {
		return req.GetSuccess()
	}
	return req.GetFailure()
}

// inRange reports whether k is in etcd's interval [key, end): key alone
// if end is empty, every key from key if end is "\x00".
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}
