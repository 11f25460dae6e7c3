package grpcapi

import (
	"context"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestOuterInterceptorsSeeRefusals: interceptors given in Options run
// outside the server's own, so they see a request refused for want of a
// leader, as etcd's metrics interceptors count it.
func TestOuterInterceptorsSeeRefusals(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]error{}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		mu.Lock()
		seen[info.FullMethod] = err
		mu.Unlock()
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		mu.Lock()
		seen[info.FullMethod] = err
		mu.Unlock()
		return err
	}
	e := newTestEnv(t, Options{
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{unary},
		StreamInterceptors: []grpc.StreamServerInterceptor{stream},
	})
	e.b.leader.Store(false)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
	if _, err := pb.NewKVClient(e.cli.ActiveConnection()).Put(ctx, &pb.PutRequest{Key: []byte("k")}); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("Put requiring a leader, with none: %v", err)
	}
	ws, err := pb.NewWatchClient(e.cli.ActiveConnection()).Watch(ctx)
	if err == nil {
		_, err = ws.Recv()
	}
	if rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("Watch requiring a leader, with none: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range []string{"/etcdserverpb.KV/Put", "/etcdserverpb.Watch/Watch"} {
		if err, ok := seen[m]; !ok || rpctypes.Error(err) != rpctypes.ErrNoLeader {
			t.Errorf("%s: the outer interceptor saw %v (seen %v), want the refusal", m, err, ok)
		}
	}
}
