package grpcapi

import (
	"context"
	"math"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// Defaults, as etcd's (embed.Config and v3rpc).
const (
	DefaultMaxRequestBytes     = 1536 * 1024 // --max-request-bytes
	DefaultMaxTxnOps           = 128         // --max-txn-ops
	DefaultKeepAliveMinTime    = 5 * time.Second
	DefaultKeepAliveInterval   = 2 * time.Hour
	DefaultKeepAliveTimeout    = 20 * time.Second
	DefaultLeaderCheckInterval = time.Second // etcd's default election timeout
	// DefaultProgressNotifyInterval and MinProgressNotifyInterval are
	// etcd's --watch-progress-notify-interval default and floor.
	DefaultProgressNotifyInterval = 10 * time.Minute
	MinProgressNotifyInterval     = 100 * time.Millisecond
	// DefaultStreamWorkers is how many requests at once long-lived
	// goroutines serve (Options.StreamWorkers); more than the 100 clients
	// of the benchmarks, a few MB of stacks at most.
	DefaultStreamWorkers = 256

	// grpcOverheadBytes is what etcd adds to --max-request-bytes for gRPC's
	// receive limit, so that the backend, not gRPC, refuses a request that
	// is slightly too large, with etcd's error.
	grpcOverheadBytes = 512 * 1024
	// maxNoLeaderChecks is how many checks in a row without a leader close
	// the streams that require one (etcd's maxNoLeaderCnt).
	maxNoLeaderChecks = 3
)

// Options configure the gRPC server. Zero values mean etcd's defaults.
type Options struct {
	// MaxRequestBytes is etcd's --max-request-bytes. gRPC accepts messages
	// of up to MaxRequestBytes + 512 KiB (etcd's overhead allowance); the
	// backend enforces the limit itself. Watch responses of watchers that
	// asked for fragment are split at the same size, as etcd does.
	MaxRequestBytes int
	// MaxTxnOps is etcd's --max-txn-ops: the most compares, success ops or
	// failure ops a Txn may have.
	MaxTxnOps int
	// MaxConcurrentStreams per client connection (default math.MaxUint32).
	MaxConcurrentStreams uint32
	// KeepAliveMinTime is the shortest interval of client keepalive pings
	// the server tolerates; KeepAliveInterval and KeepAliveTimeout are the
	// server's own pings on idle connections (etcd's --grpc-keepalive-*).
	// A negative value disables the corresponding setting.
	KeepAliveMinTime  time.Duration
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
	// LeaderCheckInterval is how often streams opened with the "hasleader"
	// metadata (clientv3.WithRequireLeader) check for a leader; three
	// checks in a row without one end them with ErrGRPCNoLeader. etcd uses
	// its election timeout.
	LeaderCheckInterval time.Duration
	// ProgressNotifyInterval is etcd's --watch-progress-notify-interval:
	// each watch stream, on a clock of its own of this period plus up to a
	// tenth more at random (etcd's jitter, so that streams opened together
	// do not notify together), sends a progress notification to each of
	// its progress_notify watchers that got no events in the period.
	// Zero or negative means DefaultProgressNotifyInterval; less than
	// MinProgressNotifyInterval is raised to it, as etcd does.
	ProgressNotifyInterval time.Duration
	// StorageVersion is reported in every Snapshot response (etcd 3.6+
	// reports its storage schema version, e.g. "3.6.0"); empty leaves it
	// out, as etcd before 3.6.
	StorageVersion string
	// StreamWorkers is how many long-lived goroutines serve requests
	// (gRPC's NumStreamWorkers); a request that finds them all busy, as
	// behind long-lived watch streams, gets a goroutine of its own, which
	// is how gRPC serves every request without them. A fresh goroutine
	// grows its stack on each request (decoding it, then reading the
	// engine): 19-25 % of a member's CPU under serializable ranges. A
	// worker's stack has grown already. Zero means DefaultStreamWorkers; a
	// negative value, none.
	StreamWorkers int
	// ServerOptions are appended to the server's own (credentials, stats
	// handlers, a codec). Interceptors given here run inside the server's
	// own; use UnaryInterceptors and StreamInterceptors for ones that must
	// see every request.
	ServerOptions []grpc.ServerOption
	// UnaryInterceptors and StreamInterceptors run outside the server's
	// own, in order, so that they see the requests the server refuses
	// before its handlers (a request that requires a leader when there is
	// none), as etcd's metrics interceptors do.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
}

func (o Options) withDefaults() Options {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = math.MaxUint32
	}
	if o.KeepAliveMinTime == 0 {
		o.KeepAliveMinTime = DefaultKeepAliveMinTime
	}
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if o.KeepAliveTimeout == 0 {
		o.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if o.LeaderCheckInterval <= 0 {
		o.LeaderCheckInterval = DefaultLeaderCheckInterval
	}
	if o.StreamWorkers == 0 {
		o.StreamWorkers = DefaultStreamWorkers
	}
	if o.ProgressNotifyInterval <= 0 {
		o.ProgressNotifyInterval = DefaultProgressNotifyInterval
	}
	o.ProgressNotifyInterval = max(o.ProgressNotifyInterval, MinProgressNotifyInterval)
	return o
}

// NewServer returns a gRPC server with etcd's KV, Watch, Lease, Cluster
// and Maintenance services over b, and the standard health service
// (serving "" as SERVING). Serve it with Serve or grpc.Server.Serve.
func NewServer(b Backend, opts Options) *grpc.Server {
	opts = opts.withDefaults()
	lg := leaderGuard{b: b, interval: opts.LeaderCheckInterval}
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		grpc.ChainUnaryInterceptor(append(slices.Clip(opts.UnaryInterceptors), learnerGuard{b}.unary, lg.unary)...),
		grpc.ChainStreamInterceptor(append(slices.Clip(opts.StreamInterceptors), learnerGuard{b}.stream, lg.stream)...),
	}
	if opts.StreamWorkers > 0 {
		gopts = append(gopts, grpc.NumStreamWorkers(uint32(opts.StreamWorkers)))
	}
	if opts.KeepAliveMinTime > 0 {
		gopts = append(gopts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             opts.KeepAliveMinTime,
			PermitWithoutStream: false,
		}))
	}
	if opts.KeepAliveInterval > 0 && opts.KeepAliveTimeout > 0 {
		gopts = append(gopts, grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    opts.KeepAliveInterval,
			Timeout: opts.KeepAliveTimeout,
		}))
	}
	gs := grpc.NewServer(append(gopts, opts.ServerOptions...)...)

	pb.RegisterKVServer(gs, &kvServer{b: b, maxTxnOps: opts.MaxTxnOps, chunkBytes: opts.MaxRequestBytes})
	pb.RegisterWatchServer(gs, &watchServer{b: b, fragmentBytes: opts.MaxRequestBytes + grpcOverheadBytes, progressInterval: opts.ProgressNotifyInterval})
	pb.RegisterLeaseServer(gs, &leaseServer{b: b})
	pb.RegisterClusterServer(gs, &clusterServer{b: b})
	pb.RegisterMaintenanceServer(gs, &maintenanceServer{b: b, storageVersion: opts.StorageVersion})
	pb.RegisterAuthServer(gs, &authServer{b: b})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	return gs
}

