// Command metcd-bench is a load generator for metcd.
//
// It runs --clients concurrent workers, spread round-robin over the
// --endpoints, each issuing one request at a time (closed loop) until
// --total requests have been issued or --duration has passed, whichever
// comes first (with neither, --total 10000). Requests still in flight then
// complete and are counted, so a run is always bounded: by the limit plus
// one --timeout. Ctrl-C stops early and reports what was measured.
//
// Workloads: put (PUT /<key>, the value as body), get (GET /<key>, with
// --consistency linearizable, the default, or serializable) and mixed
// (--read-ratio of gets, the rest puts). Keys are --key-prefix followed by a
// key index zero-padded to --key-size digits, drawn at random from
// [0, --key-space) or, with --sequential-keys, in order (wrapping around).
// Every put writes the same --val-size bytes. --prefill first writes every
// key of the key space once, unmeasured, so that gets find their keys.
//
// The report gives the requests made, errors by kind (HTTP status, timeout,
// connection refused, ...), the elapsed time, requests per second, and the
// latency of successful requests: p50, p90, p99, p99.9 and max (from a
// log-bucketed histogram, within 1% of the exact value; min, mean and max
// are exact). --json prints it as JSON. While running, a progress line is
// shown on stderr when stderr is a terminal.
//
// Examples, against the cluster of scripts/cluster.sh:
//
//	metcd-bench --workload put --clients 64 --total 20000
//	metcd-bench --workload get --prefill --clients 64 --consistency serializable --duration 30s
//	metcd-bench --workload mixed --read-ratio 0.95 --clients 16 --duration 1m --json
//
// metcd-bench speaks metcd's HTTP API (--target http). It reaches the system
// under test only through the small target interface (target.go), so other
// protocols, such as the etcd v3 gRPC API, can be added as further targets.
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

const defaultEndpoints = "http://127.0.0.1:12380,http://127.0.0.1:22380,http://127.0.0.1:32380"

// options are the parsed flags.
type options struct {
	cfg         config
	target      string
	endpoints   []string
	conns       int
	consistency string
	json        bool
}

// errUsage marks flag errors (exit status 2); the flag package has already
// printed the message.
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("metcd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "metcd-bench generates load against metcd's HTTP API and reports throughput and latency.\n\nUsage: metcd-bench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var endpoints string
	fs.StringVar(&o.target, "target", "http", "protocol to benchmark: http (metcd's HTTP API)")
	fs.StringVar(&endpoints, "endpoints", defaultEndpoints, "comma-separated client URLs; clients are spread over them round-robin")
	fs.StringVar(&c.Workload, "workload", workloadPut, "put, get or mixed")
	fs.Float64Var(&c.ReadRatio, "read-ratio", 0.9, "share of gets in the mixed workload, from 0 to 1")
	fs.IntVar(&c.Clients, "clients", 1, "concurrent workers, each with one request outstanding")
	fs.IntVar(&o.conns, "conns", 0, "most HTTP connections per endpoint (0: no limit, i.e. about one per client on that endpoint)")
	fs.Int64Var(&c.Total, "total", 10000, "requests to issue (0: no limit; then --duration must be set)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop issuing requests after this long (e.g. 30s); with --total, whichever comes first")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "", "prefix of every key (e.g. bench/)")
	fs.IntVar(&c.KeySize, "key-size", 8, "digits of the zero-padded key index that follows --key-prefix")
	fs.IntVar(&c.ValSize, "val-size", 256, "bytes in each value put")
	fs.Int64Var(&c.KeySpace, "key-space", 10000, "number of distinct keys")
	fs.BoolVar(&c.SequentialKeys, "sequential-keys", false, "use keys in order (wrapping around) instead of at random")
	fs.StringVar(&o.consistency, "consistency", "linearizable", "for gets: linearizable or serializable (a local read on the member asked)")
	fs.BoolVar(&c.Prefill, "prefill", false, "write every key of the key space first (not measured), so that gets find their keys")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout")
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
	if o.target != "http" {
		return bad("--target %q: only http is supported", o.target)
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.endpoints = append(o.endpoints, e)
		}
	}
	if len(o.endpoints) == 0 {
		return bad("--endpoints: no endpoint given")
	}
	switch c.Workload {
	case workloadPut, workloadGet, workloadMixed:
	default:
		return bad("--workload %q: want put, get or mixed", c.Workload)
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		return bad("--read-ratio %v: want a number from 0 to 1", c.ReadRatio)
	}
	switch o.consistency {
	case "linearizable", "serializable":
	default:
		return bad("--consistency %q: want linearizable or serializable", o.consistency)
	}
	if c.Clients < 1 {
		return bad("--clients must be at least 1")
	}
	if o.conns < 0 {
		return bad("--conns must not be negative")
	}
	if c.Duration < 0 || c.Total < 0 {
		return bad("--total and --duration must not be negative")
	}
	if set["duration"] && !set["total"] {
		c.Total = 0 // --duration alone: run for that long
	}
	if c.Total == 0 && c.Duration == 0 {
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
	if c.Timeout <= 0 {
		return bad("--timeout must be positive")
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// run parses args, runs the benchmark and writes the report to stdout.
// stop, when closed, ends the run early (Ctrl-C); progress enables the
// progress line on stderr.
func run(args []string, stdout, stderr io.Writer, progress bool, stop <-chan struct{}) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg := o.cfg

	client := &http.Client{Transport: newHTTPTransport(o.conns, cfg.Clients)}
	defer client.CloseIdleConnections()
	var targets []target
	for _, e := range o.endpoints {
		t, err := newHTTPTarget(client, e, o.consistency == "serializable")
		if err != nil {
			fmt.Fprintln(stderr, "metcd-bench:", err)
			return errUsage
		}
		targets = append(targets, t)
	}
	defer func() {
		for _, t := range targets {
			if c, ok := t.(io.Closer); ok {
				c.Close()
			}
		}
	}()

	b := newBench(cfg, targets)
	if cfg.Prefill {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		t0 := time.Now()
		err := b.prefill(ctx)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "prefilled %d keys in %.1fs\n", cfg.KeySpace, time.Since(t0).Seconds())
	}

	progStop := make(chan struct{})
	progDone := make(chan struct{})
	if progress {
		go func() {
			b.showProgress(stderr, time.Second, progStop)
			close(progDone)
		}()
	} else {
		close(progDone)
	}
	s, elapsed := b.run(stop)
	close(progStop)
	<-progDone

	r := makeReport(s, elapsed)
	r.Target = o.target
	r.Endpoints = o.endpoints
	r.Workload = cfg.Workload
	if cfg.Workload == workloadMixed {
		r.ReadRatio = cfg.ReadRatio
	}
	if cfg.Workload != workloadPut {
		r.Consistency = o.consistency
	}
	r.Clients = cfg.Clients
	r.ConnsPerEndpoint = o.conns
	r.KeySpace = cfg.KeySpace
	r.KeyBytes = len(cfg.KeyPrefix) + cfg.KeySize
	r.ValueBytes = cfg.ValSize
	r.SequentialKeys = cfg.SequentialKeys
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
		fmt.Fprintf(stderr, "note: %d gets found no key; --prefill writes the key space first\n", r.GetMisses)
	}
	if r.Requests > 0 && r.OK == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// isTerminal reports whether f looks like a terminal: a character device
// other than /dev/null. (Good enough for deciding to draw a progress line.)
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
