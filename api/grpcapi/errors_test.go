package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/server"
)

func TestToGRPCError(t *testing.T) {
	for _, c := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{server.ErrNoLeader, codes.Unavailable, "etcdserver: no leader"},
		{fmt.Errorf("x: %w", server.ErrLeaderLost), codes.Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"},
		{server.ErrTimeout, codes.Unavailable, "etcdserver: request timed out"},
		{server.ErrReadTimeout, codes.Unavailable, "etcdserver: request timed out"},
		{server.ErrRemoved, codes.Unavailable, "etcdserver: server stopped"},
		{server.ErrMemberExists, codes.FailedPrecondition, "etcdserver: member ID already exist"},
		{server.ErrMemberNotFound, codes.NotFound, "etcdserver: member not found"},
		{server.ErrBadMember, codes.InvalidArgument, "etcdserver: given member URLs are invalid"},
		{mvcc.ErrCompacted, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted"},
		{fmt.Errorf("read: %w", mvcc.ErrFutureRev), codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision"},
		{lease.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found"},
		{lease.ErrLeaseExists, codes.FailedPrecondition, "etcdserver: lease already exists"},
		{lease.ErrLeaseTTLTooLarge, codes.OutOfRange, "etcdserver: too large lease TTL"},
		{context.Canceled, codes.Canceled, "context canceled"},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "wait: context deadline exceeded"},
		{rpctypes.ErrGRPCEmptyKey, codes.InvalidArgument, "etcdserver: key is not provided"},
		{fmt.Errorf("wrapped: %w", rpctypes.ErrGRPCNoSpace), codes.ResourceExhausted, "etcdserver: mvcc: database space exceeded"},
		{errors.New("boom"), codes.Unknown, "boom"},
	} {
		s, ok := status.FromError(toGRPCError(c.err))
		if !ok || s.Code() != c.code || s.Message() != c.msg {
			t.Errorf("%v: got %v %q, want %v %q", c.err, s.Code(), s.Message(), c.code, c.msg)
		}
	}
	if toGRPCError(nil) != nil {
		t.Error("nil is not nil")
	}
}
