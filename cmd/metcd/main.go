// Command metcd runs one member of a metcd cluster: a Raft-replicated,
// strongly consistent key-value store with a curl-friendly HTTP API.
//
// Start-up, in order: parse and check flags; open (or create) the data dir
// and replay the WAL; join the peers; serve clients. This is the only place
// that exits the process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/metcd/metcd/api/gateway"
	"github.com/metcd/metcd/api/grpcapi"
	"github.com/metcd/metcd/api/httpapi"
	"github.com/metcd/metcd/api/recipes"
	"github.com/metcd/metcd/internal/metrics"
	"github.com/metcd/metcd/server"
	"github.com/metcd/metcd/storage/engines"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usageHeader = `metcd runs one member of a metcd cluster.

With no flags it starts a single-member cluster serving clients on
http://127.0.0.1:3379 and peers on http://127.0.0.1:12379, keeping its
data in ./metcd-1.data.

A three-member cluster on one machine:

  metcd --id 1 --cluster http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379 --port 12380
  metcd --id 2 --cluster http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379 --port 22380
  metcd --id 3 --cluster http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379 --port 32380

Flags:
`

type flags struct {
	id              uint64
	cluster         string
	port            int
	host            string
	join            bool
	dataDir         string
	engine          string
	snapshotCount   uint64
	logLevel        string
	maxRequestBytes int64
	heartbeatMs     uint
	electionMs      uint
	requestTimeout  time.Duration
	readCacheKeys   int
	compactBatch    int
	compactSleep    time.Duration
	enablePprof     bool
	metrics         string
	name            string
	maxTxnOps       int
	quotaBytes      int64
	restoreFrom     string
	listenPeer      string
	progressNotify  time.Duration
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("metcd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	fs.Uint64Var(&f.id, "id", 1, "this member's id: its 1-based position in --cluster")
	fs.StringVar(&f.cluster, "cluster", "http://127.0.0.1:12379", "comma-separated peer URLs of all members, in id order; this member listens for peers on its own")
	fs.IntVar(&f.port, "port", 3379, "client port for the HTTP API")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address the client port binds to (0.0.0.0 for all interfaces)")
	fs.BoolVar(&f.join, "join", false, "join an existing cluster (after adding this member with POST /<id>) instead of forming a new one")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the WAL, snapshots and engine files (default ./metcd-<id>.data)")
	fs.StringVar(&f.engine, "engine", engines.Default, "storage engine: "+strings.Join(engines.Names(), ", "))
	fs.Uint64Var(&f.snapshotCount, "snapshot-count", 10000, "applied entries between snapshots; the raft log is compacted at each")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Int64Var(&f.maxRequestBytes, "max-request-bytes", 1536*1024, "largest request body (a value) the client API accepts, in bytes")
	fs.UintVar(&f.heartbeatMs, "heartbeat-interval", 100, "raft heartbeat interval (one tick), in milliseconds")
	fs.UintVar(&f.electionMs, "election-timeout", 1000, "raft election timeout, in milliseconds")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 0, "how long a write may wait to be committed before its outcome is reported unknown (0: as etcd, 5s plus two election timeouts)")
	fs.IntVar(&f.readCacheKeys, "read-cache-keys", 0, "keys whose current record a disk engine's apply path keeps in memory, 70-120 bytes each with short keys (0: 1048576); a put of a key outside it reads the engine. While all the keys fit, it holds them all, read in the background at start-up")
	fs.IntVar(&f.compactBatch, "compaction-batch-limit", 1000, "history records physical compaction removes per engine batch, as etcd's flag")
	fs.DurationVar(&f.compactSleep, "compaction-sleep-interval", 10*time.Millisecond, "pause between physical compaction's batches, which leaves the engine to writes and reads, as etcd's flag (0: none)")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "serve Go profiles at /debug/pprof/ on the client port")
	fs.StringVar(&f.metrics, "metrics", "basic", "detail of /metrics, as etcd's flag: basic, or extensive to add gRPC's latency histogram (grpc_server_handling_seconds)")
	fs.StringVar(&f.listenPeer, "listen-peer-addr", "", "host:port the peer listener binds (default: the host:port of this member's URL in --cluster); for members reached through a proxy or NAT")
	fs.StringVar(&f.name, "name", "", "member name shown by member list (default metcd-<id>)")
	fs.IntVar(&f.maxTxnOps, "max-txn-ops", 128, "most operations in one etcd v3 transaction")
	fs.Int64Var(&f.quotaBytes, "quota-backend-bytes", 0, "engine size that raises the NOSPACE alarm and refuses writes until disarmed (0: 2 GiB, as etcd; negative: no quota)")
	fs.DurationVar(&f.progressNotify, "watch-progress-notify-interval", grpcapi.DefaultProgressNotifyInterval, "period of progress notifications to watchers created with progress_notify, as etcd's flag: each watch stream adds up to a tenth at random (minimum 100ms)")
	fs.StringVar(&f.restoreFrom, "restore-from", "", "start a new member from a backup file (etcdctl snapshot save); every member of the new cluster uses the same file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if f.dataDir == "" {
		f.dataDir = fmt.Sprintf("metcd-%d.data", f.id)
	}
	if f.port <= 0 || f.port > 65535 {
		return nil, fmt.Errorf("--port %d is not a TCP port", f.port)
	}
	if f.maxRequestBytes <= 0 {
		return nil, errors.New("--max-request-bytes must be positive")
	}
	if f.maxTxnOps <= 0 {
		return nil, errors.New("--max-txn-ops must be positive")
	}
	if f.progressNotify < 0 {
		return nil, errors.New("--watch-progress-notify-interval must not be negative")
	}
	if f.metrics != "basic" && f.metrics != "extensive" {
		return nil, fmt.Errorf("--metrics %q: want basic or extensive", f.metrics)
	}
	return f, nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	return cfg.Build()
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "metcd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	lg, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	defer lg.Sync()

	open, err := engines.Lookup(f.engine)
	if err != nil {
		return err
	}
	cfg := server.DefaultConfig()
	cfg.ID = f.id
	cfg.InitialCluster = splitURLs(f.cluster)
	cfg.Join = f.join
	cfg.DataDir = f.dataDir
	cfg.Engine = server.EngineOpener{Name: f.engine, Open: open}
	cfg.SnapshotCount = f.snapshotCount
	cfg.HeartbeatInterval = time.Duration(f.heartbeatMs) * time.Millisecond
	cfg.ElectionTimeout = time.Duration(f.electionMs) * time.Millisecond
	cfg.RequestTimeout = f.requestTimeout
	cfg.ReadCacheKeys = f.readCacheKeys
	cfg.CompactionBatchLimit = f.compactBatch
	cfg.CompactionSleepInterval = f.compactSleep
	if f.compactSleep == 0 {
		cfg.CompactionSleepInterval = -1 // the config's 0 is the default
	}
	cfg.Logger = lg
	cfg.Name = f.name
	cfg.MaxRequestBytes = int(f.maxRequestBytes)
	cfg.MaxTxnOps = f.maxTxnOps
	cfg.QuotaBackendBytes = f.quotaBytes
	cfg.RestoreFrom = f.restoreFrom
	cfg.PeerListenAddr = f.listenPeer

	// Bind the client port before touching the data dir, so a port clash
	// fails fast and changes nothing.
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for clients on %s: %w", addr, err)
	}
	defer ln.Close()
	cfg.ClientURLs = []string{"http://" + advertised(ln.Addr())}

	srv, err := server.Open(cfg)
	if err != nil {
		return err
	}
	defer srv.Stop()

	v3gw, err := gateway.New(advertised(ln.Addr()), lg.Named("gateway"))
	if err != nil {
		return err
	}
	defer v3gw.Close()
	// gRPC's request counts under the names etcd reports them
	// (grpc_server_handled_total and the rest); with --metrics=extensive,
	// as in etcd, their latency histogram too.
	var gmopts []grpcprom.ServerMetricsOption
	if f.metrics == "extensive" {
		gmopts = append(gmopts, grpcprom.WithServerHandlingTimeHistogram())
	}
	grpcMetrics := grpcprom.NewServerMetrics(gmopts...)
	clientBytes := &metrics.ClientBytes{}
	reg, err := metrics.NewRegistry(srv.Collector(), grpcMetrics, clientBytes)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	api := httpapi.NewHandler(srv, httpapi.Options{
		MaxRequestBytes: f.maxRequestBytes,
		EnablePprof:     f.enablePprof,
		Version:         version,
		V3:              v3gw,
		Metrics:         metrics.Gatherer(reg),
	})
	gs := grpcapi.NewServer(srv, grpcapi.Options{
		MaxRequestBytes:     int(f.maxRequestBytes),
		MaxTxnOps:           f.maxTxnOps,
		LeaderCheckInterval: cfg.ElectionTimeout,
		// 0 means etcd's default; below the minimum is raised, as etcd.
		ProgressNotifyInterval: f.progressNotify,
		StorageVersion:         server.StorageVersion,
		ServerOptions:          []grpc.ServerOption{clientBytes.ServerOption()},
		UnaryInterceptors:      []grpc.UnaryServerInterceptor{grpcMetrics.UnaryServerInterceptor()},
		StreamInterceptors:     []grpc.StreamServerInterceptor{grpcMetrics.StreamServerInterceptor()},
	})
	// etcd's Lock and Election services run the concurrency recipes
	// through this member's own client port.
	rec, err := recipes.New(advertised(ln.Addr()))
	if err != nil {
		return err
	}
	defer rec.Close()
	rec.Register(gs)
	grpcMetrics.InitializeMetrics(gs)
	mux := grpcapi.NewMux(ln, api, gs)
	serveErr := make(chan error, 1)
	go func() { serveErr <- mux.Serve() }()
	if f.progressNotify > 0 && f.progressNotify < grpcapi.MinProgressNotifyInterval {
		lg.Warn("raising --watch-progress-notify-interval to its minimum, as etcd does",
			zap.Duration("given", f.progressNotify), zap.Duration("minimum", grpcapi.MinProgressNotifyInterval))
	}
	lg.Info("serving clients", zap.String("address", "http://"+ln.Addr().String()))

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	var exitErr error
	select {
	case sig := <-sigc:
		lg.Info("shutting down", zap.Stringer("signal", sig))
	case <-srv.Done():
		if err := srv.Err(); errors.Is(err, server.ErrRemoved) {
			lg.Info("member removed from the cluster; shutting down")
		} else {
			exitErr = fmt.Errorf("member stopped: %w", err)
		}
	case err := <-serveErr:
		exitErr = fmt.Errorf("client listener: %w", err)
	}
	if exitErr == nil {
		// As etcd on a graceful stop: the next leader takes over now
		// rather than an election timeout after this member goes quiet.
		// Two election timeouts bound the wait; a second signal ends it.
		hctx, hcancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-sigc:
				hcancel()
			case <-hctx.Done():
			}
		}()
		srv.HandOffLeadership(hctx)
		hcancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	mux.Shutdown(ctx)
	srv.Stop()
	return exitErr
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, strings.TrimSuffix(u, "/"))
		}
	}
	return out
}

// advertised is the client address other members and clients are told:
// the bound address, with a wildcard host replaced by loopback.
func advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
