// Package grpcapi is metcd's etcd v3 gRPC API: the KV, Watch, Lease,
// Cluster, Maintenance and (disabled) Auth services of go.etcd.io/etcd/api/v3/etcdserverpb,
// plus the standard gRPC health service, over a small Backend interface
// (server.Server implements it). clientv3 and etcdctl talk to it as to an
// etcd v3.7 member. Serve (or Mux) puts it on the client port next to the
// HTTP API.
//
// # Mapping of etcd's v3rpc
//
//   - kv.go (v3rpc/key.go): requests are validated with mvcc.Validate*,
//     which are etcd's checkRangeRequest, checkPutRequest,
//     checkDeleteRequest and checkTxnRequest/checkIntervals with the same
//     rpctypes errors, then passed to the backend. RangeStream is served
//     from one Range, sent in chunks.
//   - watch.go (v3rpc/watch.go): one Watch call is one watch.Stream of
//     the backend's hub, whose queue holds the responses of all its
//     watchers and the call's own in order. The handler's goroutine takes
//     from it, fills the headers and is the only sender; a request loop
//     creates and cancels watchers with the stream's watch ids (etcd's:
//     automatic ids count from 0 per stream, a client's id is kept, a
//     duplicate is refused). There is no goroutine or channel per watcher.
//     Responses of watchers that asked for fragment are split with
//     watch.Fragments at MaxRequestBytes plus gRPC's 512 KiB allowance,
//     the size etcd 3.7 uses.
//   - lease.go (v3rpc/lease.go): an unknown lease answers TTL -1 to
//     TimeToLive and TTL 0 to a keepalive, not an error, as in etcd.
//   - cluster.go, maintenance.go: pass-through. Snapshot streams
//     Backend.Backup in etcd's framing.
//   - auth.go (v3rpc/auth.go): the Auth service of an etcd with auth
//     disabled and no users or roles, metcd's permanent state, so that
//     clients configured with a user name connect as they do to such an
//     etcd.
//   - errors.go (v3rpc/util.go togRPCError): one table from metcd's and
//     etcd's sentinels to rpctypes.ErrGRPC* errors, whose messages
//     clientv3 matches exactly.
//   - server.go (v3rpc/grpc.go, interceptor.go, embed): etcd's message
//     size limits, keepalive defaults, what a learner may serve, and the
//     "hasleader" metadata of clientv3.WithRequireLeader.
//   - serve.go (embed/serve.go): gRPC and HTTP on one listener with cmux.
//
// # Differences from etcd
//
//   - No auth: AuthEnable, UserAdd and RoleAdd answer Unimplemented.
//     Downgrade answers Unimplemented. The Lock and Election services
//     are package recipes'; request metrics are the caller's interceptors.
//   - The "hasleader" streams are watched per stream, not by one loop.
//   - A created response's header revision is the hub's revision when the
//     watcher was made (watch.Watcher.CreatedRev), so a watcher from
//     revision 0 gets only events above it; etcd reads its store's
//     revision just after, which can rarely be one write ahead.
//   - On the shared port, HTTP/2 connections go to gRPC only when their
//     first request is gRPC (etcd sends all HTTP/2 to gRPC), so that h2c
//     reaches the HTTP API.
//   - RangeStream reads the whole range at once (etcd reads chunk by
//     chunk), so it saves no server memory.
package grpcapi
