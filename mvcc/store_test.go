package mvcc

import (
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
)

func TestEmptyStore(t *testing.T) {
	e := newEnv(t)
	if e.s.Rev() != 1 || e.s.CompactRev() != -1 || e.s.PhysicalRev() != 0 {
		t.Fatalf("rev %d compact %d physical %d", e.s.Rev(), e.s.CompactRev(), e.s.PhysicalRev())
	}
	resp := e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	wantMsg(t, "empty range", resp, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 1}})
}

func TestPutRevisionsVersions(t *testing.T) {
	e := newEnv(t)
	if r := e.put("a", "1").Header.Revision; r != 2 {
		t.Fatalf("first put at %d, want 2", r)
	}
	wantMsg(t, "a", e.get("a", 0), kv("a", "1", 2, 2, 1))
	e.put("a", "2")
	wantMsg(t, "a", e.get("a", 0), kv("a", "2", 2, 3, 2))
	e.put("b", "x")
	wantMsg(t, "b", e.get("b", 0), kv("b", "x", 4, 4, 1))
	d := e.del("a", "")
	wantMsg(t, "delete", d, &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: 5}, Deleted: 1})
	if got := e.get("a", 0); got != nil {
		t.Fatalf("deleted key reads %v", got)
	}
	e.put("a", "3")
	wantMsg(t, "recreated", e.get("a", 0), kv("a", "3", 6, 6, 1))
	// Past reads see each version.
	wantMsg(t, "a@2", e.get("a", 2), kv("a", "1", 2, 2, 1))
	wantMsg(t, "a@4", e.get("a", 4), kv("a", "2", 2, 3, 2))
	if got := e.get("a", 5); got != nil {
		t.Fatalf("a@5 = %v, want none", got)
	}
	if got := e.get("a", 1); got != nil {
		t.Fatalf("a@1 = %v, want none", got)
	}
	if e.s.Rev() != 6 {
		t.Fatalf("Rev %d", e.s.Rev())
	}
}

func TestDeleteNothingKeepsRevision(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	d := e.del("b", "")
	wantMsg(t, "delete absent", d, &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: 2}})
	d = e.del("x", "z")
	wantMsg(t, "delete empty range", d, &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: 2}})
	if e.s.Rev() != 2 || e.put("c", "").Header.Revision != 3 {
		t.Fatal("revision moved")
	}
}

func TestRangeForms(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{"a", "a/1", "a/2", "b", "c", "c\x00", "\xff"} {
		e.put(k, "v"+k)
	}
	e.del("c", "") // history that a current read must not see
	cases := []struct {
		key, end string
		want     []string
	}{
		{"a", "", []string{"a"}},
		{"a/", "", nil},
		{"a", "b", []string{"a", "a/1", "a/2"}},
		{"a/", "a0", []string{"a/1", "a/2"}}, // prefix a/
		{"b", "\x00", []string{"b", "c\x00", "\xff"}},
		{"\x00", "\x00", []string{"a", "a/1", "a/2", "b", "c\x00", "\xff"}},
		{"c", "c\x00", nil},
		{"c", "c\x01", []string{"c\x00"}},
		{"b", "a", nil}, // end below key
	}
	for _, c := range cases {
		req := &pb.RangeRequest{Key: []byte(c.key), RangeEnd: bytesOrNil(c.end)}
		resp := e.mustRange(req)
		if got := keysOf(resp.Kvs); !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("[%q, %q) = %q, want %q", c.key, c.end, got, c.want)
		}
		if resp.Count != int64(len(c.want)) {
			t.Errorf("[%q, %q) count %d", c.key, c.end, resp.Count)
		}
		// The revision index answers the same at the current revision.
		past, err := executeRange(e.eng, req, e.s.Rev(), e.s.Rev(), true)
		if err != nil {
			t.Fatal(err)
		}
		wantMsg(t, fmt.Sprintf("[%q, %q) from the index", c.key, c.end), past, resp)
	}
	// The same at a past revision: before the delete of c.
	resp := e.mustRange(&pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte{0}, Revision: e.s.Rev() - 1})
	if got := keysOf(resp.Kvs); !slices.Equal(got, []string{"b", "c", "c\x00", "\xff"}) {
		t.Errorf("past from-key = %q", got)
	}
	if resp.Header.Revision != e.s.Rev() {
		t.Errorf("past read header %d, want current %d", resp.Header.Revision, e.s.Rev())
	}
}

