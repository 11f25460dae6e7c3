package mvcc

// Fuzz targets for the requests clients send over gRPC: the bytes are
// decoded as the protobuf the gRPC server would decode, run through
// Validate*, and, when valid, applied to a Store over a memory engine the
// way the apply loop does (an overlay batch, then a commit). Nothing may
// panic, and every error must be one etcd sends (a sentinel of errors.go
// or an rpctypes status), never an engine error.

import (
	"bytes"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
)

// fuzzEnv is a Store over a memory engine holding a little history: keys
// a..e, some overwritten, b deleted, c and d on leases, history compacted
// below revision 3. Leases 1, 2 and 3 exist.
func newFuzzEnv(t *testing.T) *env {
	t.Helper()
	eng := memory.New()
	l, err := lease.New(eng, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, eng, Options{LeaseExists: l.Exists, Leases: l})
	for _, id := range []int64{1, 2, 3} {
		if _, err := l.Grant(e.ob, id, 60); err != nil {
			t.Fatal(err)
		}
	}
	e.commit()
	for _, p := range []*pb.PutRequest{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("2")},
		{Key: []byte("a"), Value: []byte("3")},
		{Key: []byte("c"), Value: []byte("4"), Lease: 1},
		{Key: []byte("d\x00"), Value: []byte("5"), Lease: 2},
		{Key: []byte("e/f"), Value: nil},
	} {
		if _, err := e.putReq(p); err != nil {
			t.Fatal(err)
		}
	}
	e.del("b", "")
	if _, err := e.compact(3); err != nil {
		t.Fatal(err)
	}
	return e
}

// isEtcdError reports whether err is an error etcd answers a request with.
func isEtcdError(err error) bool {
	for _, e := range []error{ErrCompacted, ErrFutureRev, ErrKeyNotFound, ErrLeaseNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	st, ok := status.FromError(err)
	return ok && st.Code() != codes.Unknown && st.Code() != codes.OK
}

func checkEtcdError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !isEtcdError(err) {
		t.Fatalf("%s: error %v (%T) is not one etcd sends", what, err, err)
	}
	if st, _ := status.FromError(ToGRPCError(err)); st.Code() == codes.Unknown {
		t.Fatalf("%s: ToGRPCError(%v) has code Unknown", what, err)
	}
}

