package lease

import etcdlease "go.etcd.io/etcd/server/v3/lease"

// The errors are etcd's own lease sentinels, returned unwrapped, so that
// errors.Is and etcd's gRPC error mapping (v3rpc: ErrLeaseNotFound →
// rpctypes.ErrGRPCLeaseNotFound "etcdserver: requested lease not found",
// ErrLeaseExists → "etcdserver: lease already exists", ErrLeaseTTLTooLarge
// → "etcdserver: too large lease TTL", ErrNotPrimary → forwarded to the
// leader) work unchanged. mvcc returns the same ErrLeaseNotFound.
var (
	// ErrNotPrimary: a leader-only call (Renew, TimeToLive) on a lessor
	// that is not promoted. The server forwards the request to the leader.
	ErrNotPrimary = etcdlease.ErrNotPrimary
	// ErrLeaseNotFound: no such lease (or id 0 at Grant, as in etcd).
	ErrLeaseNotFound = etcdlease.ErrLeaseNotFound
	// ErrLeaseExists: Grant of an id already granted.
	ErrLeaseExists = etcdlease.ErrLeaseExists
	// ErrLeaseTTLTooLarge: Grant with a TTL above MaxLeaseTTL.
	ErrLeaseTTLTooLarge = etcdlease.ErrLeaseTTLTooLarge
)

// MaxLeaseTTL is the largest TTL, in seconds, a lease may be granted with
// (etcd's lease.MaxLeaseTTL).
const MaxLeaseTTL = etcdlease.MaxLeaseTTL
