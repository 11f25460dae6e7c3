package grpcapi

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/server"
)

func TestKV(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := ctxT(t)
	rev := e.put("a", "1")
	resp, err := e.cli.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" || resp.Header.Revision != rev {
		t.Fatalf("Get: %v", resp)
	}
	checkHeader(t, resp.Header)

	tresp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("a"), "=", "1")).
		Then(clientv3.OpPut("b", "2"), clientv3.OpGet("a")).
		Commit()
	if err != nil || !tresp.Succeeded || tresp.Header.Revision != rev+1 {
		t.Fatalf("Txn: %v %v", tresp, err)
	}
	dresp, err := e.cli.Delete(ctx, "", clientv3.WithFromKey())
	if err != nil || dresp.Deleted != 2 {
		t.Fatalf("Delete: %v %v", dresp, err)
	}
	if _, err := e.cli.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
}

// The errors clientv3 sees are etcd's, whether they come from the
// validation here or from the backend.
func TestKVErrors(t *testing.T) {
	e := newTestEnv(t, Options{MaxTxnOps: 4})
	ctx := ctxT(t)
	for i := range 5 {
		e.put("k", fmt.Sprint(i))
	}
	if _, err := e.cli.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	ops := func(n int) []clientv3.Op {
		var ops []clientv3.Op
		for i := range n {
			ops = append(ops, clientv3.OpPut(fmt.Sprint("t", i), "v"))
		}
		return ops
	}

	_, err := e.cli.Put(ctx, "", "v")
	wantErr(t, err, rpctypes.ErrEmptyKey)
	_, err = e.cli.Get(ctx, "")
	wantErr(t, err, rpctypes.ErrEmptyKey)
	_, err = e.cli.Delete(ctx, "")
	wantErr(t, err, rpctypes.ErrEmptyKey)
	_, err = e.cli.Txn(ctx).Then(ops(5)...).Commit()
	wantErr(t, err, rpctypes.ErrTooManyOps)
	_, err = e.cli.Txn(ctx).Then(ops(4)...).Commit()
	wantErr(t, err, nil)
	_, err = e.cli.Txn(ctx).Then(clientv3.OpPut("x", "1"), clientv3.OpPut("x", "2")).Commit()
	wantErr(t, err, rpctypes.ErrDuplicateKey)
	_, err = e.cli.Put(ctx, "k", "v", clientv3.WithIgnoreLease(), clientv3.WithLease(5))
	wantErr(t, err, rpctypes.ErrLeaseProvided)
	_, err = e.cli.Put(ctx, "k", "v", clientv3.WithIgnoreValue())
	wantErr(t, err, rpctypes.ErrValueProvided)
	_, err = e.cli.Put(ctx, "absent", "", clientv3.WithIgnoreValue())
	wantErr(t, err, rpctypes.ErrKeyNotFound)
	_, err = e.cli.Put(ctx, "k", "v", clientv3.WithLease(12345))
	wantErr(t, err, rpctypes.ErrLeaseNotFound)
	_, err = e.cli.Get(ctx, "k", clientv3.WithRev(2))
	wantErr(t, err, rpctypes.ErrCompacted)
	_, err = e.cli.Get(ctx, "k", clientv3.WithRev(100))
	wantErr(t, err, rpctypes.ErrFutureRev)
	_, err = e.cli.Compact(ctx, 2)
	wantErr(t, err, rpctypes.ErrCompacted)

	// Backend errors, bare and wrapped, as clientv3 reports them.
	for _, c := range []struct {
		err, want error
	}{
		{server.ErrNoLeader, rpctypes.ErrNoLeader},
		{fmt.Errorf("proposal: %w", server.ErrLeaderLost), rpctypes.ErrTimeoutDueToLeaderFail},
		{server.ErrTimeout, rpctypes.ErrTimeout},
		{server.ErrReadTimeout, rpctypes.ErrTimeout},
		{server.ErrStopped, rpctypes.ErrStopped},
		{rpctypes.ErrGRPCRequestTooLarge, rpctypes.ErrRequestTooLarge},
		{fmt.Errorf("wrapped: %w", rpctypes.ErrGRPCNoSpace), rpctypes.ErrNoSpace},
	} {
		e.b.failWith("Put", c.err) // Put: clientv3 retries an unavailable Range
		_, err := e.cli.Put(ctx, "k", "v")
		wantErr(t, err, c.want)
	}
	e.b.failWith("Put", errors.New("disk on fire"))
	_, err = e.cli.Put(ctx, "k", "v")
	if s, _ := status.FromError(err); s.Code() != codes.Unknown || s.Message() != "disk on fire" {
		t.Errorf("unknown error: %v", err)
	}
}

func TestRangeStream(t *testing.T) {
	e := newTestEnv(t, Options{MaxRequestBytes: 1024})
	ctx := ctxT(t)
	val := strings.Repeat("v", 300)
	for i := range 20 {
		e.put(fmt.Sprintf("k%02d", i), val)
	}
	rs, err := pb.NewKVClient(e.cli.ActiveConnection()).RangeStream(ctx, &pb.RangeRequest{
		Key: []byte("k"), RangeEnd: []byte("l"), Limit: 15,
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var chunks int
	var last *pb.RangeResponse
	for {
		resp, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		last = resp.GetRangeResponse()
		for _, kv := range last.GetKvs() {
			keys = append(keys, string(kv.Key))
		}
	}
	if len(keys) != 15 || keys[0] != "k00" || keys[14] != "k14" {
		t.Fatalf("keys %v", keys)
	}
	if chunks < 3 || !last.GetMore() || last.GetCount() != 20 || last.GetHeader().GetRevision() != 21 {
		t.Fatalf("%d chunks, last %v", chunks, last)
	}
	rs, err = pb.NewKVClient(e.cli.ActiveConnection()).RangeStream(ctx, &pb.RangeRequest{
		Key: []byte("k"), SortOrder: pb.RangeRequest_DESCEND,
	})
	if err == nil {
		_, err = rs.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("descending RangeStream: %v", err)
	}
}