func TestRangeLimitMoreCount(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		e.put(k, k)
	}
	all := func(limit int64, rev int64) *pb.RangeResponse {
		return e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: limit, Revision: rev})
	}
	for _, rev := range []int64{0, 4} { // 4: past revision, d absent
		n := int64(4)
		if rev == 4 {
			n = 3
		}
		for _, c := range []struct {
			limit int64
			kvs   int
			more  bool
		}{{0, int(n), false}, {1, 1, true}, {n - 1, int(n - 1), true}, {n, int(n), false}, {n + 5, int(n), false}, {-1, int(n), false}} {
			r := all(c.limit, rev)
			if len(r.Kvs) != c.kvs || r.More != c.more || r.Count != n {
				t.Errorf("rev %d limit %d: %d kvs more %v count %d, want %d %v %d", rev, c.limit, len(r.Kvs), r.More, r.Count, c.kvs, c.more, n)
			}
		}
	}
}

func TestRangeSort(t *testing.T) {
	e := newEnv(t)
	// a: version 3, created 2; b: version 1, created 3; c: version 2, created 4.
	e.put("a", "z")
	e.put("b", "y")
	e.put("c", "x")
	e.put("a", "w")
	e.put("c", "v")
	e.put("a", "u")
	cases := []struct {
		target pb.RangeRequest_SortTarget
		order  pb.RangeRequest_SortOrder
		want   string
	}{
		{pb.RangeRequest_KEY, pb.RangeRequest_NONE, "abc"},
		{pb.RangeRequest_KEY, pb.RangeRequest_ASCEND, "abc"},
		{pb.RangeRequest_KEY, pb.RangeRequest_DESCEND, "cba"},
		{pb.RangeRequest_VERSION, pb.RangeRequest_NONE, "bca"}, // NONE + target: ascending
		{pb.RangeRequest_VERSION, pb.RangeRequest_ASCEND, "bca"},
		{pb.RangeRequest_VERSION, pb.RangeRequest_DESCEND, "acb"},
		{pb.RangeRequest_CREATE, pb.RangeRequest_DESCEND, "cba"},
		{pb.RangeRequest_MOD, pb.RangeRequest_ASCEND, "bca"},
		{pb.RangeRequest_MOD, pb.RangeRequest_DESCEND, "acb"},
		{pb.RangeRequest_VALUE, pb.RangeRequest_ASCEND, "acb"},
		{pb.RangeRequest_VALUE, pb.RangeRequest_DESCEND, "bca"},
	}
	for _, c := range cases {
		for _, limit := range []int64{0, 2} {
			r := e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortTarget: c.target, SortOrder: c.order, Limit: limit})
			got := ""
			for _, kv := range r.Kvs {
				got += string(kv.Key)
			}
			want := c.want
			if limit > 0 {
				want = want[:limit]
			}
			if got != want || r.More != (limit > 0) || r.Count != 3 {
				t.Errorf("%v %v limit %d: %q more %v count %d, want %q", c.target, c.order, limit, got, r.More, r.Count, want)
			}
		}
	}
	for _, req := range []*pb.RangeRequest{
		{Key: []byte("a"), SortOrder: 3},
		{Key: []byte("a"), SortTarget: 5},
		{Key: []byte("a"), SortOrder: -1},
	} {
		_, err := e.rng(req)
		wantErr(t, "bad sort", err, rpctypes.ErrGRPCInvalidSortOption)
	}
}

