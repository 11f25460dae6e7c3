// Command metcd-bench is a load generator for metcd and etcd.
//
// By default it speaks the etcd v3 gRPC API through
// go.etcd.io/etcd/client/v3 (--protocol grpc), so the same binary, with the
// same flags, measures a metcd cluster and an etcd cluster. --protocol http
// speaks metcd's curl-friendly HTTP API instead (put, range and mixed only).
//
// It runs --clients concurrent workers, each issuing one request at a time
// (closed loop; --rate caps the total rate) until --total requests have been
// issued or --duration has passed, whichever comes first (with neither,
// --total 10000). Requests still in flight then complete and are counted,
// so a run is always bounded: by the limit plus one --timeout. Ctrl-C stops
// early and reports what was measured.
//
// Connections: with gRPC, --conns clientv3 clients (one gRPC connection
// each) are opened, connection i on endpoint i mod the number of endpoints
// (default: one per endpoint), and worker w uses connection w mod --conns,
// as etcd's benchmark tool does; --target-leader puts them all on the
// leader. With HTTP, workers are spread round-robin over the endpoints and
// --conns caps the connections per endpoint.
//
// Workloads:
//
//   - put: put a key (random, or in order with --sequential-keys) of the key
//     space with a --val-size value.
//   - range (or get): read one key, linearizable (--consistency l, the
//     default) or serializable (s, a local read of the member asked).
//     --prefill first writes every key so that the reads find them.
//   - txn: compare-and-swap, one transaction per request. With
//     --txn-compare mod (default): "if the key's mod_revision is the last
//     one any client saw, put, else read the key" (the read tells the
//     clients the current revision; txns whose compare failed are counted
//     as successful, and reported). With value: "if the key holds the
//     value, put it again" (with --prefill, every compare holds).
//   - watch: --watchers watchers on --watch-streams streams, watcher j on
//     key j mod --key-space; --clients writers put keys of the key space.
//     Each put's value carries its start time, so the latency reported is
//     that of the events: from the start of the put to the event's receipt
//     by a watcher. Every event due (one per acknowledged put per watcher
//     of its key) must arrive; missing ones are errors. Use --rate to keep
//     the writers from saturating the cluster (etcd's watch-latency
//     benchmark puts 100/s on one key watched by 100 watchers).
//   - mixed: --read-ratio of ranges (with --consistency), the rest puts.
//
// Keys are --key-prefix followed by a key index zero-padded to --key-size
// digits (so the default, no prefix and 8 digits, makes 8-byte keys), drawn
// from [0, --key-space). --prefill writes every key of the key space once,
// unmeasured, in transactions of --prefill-batch puts (gRPC), before the
// run; --prefill-only stops after it. --warmup runs the workload unmeasured
// for that long first (not for watch).
//
// The report gives the requests made, errors by kind (HTTP status, gRPC
// code or etcd error, timeout, connection refused, ...), the elapsed time,
// requests per second, and the latency of successful requests: p50, p90,
// p99, p99.9 and max (from a log-bucketed histogram, within 1% of the exact
// value; min, mean and max are exact), overall and per operation. --json
// prints it as JSON. While running, a progress bar is drawn on stderr when
// stderr is a terminal.
//
// Examples, against the cluster of scripts/cluster.sh (or etcd's, with its
// endpoints):
//
//	metcd-bench --workload put --clients 100 --conns 10 --total 100000
//	metcd-bench --workload range --prefill --clients 100 --consistency s --duration 30s
//	metcd-bench --workload txn --prefill --clients 100 --duration 30s --json
//	metcd-bench --workload watch --watchers 100 --key-space 1 --rate 100 --duration 30s
//	metcd-bench --workload mixed --read-ratio 0.9 --prefill --clients 64 --duration 1m
//	metcd-bench --protocol http --endpoints http://127.0.0.1:12380 --workload put
//
// The default protocol can also be set with METCD_BENCH_PROTOCOL (e.g. for
// metcd-enginebench, which runs metcd-bench without --protocol).
//
// Exit status: 0 after a run, 1 if it could not run or no request
// succeeded, 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// defaultPorts are the client ports of scripts/cluster.sh's members.
var defaultPorts = []string{"12380", "22380", "32380"}