// inRangeOf reports whether key belongs to the range [key, end) a request
// names, with etcd's conventions (no end: the key alone; "\x00": every key
// from key on).
func inRangeOf(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// dumpEngine returns every key and value of eng, in order.
func dumpEngine(t *testing.T, eng storage.Engine) [][2][]byte {
	t.Helper()
	it, err := eng.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out [][2][]byte
	for it.Next() {
		out = append(out, [2][]byte{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func addSeeds(f *testing.F, msgs ...proto.Message) {
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzValidateRange(f *testing.F) {
	addSeeds(f,
		&pb.RangeRequest{Key: []byte("a")},
		&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 2, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD},
		&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: 2},
		&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("e"), Revision: 4, KeysOnly: true, MinModRevision: 3},
		&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Serializable: true},
		&pb.RangeRequest{Key: []byte("c"), SortTarget: 9},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.RangeRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		verr := ValidateRange(req)
		checkEtcdError(t, "ValidateRange", verr)
		e := newFuzzEnv(t)
		resp, err := e.s.Range(e.eng, req)
		if verr != nil {
			if err != verr {
				t.Fatalf("Range of an invalid request: %v, ValidateRange said %v", err, verr)
			}
			return
		}
		checkEtcdError(t, "Range", err)
		if err != nil {
			return
		}
		if req.Limit > 0 && int64(len(resp.Kvs)) > req.Limit {
			t.Fatalf("%d kvs with limit %d", len(resp.Kvs), req.Limit)
		}
		if resp.Count < int64(len(resp.Kvs)) {
			t.Fatalf("count %d < %d kvs", resp.Count, len(resp.Kvs))
		}
		if req.CountOnly && len(resp.Kvs) != 0 {
			t.Fatalf("count_only answered %d kvs", len(resp.Kvs))
		}
		for _, kv := range resp.Kvs {
			if !inRangeOf(kv.Key, req.Key, req.RangeEnd) {
				t.Fatalf("key %q outside [%q, %q)", kv.Key, req.Key, req.RangeEnd)
			}
			if req.KeysOnly && len(kv.Value) != 0 {
				t.Fatalf("keys_only answered a value for %q", kv.Key)
			}
		}
		// The same request inside a write transaction answers the same.
		w := e.s.Write(e.ob)
		wresp, werr := w.Range(req)
		w.End()
		if (werr == nil) != (err == nil) || (werr == nil && !proto.Equal(wresp, resp)) {
			t.Fatalf("Range in a write txn: %v %v; on the engine: %v %v", wresp, werr, resp, err)
		}
	})
}

func FuzzValidatePut(f *testing.F) {
	addSeeds(f,
		&pb.PutRequest{Key: []byte("a"), Value: []byte("v")},
		&pb.PutRequest{Key: []byte("a"), IgnoreValue: true, PrevKv: true},
		&pb.PutRequest{Key: []byte("c"), IgnoreLease: true},
		&pb.PutRequest{Key: []byte("x"), Lease: 3},
		&pb.PutRequest{Key: []byte("x"), Lease: 99},
		&pb.PutRequest{Key: []byte("b"), IgnoreValue: true, Value: []byte("no")},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.PutRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		checkEtcdError(t, "ValidatePut", ValidatePut(req))
		verr := validatePut(req, maxAppliedKeyBytes) // what Store.Put checks
		checkEtcdError(t, "validatePut", verr)
		e := newFuzzEnv(t)
		before := e.s.Rev()
		var prev *mvccpb.KeyValue
		if len(req.Key) > 0 {
			prev = e.get(string(req.Key), 0)
		}
		resp, err := e.putReq(req)
		if verr != nil {
			if err != verr {
				t.Fatalf("Put of an invalid request: %v, ValidatePut said %v", err, verr)
			}
			return
		}
		checkEtcdError(t, "Put", err)
		if err != nil {
			if e.s.Rev() != before {
				t.Fatalf("a failed put moved the revision from %d to %d", before, e.s.Rev())
			}
			return
		}
		if resp.Header.Revision != before+1 || e.s.Rev() != before+1 {
			t.Fatalf("put at revision %d (store at %d), want %d", resp.Header.Revision, e.s.Rev(), before+1)
		}
		got := e.get(string(req.Key), 0)
		wantVal, wantLease := req.Value, req.Lease
		if req.IgnoreValue {
			wantVal = prev.Value
		}
		if req.IgnoreLease {
			wantLease = prev.Lease
		}
		if got == nil || !bytes.Equal(got.Value, wantVal) || got.Lease != wantLease || got.ModRevision != before+1 {
			t.Fatalf("after put %v: key holds %v", req, got)
		}
	})
}

func FuzzValidateDeleteRange(f *testing.F) {
	addSeeds(f,
		&pb.DeleteRangeRequest{Key: []byte("a")},
		&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true},
		&pb.DeleteRangeRequest{Key: []byte("c"), RangeEnd: []byte("a")},
		&pb.DeleteRangeRequest{Key: []byte("d"), RangeEnd: []byte("e")},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.DeleteRangeRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		verr := ValidateDeleteRange(req)
		checkEtcdError(t, "ValidateDeleteRange", verr)
		e := newFuzzEnv(t)
		before := e.s.Rev()
		resp, err := e.delReq(req)
		if verr != nil {
			if err != verr {
				t.Fatalf("DeleteRange of an invalid request: %v, ValidateDeleteRange said %v", err, verr)
			}
			return
		}
		checkEtcdError(t, "DeleteRange", err)
		if err != nil {
			return
		}
		want := before
		if resp.Deleted > 0 {
			want++
		}
		if e.s.Rev() != want || resp.Header.Revision != want {
			t.Fatalf("deleted %d: revision %d (header %d), want %d", resp.Deleted, e.s.Rev(), resp.Header.Revision, want)
		}
		left, err := e.rng(&pb.RangeRequest{Key: req.Key, RangeEnd: req.RangeEnd})
		if err != nil {
			t.Fatal(err)
		}
		if len(left.Kvs) != 0 {
			t.Fatalf("keys left in the deleted range: %v", left.Kvs)
		}
	})
}