func TestRangeKeysOnlyCountOnly(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	if _, err := e.putReq(&pb.PutRequest{Key: []byte("b"), Value: []byte("2"), Lease: 7}); err != nil {
		t.Fatal(err)
	}
	e.put("z", "") // 4: so that revision 3 is a past read
	for _, rev := range []int64{0, 3} {
		r := e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true, Revision: rev})
		want := []*mvccpb.KeyValue{kv("a", "", 2, 2, 1), kv("b", "", 3, 3, 1)} // no lease
		wantMsg(t, "keys only", r, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Kvs: want, Count: 2})
		// Sorting by value reads the values, and keeps the lease.
		r = e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true, SortTarget: pb.RangeRequest_VALUE, Revision: rev})
		want[1].Lease = 7
		wantMsg(t, "keys only by value", r, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Kvs: want, Count: 2})
		r = e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), CountOnly: true, Limit: 1, MinModRevision: 3, Revision: rev})
		wantMsg(t, "count only", r, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 4}, Count: 2})
	}
}

func TestRangeRevisionFilters(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{"a", "b", "c", "d"} { // revisions 2..5
		e.put(k, k)
	}
	e.put("a", "a2") // 6: a created 2, mod 6
	cases := []struct {
		req  *pb.RangeRequest
		want string
		more bool
	}{
		{&pb.RangeRequest{MinModRevision: 4}, "acd", false},
		{&pb.RangeRequest{MaxModRevision: 4}, "bc", false},
		{&pb.RangeRequest{MinCreateRevision: 3, MaxCreateRevision: 4}, "bc", false},
		{&pb.RangeRequest{MaxCreateRevision: 2}, "a", false},
		{&pb.RangeRequest{MinModRevision: 4, Limit: 2}, "ac", true},
		{&pb.RangeRequest{MinModRevision: 4, Limit: 3}, "acd", false},
		{&pb.RangeRequest{MinModRevision: 3, SortTarget: pb.RangeRequest_MOD, SortOrder: pb.RangeRequest_DESCEND, Limit: 1}, "a", true},
	}
	for _, c := range cases {
		c.req.Key, c.req.RangeEnd = []byte("a"), []byte{0}
		r := e.mustRange(c.req)
		got := ""
		for _, kv := range r.Kvs {
			got += string(kv.Key)
		}
		if got != c.want || r.More != c.more || r.Count != 4 {
			t.Errorf("%v: %q more %v count %d, want %q %v (count ignores filters)", c.req, got, r.More, r.Count, c.want, c.more)
		}
	}
}

func TestRangeRevisionErrors(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1") // 2
	e.put("a", "2") // 3
	e.put("a", "3") // 4
	_, err := e.rng(&pb.RangeRequest{Key: []byte("a"), Revision: 5})
	wantErr(t, "future", err, ErrFutureRev)
	if kv := e.get("a", -3); string(kv.Value) != "3" {
		t.Fatalf("negative revision reads %v, want current", kv)
	}
	if _, err := e.compact(3); err != nil {
		t.Fatal(err)
	}
	_, err = e.rng(&pb.RangeRequest{Key: []byte("a"), Revision: 2})
	wantErr(t, "compacted", err, ErrCompacted)
	if kv := e.get("a", 3); string(kv.Value) != "2" {
		t.Fatalf("read at the compacted revision: %v", kv)
	}
	_, err = e.rng(&pb.RangeRequest{Key: []byte{}})
	wantErr(t, "empty key", err, rpctypes.ErrGRPCEmptyKey)
}