// options are the parsed flags.
type options struct {
	cfg          config
	endpoints    []string
	conns        int
	targetLeader bool
	consistency  string // linearizable or serializable
	json         bool
}

// errUsage marks flag errors (exit status 2); the flag package has already
// printed the message.
var errUsage = errors.New("usage")

func defaultProtocol() string {
	if p := os.Getenv("METCD_BENCH_PROTOCOL"); p != "" {
		return p
	}
	return protocolGRPC
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("metcd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "metcd-bench generates load against metcd or etcd (the etcd v3 gRPC API, or metcd's HTTP API)\nand reports throughput and latency.\n\nUsage: metcd-bench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var endpoints, consistency, target string
	fs.StringVar(&c.Protocol, "protocol", defaultProtocol(), "grpc (the etcd v3 API, for metcd and etcd) or http (metcd's HTTP API); default from $METCD_BENCH_PROTOCOL, else grpc")
	fs.StringVar(&target, "target", "", "old name of --protocol")
	fs.StringVar(&endpoints, "endpoints", "", "comma-separated endpoints: host:port (or http://host:port) for grpc, client URLs for http (default: scripts/cluster.sh's 127.0.0.1:12380,22380,32380)")
	fs.StringVar(&c.Workload, "workload", workloadPut, "put, range (or get), txn, watch or mixed")
	fs.Float64Var(&c.ReadRatio, "read-ratio", 0.9, "share of ranges in the mixed workload, from 0 to 1")
	fs.StringVar(&consistency, "consistency", "l", "for ranges: l (linearizable) or s (serializable, a local read of the member asked)")
	fs.IntVar(&c.Clients, "clients", 1, "concurrent workers, each with one request outstanding (the writers, for watch)")
	fs.IntVar(&o.conns, "conns", 0, "grpc: connections, spread over the endpoints (0: one per endpoint); http: most connections per endpoint (0: no limit)")
	fs.BoolVar(&o.targetLeader, "target-leader", false, "grpc: open every connection on the leader's endpoint")
	fs.Int64Var(&c.Total, "total", 10000, "requests to issue (puts, for watch; 0: no limit, then --duration must be set)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop issuing requests after this long (e.g. 30s); with --total, whichever comes first")
	fs.DurationVar(&c.Warmup, "warmup", 0, "run the workload this long first, unmeasured (not for watch)")
	fs.Float64Var(&c.Rate, "rate", 0, "most requests per second over all clients (0: no limit)")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "", "prefix of every key (e.g. bench/)")
	fs.IntVar(&c.KeySize, "key-size", 8, "digits of the zero-padded key index that follows --key-prefix")
	fs.IntVar(&c.ValSize, "val-size", 256, "bytes in each value put (at least 8 for watch)")
	fs.Int64Var(&c.KeySpace, "key-space", 10000, "number of distinct keys")
	fs.BoolVar(&c.SequentialKeys, "sequential-keys", false, "use keys in order (wrapping around) instead of at random")
	fs.BoolVar(&c.Prefill, "prefill", false, "write every key of the key space first (not measured), so that ranges find their keys")
	fs.BoolVar(&c.PrefillOnly, "prefill-only", false, "prefill, report how long it took, and stop")
	fs.IntVar(&c.PrefillBatch, "prefill-batch", 100, "grpc: puts per prefill transaction (at most the servers' --max-txn-ops)")
	fs.StringVar(&c.TxnCompare, "txn-compare", "mod", "txn: compare the key's mod (mod_revision) or value")
	fs.IntVar(&c.Watchers, "watchers", 100, "watch: watchers, watcher j on key j mod --key-space")
	fs.IntVar(&c.WatchStreams, "watch-streams", 10, "watch: gRPC watch streams the watchers are spread over")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout (and, for watch, how long events may take after the last put)")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed for random keys and the value (0: from the clock)")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	bad := func(format string, a ...any) (*options, error) {
		fmt.Fprintf(stderr, "metcd-bench: "+format+"\n", a...)
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if target != "" {
		if set["protocol"] && target != c.Protocol {
			return bad("--target %q and --protocol %q disagree", target, c.Protocol)
		}
		c.Protocol = target
	}
	switch c.Protocol {
	case protocolGRPC, protocolHTTP:
	default:
		return bad("--protocol %q: want grpc or http", c.Protocol)
	}
	if !set["endpoints"] {
		endpoints = ""
		for i, p := range defaultPorts {
			if i > 0 {
				endpoints += ","
			}
			endpoints += "127.0.0.1:" + p
		}
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if c.Protocol == protocolHTTP && !strings.Contains(e, "://") {
			e = "http://" + e
		}
		o.endpoints = append(o.endpoints, e)
	}
	if len(o.endpoints) == 0 {
		return bad("--endpoints: no endpoint given")
	}
	if c.Workload == "get" {
		c.Workload = workloadRange
	}
	switch c.Workload {
	case workloadPut, workloadRange, workloadMixed:
	case workloadTxn, workloadWatch:
		if c.Protocol != protocolGRPC {
			return bad("--workload %s needs --protocol grpc", c.Workload)
		}
	default:
		return bad("--workload %q: want put, range, txn, watch or mixed", c.Workload)
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		return bad("--read-ratio %v: want a number from 0 to 1", c.ReadRatio)
	}
	switch consistency {
	case "l", "linearizable":
		o.consistency = "linearizable"
	case "s", "serializable":
		o.consistency = "serializable"
		c.Serializable = true
	default:
		return bad("--consistency %q: want l (linearizable) or s (serializable)", consistency)
	}
	switch c.TxnCompare {
	case "mod", "mod_revision":
		c.TxnCompare = "mod"
	case "value":
	default:
		return bad("--txn-compare %q: want mod or value", c.TxnCompare)
	}
	if c.Clients < 1 {
		return bad("--clients must be at least 1")
	}
	if o.conns < 0 {
		return bad("--conns must not be negative")
	}
	if o.targetLeader && c.Protocol != protocolGRPC {
		return bad("--target-leader needs --protocol grpc")
	}
	if c.Duration < 0 || c.Total < 0 || c.Warmup < 0 {
		return bad("--total, --duration and --warmup must not be negative")
	}
	if c.Rate < 0 {
		return bad("--rate must not be negative")
	}
	if set["duration"] && !set["total"] {
		c.Total = 0 // --duration alone: run for that long
	}
	if c.PrefillOnly {
		c.Prefill = true
	} else if c.Total == 0 && c.Duration == 0 {
		return bad("set --total or --duration: a run must be bounded")
	}
	if c.KeySpace < 1 {
		return bad("--key-space must be at least 1")
	}
	if need := keyspaceDigits(c.KeySpace); c.KeySize < need {
		return bad("--key-size %d is too short for --key-space %d: it needs %d digits", c.KeySize, c.KeySpace, need)
	}
	if c.ValSize < 0 {
		return bad("--val-size must not be negative")
	}
	if c.PrefillBatch < 1 {
		return bad("--prefill-batch must be at least 1")
	}
	if c.Workload == workloadWatch {
		switch {
		case c.ValSize < stampSize:
			return bad("--val-size must be at least %d for watch (the value carries the put's start time)", stampSize)
		case c.Watchers < 1 || c.WatchStreams < 1:
			return bad("--watchers and --watch-streams must be at least 1")
		}
	}
	if c.Timeout <= 0 {
		return bad("--timeout must be positive")
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// withStop returns a context cancelled when stop is closed (or cancel is
// called).
func withStop(stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// withProgress runs f, drawing p's progress on w meanwhile if show.
func withProgress(show bool, w io.Writer, p *progress, label string, total int64, duration time.Duration, f func()) {
	if !show {
		f()
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		showProgress(w, p, label, total, duration, 500*time.Millisecond, stop)
		close(done)
	}()
	f()
	close(stop)
	<-done
}

// run parses args, runs the benchmark and writes the report to stdout.
// stop, when closed, ends the run early (Ctrl-C); progress enables the
// progress bar on stderr.
func run(args []string, stdout, stderr io.Writer, progress bool, stop <-chan struct{}) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg := o.cfg

	var targets []target
	var watch []watchConn
	endpoints := o.endpoints
	conns := o.conns
	switch cfg.Protocol {
	case protocolHTTP:
		client := &http.Client{Transport: newHTTPTransport(o.conns, cfg.Clients)}
		defer client.CloseIdleConnections()
		for _, e := range o.endpoints {
			t, err := newHTTPTarget(client, e, cfg.Serializable)
			if err != nil {
				fmt.Fprintln(stderr, "metcd-bench:", err)
				return errUsage
			}
			targets = append(targets, t)
		}
	case protocolGRPC:
		if conns == 0 {
			conns = len(o.endpoints)
			if o.targetLeader {
				conns = 1
			}
		}
		ctx, cancel := withStop(stop)
		clis, eps, err := dialGRPC(ctx, o.endpoints, conns, o.targetLeader)
		cancel()
		if err != nil {
			return err
		}
		defer func() {
			for _, c := range clis {
				c.Close()
			}
		}()
		endpoints = eps
		for _, c := range clis {
			targets = append(targets, newGRPCTarget(c, cfg.Serializable))
			watch = append(watch, c)
		}
	}

	b := newBench(cfg, targets)
	b.watch = watch
	var prefillTook time.Duration
	if cfg.Prefill {
		ctx, cancel := withStop(stop)
		t0 := time.Now()
		withProgress(progress, stderr, &b.pre, "prefill", cfg.KeySpace, 0, func() { err = b.prefill(ctx) })
		prefillTook = time.Since(t0)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "prefilled %d keys in %.1fs\n", cfg.KeySpace, prefillTook.Seconds())
	}

	var s *stats
	var elapsed time.Duration
	if !cfg.PrefillOnly {
		if cfg.Warmup > 0 && cfg.Workload != workloadWatch {
			wcfg := cfg
			wcfg.Duration, wcfg.Total = cfg.Warmup, 0
			wb := newBench(wcfg, targets)
			wb.revs = b.revs // what the warm-up learnt of the revisions is still true
			withProgress(progress, stderr, &wb.prog, "warm-up", 0, cfg.Warmup, func() { wb.run(stop) })
		}
		var runErr error
		withProgress(progress, stderr, &b.prog, cfg.Workload, cfg.Total, cfg.Duration, func() { s, elapsed, runErr = b.run(stop) })
		if runErr != nil {
			return runErr
		}
	} else {
		s = newStats()
	}

	r := makeReport(s, elapsed, cfg.Workload == workloadWatch)
	r.Protocol, r.Target = cfg.Protocol, cfg.Protocol
	r.Endpoints = endpoints
	r.TargetLeader = o.targetLeader
	r.Workload = cfg.Workload
	switch cfg.Workload {
	case workloadMixed:
		r.ReadRatio = cfg.ReadRatio
		r.Consistency = o.consistency
	case workloadRange:
		r.Consistency = o.consistency
	case workloadTxn:
		r.TxnCompare = cfg.TxnCompare
	case workloadWatch:
		r.Watchers, r.WatchStreams = cfg.Watchers, cfg.WatchStreams
	}
	r.Clients = cfg.Clients
	if cfg.Protocol == protocolGRPC {
		r.Conns = conns
	} else {
		r.Conns = len(o.endpoints)
		r.ConnsPerEndpoint = o.conns
	}
	r.RateLimit = cfg.Rate
	r.KeySpace = cfg.KeySpace
	r.KeyBytes = len(cfg.KeyPrefix) + cfg.KeySize
	r.ValueBytes = cfg.ValSize
	r.SequentialKeys = cfg.SequentialKeys
	if cfg.Prefill {
		r.PrefillKeys, r.PrefillSeconds = cfg.KeySpace, prefillTook.Seconds()
	}
	if cfg.Warmup > 0 && cfg.Workload != workloadWatch {
		r.WarmupSeconds = cfg.Warmup.Seconds()
	}
	select {
	case <-stop:
		r.Interrupted = true
	default:
	}

	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		writeText(stdout, r)
	}
	if r.GetMisses > 0 && !cfg.Prefill {
		fmt.Fprintf(stderr, "note: %d ranges found no key; --prefill writes the key space first\n", r.GetMisses)
	}
	if r.Requests > 0 && r.OK == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// isTerminal reports whether f looks like a terminal: a character device
// other than /dev/null. (Good enough for deciding to draw a progress bar.)
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

func main() {
	stop := make(chan struct{})
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Fprintln(os.Stderr, "\nmetcd-bench: stopping; waiting for requests in flight (again to quit now)")
		close(stop)
		<-sigc
		os.Exit(130)
	}()

	err := run(os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr), stop)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "metcd-bench:", err)
		os.Exit(1)
	}
}
