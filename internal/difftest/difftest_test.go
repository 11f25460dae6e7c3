package difftest

import (
	"errors"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// feed runs n requests of g, answering each with a successful response
// one revision up (writes) or at the current revision, as a reference
// would, and returns them with the revision before each.
func feed(g *Gen, n int) ([]Op, []int64) {
	var (
		ops  []Op
		revs []int64
	)
	rev := int64(1)
	for range n {
		op := g.Next()
		ops, revs = append(ops, op), append(revs, rev)
		var resp proto.Message
		switch op.Kind() {
		case "put", "delete", "txn":
			rev++
			resp = &pb.PutResponse{Header: &pb.ResponseHeader{Revision: rev}}
		case "compact":
			if c := op.Req.(*pb.CompactionRequest); c.Revision < g.CompactRev() || c.Revision > rev {
				g.Observe(op, nil, rpctypes.ErrGRPCCompacted)
				continue
			}
			resp = &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: rev}}
		default:
			resp = &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rev}}
		}
		g.Observe(op, resp, nil)
	}
	return ops, revs
}

func TestGenDeterministic(t *testing.T) {
	a, _ := feed(NewGen(42, Options{}), 2000)
	b, _ := feed(NewGen(42, Options{}), 2000)
	for i := range a {
		if !proto.Equal(a[i].Req, b[i].Req) {
			t.Fatalf("op %d: %s, then %s", i, a[i], b[i])
		}
	}
	c, _ := feed(NewGen(43, Options{}), 2000)
	same := 0
	for i := range a {
		if proto.Equal(a[i].Req, c[i].Req) {
			same++
		}
	}
	if same > 200 {
		t.Fatalf("seeds 42 and 43: %d of %d requests equal", same, len(a))
	}
}

// TestGenCoverage checks that the sequence reaches what it is for.
func TestGenCoverage(t *testing.T) {
	g := NewGen(7, Options{Leases: []int64{5, 6}, NoLease: 9})
	ops, revs := feed(g, 5000)
	seen := map[string]int{}
	var walkTxn func(t *pb.TxnRequest, depth int)
	walkTxn = func(t *pb.TxnRequest, depth int) {
		if depth > 0 {
			seen["nested txn"]++
		}
		if depth == 2 {
			seen["txn at depth 2"]++
		}
		for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
			for _, op := range ops {
				switch v := op.Request.(type) {
				case *pb.RequestOp_RequestTxn:
					walkTxn(v.RequestTxn, depth+1)
				case nil:
					seen["empty op"]++
				}
			}
		}
		for _, c := range t.Compare {
			seen["compare "+c.Target.String()]++
		}
	}
	for i, op := range ops {
		seen[op.Kind()]++
		if op.Serializable() {
			seen["serializable "+op.Kind()]++
		}
		switch r := op.Req.(type) {
		case *pb.RangeRequest:
			if r.Revision < 0 {
				seen["negative revision"]++
			}
			if r.Revision > revs[i] {
				seen["future revision"]++
			}
			if len(r.Key) == 0 {
				seen["empty key"]++
			}
			if r.SortTarget > pb.RangeRequest_VALUE {
				seen["bad sort target"]++
			}
		case *pb.PutRequest:
			switch r.Lease {
			case 5, 6:
				seen["lease"]++
			case 9:
				seen["no such lease"]++
			}
			if r.IgnoreValue && len(r.Value) > 0 {
				seen["ignore_value with a value"]++
			}
		case *pb.TxnRequest:
			walkTxn(r, 0)
			if MayPanicEtcd(r) {
				seen["may panic etcd"]++
			}
		}
	}
	for _, k := range []string{"range", "put", "delete", "txn", "compact", "serializable range", "serializable txn",
		"nested txn", "txn at depth 2", "empty op", "negative revision", "future revision", "empty key",
		"bad sort target", "lease", "no such lease", "ignore_value with a value", "may panic etcd",
		"compare VALUE", "compare VERSION", "compare CREATE", "compare MOD", "compare LEASE"} {
		if seen[k] == 0 {
			t.Errorf("no %s in %d requests (%v)", k, len(ops), seen)
		}
	}
	if g.CompactRev() <= 0 || g.Rev() < 1000 {
		t.Errorf("revision %d, compacted %d", g.Rev(), g.CompactRev())
	}
}