func TestCompactErrors(t *testing.T) {
	e := newEnv(t)
	// etcd starts with compacted revision -1: 0 is a valid first compaction.
	resp, err := e.compact(0)
	if err != nil {
		t.Fatal(err)
	}
	wantMsg(t, "compact 0", resp, &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: 1}})
	_, err = e.compact(0)
	wantErr(t, "compact 0 again", err, ErrCompacted)
	_, err = e.compact(2)
	wantErr(t, "compact future", err, ErrFutureRev)
	e.put("a", "1")
	e.put("a", "2")
	if _, err := e.compact(3); err != nil {
		t.Fatal(err)
	}
	_, err = e.compact(2)
	wantErr(t, "compact below", err, ErrCompacted)
	_, err = e.compact(3)
	wantErr(t, "compact same", err, ErrCompacted)
	if e.s.CompactRev() != 3 || e.s.Rev() != 3 {
		t.Fatalf("compact %d rev %d", e.s.CompactRev(), e.s.Rev())
	}
	s2, err := Open(e.eng, Options{})
	if err != nil || s2.CompactRev() != 3 || s2.Rev() != 3 {
		t.Fatalf("reopened: %v %d %d", err, s2.CompactRev(), s2.Rev())
	}
}

func TestPutOptions(t *testing.T) {
	e := newEnv(t)
	r, err := e.putReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), PrevKv: true})
	if err != nil || r.PrevKv != nil {
		t.Fatalf("prev of new key: %v %v", r, err)
	}
	if _, err := e.putReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("2"), Lease: 5}); err != nil {
		t.Fatal(err)
	}
	r, err = e.putReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("3"), PrevKv: true, IgnoreLease: true})
	if err != nil {
		t.Fatal(err)
	}
	prev := kv("a", "2", 2, 3, 2)
	prev.Lease = 5
	wantMsg(t, "put prev", r, &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 4}, PrevKv: prev})
	want := kv("a", "3", 2, 4, 3)
	want.Lease = 5
	wantMsg(t, "ignore_lease kept the lease", e.get("a", 0), want)
	if _, err := e.putReq(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true}); err != nil {
		t.Fatal(err)
	}
	want = kv("a", "3", 2, 5, 4) // lease 0: the put did not ignore it
	wantMsg(t, "ignore_value kept the value", e.get("a", 0), want)

	for _, c := range []struct {
		req  *pb.PutRequest
		want error
	}{
		{&pb.PutRequest{Key: []byte("b"), IgnoreValue: true}, ErrKeyNotFound},
		{&pb.PutRequest{Key: []byte("b"), IgnoreLease: true}, ErrKeyNotFound},
		{&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreValue: true}, rpctypes.ErrGRPCValueProvided},
		{&pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true}, rpctypes.ErrGRPCLeaseProvided},
		{&pb.PutRequest{Value: []byte("x")}, rpctypes.ErrGRPCEmptyKey},
	} {
		_, err := e.putReq(c.req)
		wantErr(t, fmt.Sprint(c.req), err, c.want)
	}
	if e.s.Rev() != 5 {
		t.Fatalf("failed puts moved the revision to %d", e.s.Rev())
	}
}

func TestLeaseExists(t *testing.T) {
	e := newEnvOn(t, newEnv(t).eng, Options{LeaseExists: func(id int64) bool { return id == 10 }})
	if _, err := e.putReq(&pb.PutRequest{Key: []byte("a"), Lease: 10}); err != nil {
		t.Fatal(err)
	}
	_, err := e.putReq(&pb.PutRequest{Key: []byte("a"), Lease: 11})
	wantErr(t, "unknown lease", err, ErrLeaseNotFound)
	_, err = e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 11)}})
	wantErr(t, "unknown lease in txn", err, ErrLeaseNotFound)
	if g := status.Convert(ToGRPCError(err)); g.Message() != "etcdserver: requested lease not found" {
		t.Fatalf("grpc error %v", g)
	}
}