// learnerGuard refuses on a learner what etcd's interceptors refuse there,
// with ErrGRPCNotSupportedForLearner: every unary call but Status and a
// serializable Range, and every stream but Snapshot (etcd's
// isRPCSupportedForLearner). A learner takes no part in the quorum and may
// lag; a client that sends it a membership change or a watch is told so
// rather than served.
type learnerGuard struct{ b Backend }

const snapshotMethod = "/etcdserverpb.Maintenance/Snapshot"

func (g learnerGuard) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if g.b.IsLearner() {
		switch r := req.(type) {
		case *pb.StatusRequest:
		case *pb.RangeRequest:
			if !r.Serializable {
				return nil, rpctypes.ErrGRPCNotSupportedForLearner
			}
		default:
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
	}
	return handler(ctx, req)
}

func (g learnerGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != snapshotMethod && g.b.IsLearner() {
		return rpctypes.ErrGRPCNotSupportedForLearner
	}
	return handler(srv, ss)
}

// leaderGuard serves the "hasleader" metadata clientv3.WithRequireLeader
// sets: such a request fails with ErrGRPCNoLeader when the member knows no
// leader, and such a stream is ended with it when the member has known
// none for maxNoLeaderChecks checks in a row (etcd's monitorLeader, per
// stream here rather than one loop for all).
type leaderGuard struct {
	b        Backend
	interval time.Duration
}

func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	v := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

func (g leaderGuard) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if requiresLeader(ctx) && !g.b.HasLeader() {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return handler(ctx, req)
}

func (g leaderGuard) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !requiresLeader(ss.Context()) {
		return handler(srv, ss)
	}
	if !g.b.HasLeader() {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	go g.monitor(ctx, cancel)
	return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
}

// monitor ends ctx with ErrGRPCNoLeader once the member has had no leader
// for maxNoLeaderChecks checks in a row. Handlers return the cause (see
// streamError).
func (g leaderGuard) monitor(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.b.HasLeader() {
			misses = 0
			continue
		}
		if misses++; misses >= maxNoLeaderChecks {
			cancel(rpctypes.ErrGRPCNoLeader)
			return
		}
	}
}

// streamWithContext replaces a stream's context.
type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamWithContext) Context() context.Context { return s.ctx }
