package grpcapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcderrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/server"
)

// grpcErrors is the one table from the errors the backend returns to the
// status errors etcd sends for them. clientv3 recognises an etcd error by
// its exact message (rpctypes.Error), so the right-hand sides are always
// rpctypes values. Entries are matched with errors.Is, in order.
var grpcErrors = []struct{ err, grpc error }{
	// metcd's server.
	{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{server.ErrLeaderLost, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{server.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrReadTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrStopped, rpctypes.ErrGRPCStopped},
	{server.ErrRemoved, rpctypes.ErrGRPCStopped},
	{server.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{server.ErrPeerURLExists, rpctypes.ErrGRPCPeerURLExist},
	{server.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{server.ErrIDRemoved, rpctypes.ErrGRPCMemberNotFound},
	{server.ErrNotEnoughStartedMembers, rpctypes.ErrGRPCMemberNotEnoughStarted},
	{server.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{server.ErrBadMember, rpctypes.ErrGRPCMemberBadURLs},
	{server.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},

	// etcd's sentinels, which mvcc and lease return as they are.
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{lease.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{lease.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{lease.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},

	// The rest of etcd's server errors (v3rpc's toGRPCErrorMap), for a
	// backend that borrows them.
	{etcderrors.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{etcderrors.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{etcderrors.ErrTooManyRequests, rpctypes.ErrTooManyRequests},
	{etcderrors.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{etcderrors.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{etcderrors.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{etcderrors.ErrCanceled, rpctypes.ErrGRPCCanceled},
	{etcderrors.ErrStopped, rpctypes.ErrGRPCStopped},
	{etcderrors.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{etcderrors.ErrTimeoutDueToLeaderFail, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{etcderrors.ErrTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost},
	{etcderrors.ErrTimeoutWaitAppliedIndex, rpctypes.ErrGRPCTimeoutWaitAppliedIndex},
	{etcderrors.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{etcderrors.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{etcderrors.ErrBadLeaderTransferee, rpctypes.ErrGRPCBadLeaderTransferee},
	{etcderrors.ErrNotEnoughStartedMembers, rpctypes.ErrMemberNotEnoughStarted},
	{etcderrors.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
}

// toGRPCError converts an error of the backend to the status error the
// client receives:
//
//   - context errors become codes.Canceled or codes.DeadlineExceeded with
//     the context's message (etcd returns them raw and grpc-go converts
//     them the same way);
//   - the sentinels of grpcErrors become their rpctypes.ErrGRPC* value,
//     also when wrapped;
//   - status errors (also wrapped) are returned as the bare status, so
//     that a wrapping message does not hide the text clientv3 matches;
//   - anything else is codes.Unknown with the error's text, as in etcd.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, e := range grpcErrors {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// streamError is what a streaming handler returns when its context ends:
// the cause when the server ended it (no leader, a status error), else the
// context error converted as for any request.
func streamError(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	if _, ok := status.FromError(cause); ok {
		return cause
	}
	return toGRPCError(cause)
}