func TestDeleteRangePrevKv(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	e.put("b", "2")
	e.put("c", "3")
	r, err := e.delReq(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	wantMsg(t, "delete prev", r, &pb.DeleteRangeResponse{
		Header:  &pb.ResponseHeader{Revision: 5},
		Deleted: 2,
		PrevKvs: []*mvccpb.KeyValue{kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)},
	})
	// Both deletes share revision 5, in key order.
	var evs []string
	if err := e.s.History(e.eng, 5, []byte("a"), []byte{0}, func(ev *mvccpb.Event) bool {
		evs = append(evs, fmt.Sprintf("%v %s %d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(evs, []string{"DELETE a 5", "DELETE b 5"}) {
		t.Fatalf("events %q", evs)
	}
	_, err = e.delReq(&pb.DeleteRangeRequest{})
	wantErr(t, "empty key", err, rpctypes.ErrGRPCEmptyKey)
}

func TestWriteSeesOwnWrites(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1") // 2
	w := e.s.Write(e.ob)
	r, err := w.Range(&pb.RangeRequest{Key: []byte("a")})
	if err != nil || r.Header.Revision != 2 {
		t.Fatalf("before writing: %v %v", r, err)
	}
	if _, err := w.Put(&pb.PutRequest{Key: []byte("b"), Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("3")}); err != nil {
		t.Fatal(err)
	}
	r, err = w.Range(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	wantMsg(t, "own writes", r, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 3}, Count: 2,
		Kvs: []*mvccpb.KeyValue{kv("a", "3", 2, 3, 2), kv("b", "2", 3, 3, 1)}})
	r, err = w.Range(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 2})
	if err != nil {
		t.Fatal(err)
	}
	wantMsg(t, "before the txn", r, &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 3}, Count: 1,
		Kvs: []*mvccpb.KeyValue{kv("a", "1", 2, 2, 1)}})
	_, err = w.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 4})
	wantErr(t, "future in txn", err, ErrFutureRev)
	w.End()
	// Not committed yet: the engine is still at 2, the batch at 3.
	if r := e.mustRange(&pb.RangeRequest{Key: []byte("a")}); r.Header.Revision != 2 {
		t.Fatalf("engine read before commit at %d", r.Header.Revision)
	}
	if r, _ := e.s.Range(e.ob, &pb.RangeRequest{Key: []byte("a")}); r.Header.Revision != 3 {
		t.Fatalf("batch read at %d", r.Header.Revision)
	}
	// A second transaction in the same batch gets the next revision.
	w = e.s.Write(e.ob)
	p, err := w.Put(&pb.PutRequest{Key: []byte("a"), Value: []byte("4")})
	w.End()
	if err != nil || p.Header.Revision != 4 {
		t.Fatalf("second txn in batch: %v %v", p, err)
	}
	e.commit()
	wantMsg(t, "after commit", e.get("a", 0), kv("a", "4", 2, 4, 3))
	wantMsg(t, "a@3", e.get("a", 3), kv("a", "3", 2, 3, 2))
}

func putOp(key, val string, lease int64) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: bytesOrNil(val), Lease: lease}}}
}

func delOp(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}}}
}

func rangeOp(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}}}
}

func txnOp(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmp(key string, target pb.Compare_CompareTarget, result pb.Compare_CompareResult, v any) *pb.Compare {
	c := &pb.Compare{Key: []byte(key), Target: target, Result: result}
	switch v := v.(type) {
	case string:
		c.TargetUnion = &pb.Compare_Value{Value: []byte(v)}
	case int64:
		switch target {
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: v}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: v}
		case pb.Compare_MOD:
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: v}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: v}
		}
	}
	return c
}

