package recipes

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Services are the Lock and Election services of one member.
type Services struct {
	cli *clientv3.Client
}

// New returns the services, calling the gRPC API at target (host:port of
// this member's client port). The connection is made on first use.
func New(target string) (*Services, error) {
	// The client's own log is left out: it warns of every error it
	// returns (a lock on an unknown lease, an election without a leader),
	// which are the callers' answers, not the member's trouble.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{target}, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("recipes: client of %s: %w", target, err)
	}
	return &Services{cli: cli}, nil
}

// Register adds both services to gs.
func (s *Services) Register(gs *grpc.Server) {
	v3lockpb.RegisterLockServer(gs, lockServer{s: s})
	v3electionpb.RegisterElectionServer(gs, electionServer{s: s})
}

// Close closes the client.
func (s *Services) Close() error { return s.cli.Close() }

// session is a concurrency session on the caller's lease, or on a new
// lease of clientv3's default TTL (60 s) when lease is 0, as in etcd. The
// caller keeps its lease alive, not the session: it is orphaned at once.
func (s *Services) session(ctx context.Context, lease int64) (*concurrency.Session, error) {
	ss, err := concurrency.NewSession(s.cli, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	ss.Orphan()
	return ss, nil
}

var (
	errMissingLeader = status.Error(codes.InvalidArgument, `"leader" field must be provided`)
	errNoLeader      = status.Error(codes.NotFound, concurrency.ErrElectionNoLeader.Error())
	errNotLeader     = status.Error(codes.FailedPrecondition, concurrency.ErrElectionNotLeader.Error())
)

// toStatus turns what the client returned into the gRPC status the
// server answered it with, so that the caller sees etcd's code and message
// (the client hands them over as rpctypes errors, which gRPC would send as
// Unknown).
func toStatus(err error) error {
	var ee rpctypes.EtcdError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return status.Error(ee.Code(), ee.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return err
}
