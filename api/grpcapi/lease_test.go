package grpcapi

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/server"
)

func TestLease(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := ctxT(t)
	g, err := e.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 60 || g.ID == 0 {
		t.Fatalf("Grant: %+v", g)
	}
	if _, err := e.cli.Put(ctx, "leased", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := e.cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 60 || ka.ID != g.ID {
		t.Fatalf("KeepAliveOnce: %+v %v", ka, err)
	}
	checkHeader(t, ka.ResponseHeader)
	ttl, err := e.cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 60 || len(ttl.Keys) != 1 {
		t.Fatalf("TimeToLive: %+v %v", ttl, err)
	}
	ls, err := e.cli.Leases(ctx)
	if err != nil || len(ls.Leases) != 1 {
		t.Fatalf("Leases: %+v %v", ls, err)
	}

	// Unknown leases: TTL -1 from TimeToLive, TTL 0 from a keepalive
	// (clientv3 turns it into ErrLeaseNotFound), an error from Grant/Revoke.
	ttl, err = e.cli.TimeToLive(ctx, 999)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("TimeToLive of an unknown lease: %+v %v", ttl, err)
	}
	_, err = e.cli.KeepAliveOnce(ctx, 999)
	wantErr(t, err, rpctypes.ErrLeaseNotFound)
	_, err = e.cli.Revoke(ctx, 999)
	wantErr(t, err, rpctypes.ErrLeaseNotFound)
	lc := pb.NewLeaseClient(e.cli.ActiveConnection())
	_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(g.ID), TTL: 5})
	wantErr(t, rpctypes.Error(err), rpctypes.ErrLeaseExist)
	_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 1 << 40})
	wantErr(t, rpctypes.Error(err), rpctypes.ErrLeaseTTLTooLarge)

	if _, err := e.cli.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if resp, err := e.cli.Get(ctx, "leased"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key of a revoked lease: %+v %v", resp, err)
	}
}

func TestLeaseKeepAliveStream(t *testing.T) {
	e := newTestEnv(t, Options{LeaderCheckInterval: 20 * time.Millisecond})
	ctx := ctxT(t)
	g, err := e.cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	id := int64(g.ID)
	lc := pb.NewLeaseClient(e.cli.ActiveConnection())
	ka, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []int64{id, 4242, id} {
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: kid}); err != nil {
			t.Fatal(err)
		}
		resp, err := ka.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want := int64(30)
		if kid != id {
			want = 0
		}
		if resp.ID != kid || resp.TTL != want {
			t.Fatalf("keepalive of %d: %v", kid, resp)
		}
		checkHeader(t, resp.Header)
	}

	// Any other error ends the stream with etcd's error.
	e.b.failWith("LeaseRenew", server.ErrNoLeader)
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := ka.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("keepalive with a failing renew: %v", err)
	}
	e.b.failWith("LeaseRenew", nil)

	// A keepalive stream that requires a leader ends without one.
	ka, err = lc.LeaseKeepAlive(metadata.AppendToOutgoingContext(ctx,
		rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader))
	if err != nil {
		t.Fatal(err)
	}
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := ka.Recv(); err != nil {
		t.Fatal(err)
	}
	e.b.leader.Store(false)
	if _, err := ka.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("keepalive after the leader was lost: %v", err)
	}

	// Client cancel: codes.Canceled.
	e.b.leader.Store(true)
	cctx, cancel := context.WithCancel(ctx)
	ka, err = lc.LeaseKeepAlive(cctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := ka.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("canceled keepalive: %v", err)
	}
}