func TestTxnCompares(t *testing.T) {
	e := newEnv(t)
	e.put("a", "m") // 2
	e.put("b", "x") // 3
	e.put("a", "n") // 4: a version 2, create 2, mod 4
	C := func(c *pb.Compare, end string) *pb.Compare { c.RangeEnd = bytesOrNil(end); return c }
	cases := []struct {
		c    *pb.Compare
		want bool
	}{
		{cmp("a", pb.Compare_VALUE, pb.Compare_EQUAL, "n"), true},
		{cmp("a", pb.Compare_VALUE, pb.Compare_GREATER, "m"), true},
		{cmp("a", pb.Compare_VALUE, pb.Compare_LESS, "m"), false},
		{cmp("a", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, "n"), false},
		{cmp("a", pb.Compare_VERSION, pb.Compare_EQUAL, int64(2)), true},
		{cmp("a", pb.Compare_CREATE, pb.Compare_EQUAL, int64(2)), true},
		{cmp("a", pb.Compare_MOD, pb.Compare_GREATER, int64(3)), true},
		{cmp("a", pb.Compare_LEASE, pb.Compare_EQUAL, int64(0)), true},
		// Absent key: a zero KeyValue, except that VALUE always fails.
		{cmp("z", pb.Compare_VERSION, pb.Compare_EQUAL, int64(0)), true},
		{cmp("z", pb.Compare_CREATE, pb.Compare_LESS, int64(1)), true},
		{cmp("z", pb.Compare_VALUE, pb.Compare_EQUAL, ""), false},
		{cmp("z", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, "q"), false},
		// Ranges: every key must match.
		{C(cmp("a", pb.Compare_VERSION, pb.Compare_GREATER, int64(0)), "c"), true},
		{C(cmp("a", pb.Compare_VERSION, pb.Compare_EQUAL, int64(2)), "c"), false},
		{C(cmp("a", pb.Compare_VALUE, pb.Compare_GREATER, "a"), "\x00"), true},
		{C(cmp("c", pb.Compare_VALUE, pb.Compare_GREATER, "a"), "\x00"), false},
		{C(cmp("c", pb.Compare_MOD, pb.Compare_EQUAL, int64(0)), "\x00"), true},
		// A target union that does not match the target compares with 0.
		{cmp("a", pb.Compare_VERSION, pb.Compare_GREATER, "zzz"), true},
		{&pb.Compare{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}, true},
		// Unknown result: true.
		{cmp("a", pb.Compare_VERSION, 9, int64(100)), true},
	}
	for _, c := range cases {
		r, err := e.txn(&pb.TxnRequest{Compare: []*pb.Compare{c.c}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Succeeded != c.want {
			t.Errorf("%v: %v, want %v", c.c, r.Succeeded, c.want)
		}
		if r.Header.Revision != 4 {
			t.Errorf("empty txn moved revision to %d", r.Header.Revision)
		}
	}
}

func TestTxnOps(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1") // 2
	e.put("b", "2") // 3
	// Nested compares see the state before the txn, even after the outer
	// branch wrote: the nested compare on "c" sees it absent.
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{cmp("a", pb.Compare_VALUE, pb.Compare_EQUAL, "1")},
		Success: []*pb.RequestOp{
			putOp("c", "3", 0),
			rangeOp("a", "\x00"),
			txnOp(&pb.TxnRequest{
				Compare: []*pb.Compare{cmp("c", pb.Compare_VERSION, pb.Compare_EQUAL, int64(0))},
				Success: []*pb.RequestOp{delOp("a", ""), rangeOp("a", "\x00")},
				Failure: []*pb.RequestOp{putOp("x", "", 0)},
			}),
			delOp("zz", ""),
		},
		Failure: []*pb.RequestOp{putOp("f", "", 0)},
	}
	r, err := e.txn(req)
	if err != nil {
		t.Fatal(err)
	}
	h := func(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }
	want := &pb.TxnResponse{
		Header:    h(4),
		Succeeded: true,
		Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h(4)}}},
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: h(4), Count: 3,
				Kvs: []*mvccpb.KeyValue{kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1)}}}},
			{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{
				Header:    &pb.ResponseHeader{}, // etcd leaves nested headers empty
				Succeeded: true,
				Responses: []*pb.ResponseOp{
					{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: h(4), Deleted: 1}}},
					{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: h(4), Count: 2,
						Kvs: []*mvccpb.KeyValue{kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1)}}}},
				},
			}}},
			{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: h(4)}}},
		},
	}
	wantMsg(t, "txn", r, want)
	// Read-only and no-op transactions keep the revision; their headers
	// carry the current one.
	r, err = e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("a", ""), delOp("a", "")}})
	if err != nil || r.Header.Revision != 4 || e.s.Rev() != 4 {
		t.Fatalf("no-op txn: %v %v", r, err)
	}
	// A delete that finds nothing answers the old revision until the txn
	// changed something.
	r, err = e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("q1", ""), putOp("q", "", 0), delOp("zz", "")}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Responses[0].GetResponseDeleteRange().Header.Revision != 4 || r.Responses[2].GetResponseDeleteRange().Header.Revision != 5 || r.Header.Revision != 5 {
		t.Fatalf("delete headers: %s", text(r))
	}
}