func FuzzValidateTxn(f *testing.F) {
	put := func(k, v string, lease int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: lease}}}
	}
	del := func(k, end string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
	}
	rng := func(k, end string, rev int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k), RangeEnd: []byte(end), Revision: rev}}}
	}
	txn := func(t *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
	}
	addSeeds(f,
		&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("3")}}},
			Success: []*pb.RequestOp{put("a", "4", 0), rng("a", "z", 0)},
			Failure: []*pb.RequestOp{del("a", "")},
		},
		&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("c"), Target: pb.Compare_LEASE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Lease{Lease: 0}}},
			Success: []*pb.RequestOp{txn(&pb.TxnRequest{Success: []*pb.RequestOp{put("x", "1", 3)}}), del("c", "\x00")},
		},
		&pb.TxnRequest{Success: []*pb.RequestOp{rng("a", "", 1)}},
		&pb.TxnRequest{Success: []*pb.RequestOp{put("a", "1", 0), put("a", "2", 0)}},
		&pb.TxnRequest{Success: []*pb.RequestOp{del("a", "\x00"), put("b", "", 0)}},
		&pb.TxnRequest{Success: []*pb.RequestOp{{}}},
		&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("e/f"), Target: pb.Compare_MOD, Result: pb.Compare_LESS, RangeEnd: []byte{0}, TargetUnion: &pb.Compare_ModRevision{ModRevision: 9}}},
			Success: []*pb.RequestOp{put("q", "1", 99)}, Failure: []*pb.RequestOp{put("q", "2", 1)}},
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.TxnRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		checkEtcdError(t, "ValidateTxn", ValidateTxn(req, 128))
		verr := validateTxn(req, 0, maxAppliedKeyBytes) // what Store.Txn checks
		checkEtcdError(t, "ValidateTxn(no limit)", verr)

		// The member that answers the client (Txn) and the others
		// (TxnSkipRanges) must fail alike and write the same bytes.
		a, b := newFuzzEnv(t), newFuzzEnv(t)
		before := a.s.Rev()
		resp, err := a.txn(req)
		bresp, berr := b.s.TxnSkipRanges(b.ob, req)
		b.commit()
		if verr != nil {
			if err != verr || berr != verr {
				t.Fatalf("Txn of an invalid request: %v / %v, ValidateTxn said %v", err, berr, verr)
			}
			return
		}
		checkEtcdError(t, "Txn", err)
		if !errors.Is(berr, err) && berr != err {
			t.Fatalf("Txn failed with %v, TxnSkipRanges with %v", err, berr)
		}
		if da, db := dumpEngine(t, a.eng), dumpEngine(t, b.eng); len(da) != len(db) || !equalDump(da, db) {
			t.Fatalf("Txn and TxnSkipRanges left different engines (%d and %d keys)", len(da), len(db))
		}
		if err != nil {
			if a.s.Rev() != before {
				t.Fatalf("a failed txn moved the revision from %d to %d", before, a.s.Rev())
			}
			return
		}
		if resp.Header.Revision != a.s.Rev() || bresp.Header.Revision != resp.Header.Revision || resp.Succeeded != bresp.Succeeded {
			t.Fatalf("Txn: revision %d succeeded %v (store %d); TxnSkipRanges: revision %d succeeded %v", resp.Header.Revision, resp.Succeeded, a.s.Rev(), bresp.Header.Revision, bresp.Succeeded)
		}
		if r := a.s.Rev(); r != before && r != before+1 {
			t.Fatalf("one txn moved the revision from %d to %d", before, r)
		}
	})
}

func equalDump(a, b [][2][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i][0], b[i][0]) || !bytes.Equal(a[i][1], b[i][1]) {
			return false
		}
	}
	return true
}
