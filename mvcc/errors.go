package mvcc

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcderrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
	"go.etcd.io/etcd/server/v3/lease"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The errors this package returns for etcd semantics are etcd's own
// sentinels, returned unwrapped (etcd's gRPC layer maps them by identity):
//
//   - ErrCompacted, ErrFutureRev (etcd's storage/mvcc): a read or
//     compaction at a revision that was compacted or is in the future;
//   - ErrKeyNotFound (etcdserver/errors): a Put with ignore_value or
//     ignore_lease on an absent key;
//   - ErrLeaseNotFound (lease): a Put naming a lease Options.LeaseExists
//     denies;
//   - request validation errors, which etcd's gRPC layer returns before a
//     request reaches the server, are the rpctypes.ErrGRPC* status errors
//     themselves (see Validate*).
//
// Any other error comes from the engine (or reports data this package did
// not write) and is returned wrapped.
var (
	ErrCompacted     = etcdmvcc.ErrCompacted
	ErrFutureRev     = etcdmvcc.ErrFutureRev
	ErrKeyNotFound   = etcderrors.ErrKeyNotFound
	ErrLeaseNotFound = lease.ErrLeaseNotFound
)

var grpcErrors = map[error]error{
	ErrCompacted:     rpctypes.ErrGRPCCompacted,
	ErrFutureRev:     rpctypes.ErrGRPCFutureRev,
	ErrKeyNotFound:   rpctypes.ErrGRPCKeyNotFound,
	ErrLeaseNotFound: rpctypes.ErrGRPCLeaseNotFound,
}

// ToGRPCError maps an error returned by this package to the status error
// etcd's gRPC server sends for it: the sentinels above to their
// rpctypes.ErrGRPC* counterparts, status errors unchanged, context errors
// unchanged, anything else to codes.Unknown with the error's text.
func ToGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if g, ok := grpcErrors[err]; ok {
		return g
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}