func TestTxnChecks(t *testing.T) {
	e := newEnvOn(t, newEnv(t).eng, Options{LeaseExists: func(id int64) bool { return id < 100 }})
	e.put("a", "1") // 2
	e.put("a", "2") // 3
	if _, err := e.compact(2); err != nil {
		t.Fatal(err)
	}
	rng := func(rev int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: rev}}}
	}
	cases := []struct {
		name string
		req  *pb.TxnRequest
		want error
	}{
		{"future range", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0), rng(4)}}, ErrFutureRev},
		{"compacted range", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0), rng(1)}}, ErrCompacted},
		{"negative range below compaction", &pb.TxnRequest{Success: []*pb.RequestOp{rng(-1)}}, ErrCompacted},
		{"lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 100)}}, ErrLeaseNotFound},
		{"ignore value absent", &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), IgnoreValue: true}}}}}, ErrKeyNotFound},
		{"nested first error wins", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{rng(9)}}), rng(1)}}, ErrFutureRev},
		{"unchosen branch not checked", &pb.TxnRequest{Failure: []*pb.RequestOp{rng(9)}}, nil},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, rpctypes.ErrGRPCKeyNotFound},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, rpctypes.ErrGRPCEmptyKey},
		{"put twice", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0), putOp("b", "", 0)}}, rpctypes.ErrGRPCDuplicateKey},
		{"put and delete", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0), delOp("a", "c")}}, rpctypes.ErrGRPCDuplicateKey},
		{"delete then put", &pb.TxnRequest{Failure: []*pb.RequestOp{delOp("b", ""), putOp("b", "", 0)}}, rpctypes.ErrGRPCDuplicateKey},
		{"nested put, outer put", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0)}}), putOp("b", "", 0)}}, rpctypes.ErrGRPCDuplicateKey},
		{"nested then/else same key", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0)}, Failure: []*pb.RequestOp{putOp("b", "", 0)}})}}, nil},
		{"nested delete, outer put", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{delOp("b", "")}}), putOp("b", "", 0)}}, rpctypes.ErrGRPCDuplicateKey},
		{"earlier nested put, later nested delete", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "", 0)}}), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("b", "")}})}}, nil},
		{"from-key delete and put", &pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "\x00"), putOp("b", "", 0)}}, nil},
	}
	for _, c := range cases {
		rev := e.s.Rev()
		_, err := e.txn(c.req)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		wantErr(t, c.name, err, c.want)
		if e.s.Rev() != rev {
			t.Errorf("%s: failed txn moved the revision", c.name)
		}
	}
	if err := ValidateTxn(&pb.TxnRequest{Success: make([]*pb.RequestOp, 3)}, 2); err != rpctypes.ErrGRPCTooManyOps {
		t.Fatalf("too many ops: %v", err)
	}
	// Nested: 2 - 1 = 1 op left for the nested txn.
	nested := &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("a", ""), rangeOp("b", "")}})}}
	if err := ValidateTxn(nested, 2); err != rpctypes.ErrGRPCTooManyOps {
		t.Fatalf("too many nested ops: %v", err)
	}
}

func TestEscapedKeysOrder(t *testing.T) {
	e := newEnv(t)
	keys := []string{"a", "a\x00", "a\x00\x00", "a\x00\x01", "a\x01", "a\xff", "a\xff\x00", "b"}
	for i := len(keys) - 1; i >= 0; i-- {
		e.put(keys[i], keys[i])
	}
	e.put("a\x00", "again")
	for _, rev := range []int64{0, e.s.Rev() - 1} {
		r := e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: rev})
		if got := keysOf(r.Kvs); !slices.Equal(got, keys) {
			t.Fatalf("@%d: %q", rev, got)
		}
		r = e.mustRange(&pb.RangeRequest{Key: []byte("a\x00"), RangeEnd: []byte("a\x01"), Revision: rev})
		if got := keysOf(r.Kvs); !slices.Equal(got, keys[1:4]) {
			t.Fatalf("@%d [a\\0, a\\1): %q", rev, got)
		}
	}
	if got := e.get("a\x00", e.s.Rev()-1); string(got.Value) != "a\x00" {
		t.Fatalf("past single key with NUL: %v", got)
	}
}