func TestOpSerializable(t *testing.T) {
	rng := func(s bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k"), Serializable: s}}}
	}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}
	for _, c := range []struct {
		req  proto.Message
		want bool
	}{
		{&pb.RangeRequest{Key: []byte("k")}, false},
		{&pb.RangeRequest{Key: []byte("k"), Serializable: true}, true},
		{&pb.PutRequest{Key: []byte("k")}, false},
		{&pb.TxnRequest{}, true},
		{&pb.TxnRequest{Success: []*pb.RequestOp{rng(true)}, Failure: []*pb.RequestOp{rng(true)}}, true},
		{&pb.TxnRequest{Success: []*pb.RequestOp{rng(true)}, Failure: []*pb.RequestOp{rng(false)}}, false},
		{&pb.TxnRequest{Success: []*pb.RequestOp{rng(true), put}}, false},
		{&pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{}}}}}, false},
		{&pb.CompactionRequest{}, false},
	} {
		if got := (Op{c.req}).Serializable(); got != c.want {
			t.Errorf("%s: Serializable %v", Op{c.req}, got)
		}
	}
}

func TestCompare(t *testing.T) {
	hdr := func(rev int64, member uint64) *pb.ResponseHeader {
		return &pb.ResponseHeader{ClusterId: 7 * member, MemberId: member, Revision: rev, RaftTerm: member + 1}
	}
	txn := func(rev, inner int64, member uint64, val string) *pb.TxnResponse {
		return &pb.TxnResponse{Header: hdr(rev, member), Succeeded: true, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
				Header: hdr(inner, member), Count: 1,
				Kvs: []*mvccpb.KeyValue{{Key: []byte("k"), Value: []byte(val), ModRevision: 3}},
			}}},
		}}
	}
	ok := func(m proto.Message) Result { return Result{Resp: m} }
	fail := func(err error) Result { return Result{Err: err} }
	for _, c := range []struct {
		name string
		a, b Result
		same bool
	}{
		{"members differ", ok(txn(5, 5, 1, "v")), ok(txn(5, 5, 2, "v")), true},
		{"revision differs", ok(txn(5, 5, 1, "v")), ok(txn(6, 5, 1, "v")), false},
		{"nested revision differs", ok(txn(5, 5, 1, "v")), ok(txn(5, 4, 1, "v")), false},
		{"value differs", ok(txn(5, 5, 1, "v")), ok(txn(5, 5, 1, "w")), false},
		{"nested header missing", ok(txn(5, 5, 1, "v")), ok(func() proto.Message {
			r := txn(5, 5, 1, "v")
			r.Responses[0].GetResponseRange().Header = nil
			return r
		}()), false},
		{"no header, no revision", ok(&pb.PutResponse{}), ok(&pb.PutResponse{Header: hdr(0, 3)}), true},
		{"same error", fail(rpctypes.ErrGRPCCompacted), fail(status.Error(codes.OutOfRange, rpctypes.ErrGRPCCompacted.Error()[len("rpc error: code = OutOfRange desc = "):])), true},
		{"error message differs", fail(rpctypes.ErrGRPCCompacted), fail(rpctypes.ErrGRPCFutureRev), false},
		{"error code differs", fail(status.Error(codes.NotFound, "x")), fail(status.Error(codes.Unknown, "x")), false},
		{"error and response", fail(rpctypes.ErrGRPCKeyNotFound), ok(&pb.PutResponse{}), false},
		{"nil response", ok(&pb.PutResponse{}), ok(nil), false},
		{"typed nil response", ok((*pb.PutResponse)(nil)), ok((*pb.PutResponse)(nil)), false},
		{"not a status error", fail(errors.New("x")), fail(status.Error(codes.Unknown, "x")), true},
		{"different types", ok(&pb.PutResponse{}), ok(&pb.DeleteRangeResponse{}), false},
	} {
		err := Compare(c.a, c.b)
		if (err == nil) != c.same {
			t.Errorf("%s: Compare = %v", c.name, err)
		}
		if err2 := Compare(c.b, c.a); (err2 == nil) != (err == nil) {
			t.Errorf("%s: not symmetric: %v, then %v", c.name, err, err2)
		}
	}
	// The message names the sides and shows both.
	err := Compare(Result{Name: "etcd", Resp: txn(5, 5, 1, "v")}, Result{Name: "metcd", Resp: txn(5, 5, 1, "w")})
	if err == nil || !strings.Contains(err.Error(), "etcd (rev 5)") || !strings.Contains(err.Error(), "metcd (rev 5)") ||
		!strings.Contains(err.Error(), `"v"`) || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("message: %v", err)
	}
	// Normalize leaves its argument alone.
	r := txn(5, 5, 1, "v")
	Normalize(r)
	if !proto.Equal(r, txn(5, 5, 1, "v")) {
		t.Errorf("Normalize changed its argument: %s", Text(r))
	}
}

