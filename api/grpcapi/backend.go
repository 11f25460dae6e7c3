package grpcapi

import (
	"context"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/watch"
)

// Backend is the member behind the gRPC services (server.Server). Every
// response it returns carries a complete header (cluster_id, member_id,
// revision, raft_term). Errors are either gRPC status errors already
// (etcd's rpctypes.ErrGRPC* values, passed through as they are) or one of
// the sentinels that toGRPCError maps: server.Err*, mvcc's and lease's
// etcd sentinels, context errors.
type Backend interface {
	// KV. Requests arrive validated (see mvcc.Validate*) except for the
	// size and op-count limits, which the backend checks.
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)

	// Lease. LeaseRenew forwards to the leader when needed and returns
	// the TTL the lease was renewed to.
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	LeaseRenew(ctx context.Context, id int64) (ttl int64, err error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error)

	// WatchStream returns a new stream of the member's watch hub
	// (watch.Hub.NewStream), one per Watch call.
	WatchStream() *watch.Stream

	// Cluster.
	MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error)
	MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error)
	MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error)
	MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error)
	MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error)

	// Maintenance.
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
	Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error)
	Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error)
	Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error)
	HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error)
	MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error)
	// Backup returns a consistent backup of the member's state, complete
	// as it should be written to a file (etcd's layout: the data padded to
	// a multiple of 512 bytes, then its SHA-256), and its size in bytes.
	Backup(ctx context.Context) (rc io.ReadCloser, size int64, err error)

	// Header is a response header at the member's current revision, for
	// responses the backend does not build (watch, keepalive). The watch
	// stream copies it (the backend may share it) and uses its revision
	// for refusals and canceled responses; the revision should therefore
	// not be below the hub's.
	Header() *pb.ResponseHeader
	// HasLeader reports whether the member knows a leader (for clients
	// that set the "hasleader" metadata, clientv3.WithRequireLeader).
	HasLeader() bool
	// IsLearner reports whether the member is a learner, which serves only
	// Status, serializable Range and Snapshot (see learnerGuard).
	IsLearner() bool
}