func TestToGRPCError(t *testing.T) {
	for err, msg := range map[error]string{
		ErrCompacted:                  "etcdserver: mvcc: required revision has been compacted",
		ErrFutureRev:                  "etcdserver: mvcc: required revision is a future revision",
		ErrKeyNotFound:                "etcdserver: key not found",
		rpctypes.ErrGRPCDuplicateKey:  "etcdserver: duplicate key given in txn request",
		fmt.Errorf("disk on fire"):    "disk on fire",
		rpctypes.ErrGRPCEmptyKey:      "etcdserver: key is not provided",
		rpctypes.ErrGRPCValueProvided: "etcdserver: value is provided",
	} {
		if got := status.Convert(ToGRPCError(err)).Message(); got != msg {
			t.Errorf("%v: %q", err, got)
		}
	}
}

func TestTxnSkipRanges(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	req := &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("a", "\x00"), putOp("a", "1", 0), rangeOp("a", "\x00"), delOp("x", "")}}
	ra, err := a.txn(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.s.TxnSkipRanges(b.ob, req)
	b.commit()
	if err != nil {
		t.Fatal(err)
	}
	if rb.Responses[0].GetResponseRange().Header.Revision != 1 || rb.Responses[2].GetResponseRange().Header.Revision != 2 ||
		len(rb.Responses[2].GetResponseRange().Kvs) != 0 || rb.Header.Revision != 2 {
		t.Fatalf("skipped ranges: %s", text(rb))
	}
	rb.Responses[0], rb.Responses[2] = ra.Responses[0], ra.Responses[2]
	wantMsg(t, "writes as Txn", rb, ra)
	wantMsg(t, "state", b.mustRange(&pb.RangeRequest{Key: []byte("a")}), a.mustRange(&pb.RangeRequest{Key: []byte("a")}))
}

// etcd v3.7.3 accepts these transactions (its duplicate-key rule misses
// deletes with range_end "\x00") and then panics applying them: a put with
// ignore_value or ignore_lease of a key an earlier op deleted. The Store
// refuses them with ErrKeyNotFound before writing anything.
func TestTxnIgnoredPutOfDeletedKey(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	e.put("b", "2")
	ignore := func(key string, value, lease bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), IgnoreValue: value, IgnoreLease: lease}}}
	}
	for _, req := range []*pb.TxnRequest{
		{Success: []*pb.RequestOp{delOp("a", "\x00"), ignore("b", true, false)}},
		{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "\x00")}}), ignore("b", false, true)}},
		{Compare: []*pb.Compare{cmp("a", pb.Compare_VERSION, pb.Compare_EQUAL, int64(9))},
			Failure: []*pb.RequestOp{rangeOp("a", ""), delOp("b", "\x00"), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{ignore("b", true, true)}})}},
	} {
		if err := ValidateTxn(req, 128); err != nil {
			t.Fatalf("etcd accepts %s: %v", text(req), err)
		}
		_, err := e.txn(req)
		wantErr(t, text(req), err, ErrKeyNotFound)
		if e.s.Rev() != 3 || len(e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}).Kvs) != 2 {
			t.Fatalf("refused txn wrote")
		}
	}
	// Deleted, then put again, then put with ignore_value: fine (the
	// duplicate rule refuses it anyway unless the put is nested first).
	req := &pb.TxnRequest{Success: []*pb.RequestOp{ignore("b", true, false), delOp("a", "\x00")}}
	if _, err := e.txn(req); err != nil {
		t.Fatal(err)
	}
}