func TestStats(t *testing.T) {
	s := Stats{}
	put := Op{&pb.PutRequest{}}
	s.Add(put, nil)
	s.Add(put, nil)
	s.Add(put, rpctypes.ErrGRPCKeyNotFound)
	s.Add(Op{&pb.TxnRequest{}}, errors.New("not counted"))
	if len(s) != 2 || s["put"] != 2 || s["put error: etcdserver: key not found"] != 1 {
		t.Fatalf("%v", s)
	}
}

func TestPanicsEtcd(t *testing.T) {
	put := func(key string, ignoreValue bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), IgnoreValue: ignoreValue}}}
	}
	del := func(key, end string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end)}}}
	}
	nested := func(t *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
	}
	ops := func(o ...*pb.RequestOp) []*pb.RequestOp { return o }
	for _, c := range []struct {
		name     string
		req      *pb.TxnRequest
		path     []bool
		may, got bool
	}{
		{"delete from key, then ignored put", &pb.TxnRequest{Success: ops(del("a", "\x00"), put("b", true))}, []bool{true}, true, true},
		{"on the other branch", &pb.TxnRequest{Success: ops(del("a", "\x00"), put("b", true))}, []bool{false}, true, false},
		{"put before the delete", &pb.TxnRequest{Success: ops(put("b", true), del("a", "\x00"))}, []bool{true}, true, false},
		{"delete outside the key", &pb.TxnRequest{Success: ops(del("c", "d"), put("b", true))}, []bool{true}, true, false},
		{"range delete", &pb.TxnRequest{Failure: ops(del("a", "c"), put("b", true))}, []bool{false}, true, true},
		{"one key delete", &pb.TxnRequest{Success: ops(del("b", ""), put("b", true))}, []bool{true}, true, true},
		{"recreated before", &pb.TxnRequest{Success: ops(del("b", ""), put("b", false), put("b", true))}, []bool{true}, true, false},
		{"plain put", &pb.TxnRequest{Success: ops(del("b", ""), put("b", false))}, []bool{true}, false, false},
		{"in a nested txn", &pb.TxnRequest{Success: ops(del("a", "\x00"),
			nested(&pb.TxnRequest{Failure: ops(put("b", true))}))}, []bool{true, false}, true, true},
		{"nested txn took the other branch", &pb.TxnRequest{Success: ops(del("a", "\x00"),
			nested(&pb.TxnRequest{Failure: ops(put("b", true))}))}, []bool{true, true}, true, false},
		{"second nested txn", &pb.TxnRequest{Success: ops(
			nested(&pb.TxnRequest{Success: ops(del("a", "\x00")), Failure: ops(nested(&pb.TxnRequest{}))}),
			nested(&pb.TxnRequest{Success: ops(put("b", true))}))}, []bool{true, false, true, true}, true, false},
		{"second nested txn after a delete", &pb.TxnRequest{Success: ops(
			nested(&pb.TxnRequest{Success: ops(del("a", "\x00"), nested(&pb.TxnRequest{}))}),
			nested(&pb.TxnRequest{Success: ops(put("b", true))}))}, []bool{true, true, false, true}, true, true},
	} {
		if may := MayPanicEtcd(c.req); may != c.may {
			t.Errorf("%s: MayPanicEtcd %v", c.name, may)
		}
		if got := PanicsEtcd(c.req, c.path); got != c.got {
			t.Errorf("%s: PanicsEtcd %v", c.name, got)
		}
	}
}
