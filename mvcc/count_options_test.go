package mvcc

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestCountIgnoresOptions: as etcd's, a count is the number of keys in
// range whatever the limit, keys_only, sort and revision filters say, for
// the whole key space (the live-key counter) as for a part of it (a
// scan), and inside a txn after its own writes. (Written by a reviewer of
// the counter's use.)
func TestCountIgnoresOptions(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		e.put(fmt.Sprintf("k%02d", i), "v")
	}
	e.del("k05", "k10")
	e.put("k01", "again")
	want, cur := int64(25), e.s.Rev()
	for i, v := range []func(r *pb.RangeRequest){
		func(r *pb.RangeRequest) {},
		func(r *pb.RangeRequest) { r.Limit = 1 },
		func(r *pb.RangeRequest) { r.KeysOnly = true },
		func(r *pb.RangeRequest) { r.SortOrder, r.SortTarget = pb.RangeRequest_DESCEND, pb.RangeRequest_MOD },
		func(r *pb.RangeRequest) { r.MinModRevision = cur },
		func(r *pb.RangeRequest) { r.MaxCreateRevision = 2 },
		func(r *pb.RangeRequest) { r.Revision = cur },
	} {
		whole := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}
		part := &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true}
		v(whole)
		v(part)
		gw, gp := e.mustRange(whole), e.mustRange(part)
		if gw.Count != want || gp.Count != want || len(gw.Kvs) != 0 || gw.More != gp.More {
			t.Errorf("variant %d: whole %d (more %v), part %d (more %v); want %d", i, gw.Count, gw.More, gp.Count, gp.More, want)
		}
	}
	resp, err := e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("new"), Value: []byte("x")}}},
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k2"), RangeEnd: []byte("k3")}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Limit: 2}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("o"), CountOnly: true, Limit: 2}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Revision: cur}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := resp.Responses[2].GetResponseRange().Count, resp.Responses[3].GetResponseRange().Count, resp.Responses[4].GetResponseRange().Count
	if a != want-9 || b != a || c != want {
		t.Errorf("in a txn: whole %d, part %d, before %d; want %d, %d, %d", a, b, c, want-9, want-9, want)
	}
}
