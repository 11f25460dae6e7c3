// Command metcd-enginebench compares metcd's storage engines end to end.
//
// For each engine in --engines (default: every engine the metcd binary
// lists for --engine) and each key count in --keys, it
//
//  1. starts a fresh --members-member cluster (default 3) on that engine,
//     on free loopback ports (never 2379/2380), with data dirs and logs in
//     a temporary directory;
//  2. prefills the key space: every key once, with --val-size byte values,
//     by --prefill-clients concurrent HTTP clients spread over all members
//     (not measured as a workload, but its rate is reported);
//  3. runs each workload of --workloads for --duration with each client
//     count of --clients, by running metcd-bench --json against all
//     members: read-heavy is 95% linearizable gets and 5% puts, write-heavy
//     5% linearizable gets and 95% puts, over random keys of the key space;
//  4. measures the start-up of member 1 holding the data: SIGTERM, wait
//     for it to exit, restart it, and time until its /admin/status reports
//     an applied index at least the one it had before the stop and it
//     serves a serializable get; it also records the size of member 1's
//     data dir and the engine's data_size_bytes;
//  5. stops the cluster and removes its data (unless --keep).
//
// The results are written as JSON to --out after every step (so an
// interrupted comparison keeps what it measured), rendered as a PNG to --png
// (one req/s panel per key count and workload with the client counts as
// groups and the engines as series, then panels for start-up time and
// data size), and printed as markdown tables on stdout. Progress goes to
// stderr.
//
// The metcd and metcd-bench binaries are built from the module in the
// current directory into the temporary directory, unless --metcd and
// --bench name them. Every wait has a deadline; Ctrl-C (or SIGTERM) stops
// the comparison, and the members are always stopped and the temporary
// directory removed. Members run in their own process group and are killed
// by the kernel should this command die without stopping them.
//
// Examples, from the repository root:
//
//	go run ./cmd/metcd-enginebench --engines memory --keys 10000 --duration 3s
//	go run ./cmd/metcd-enginebench --keys 100000,1000000 --out results.json --png engines.png
//
// Exit status: 0 if everything was measured, 1 if something failed or the
// comparison was interrupted (the results hold what was measured), 2 for
// bad flags.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the parsed flags.
type options struct {
	engines        []string // empty: all registered
	keys           []int64
	workloads      []workload
	clients        []int
	duration       time.Duration
	valSize        int
	members        int
	prefillClients int
	metcd, bench   string
	metcdFlags     []string
	logLevel       string
	out, png       string
	workDir        string
	keep           bool
	requestTimeout time.Duration
	readyTimeout   time.Duration
	prefillTimeout time.Duration
	settleTimeout  time.Duration
	startupTimeout time.Duration
	stopGrace      time.Duration
}

var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("metcd-enginebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "metcd-enginebench compares metcd's storage engines end to end: throughput and latency\nof read- and write-heavy workloads, prefill rate, start-up time and data size.\n\nUsage: metcd-enginebench [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var engines, keys, workloads, clients, metcdFlags string
	fs.StringVar(&engines, "engines", "", "comma-separated engines to compare (default: every engine the metcd binary has)")
	fs.StringVar(&keys, "keys", "100000,1000000", "comma-separated key counts; each gets a fresh cluster (k and M suffixes allowed)")
	fs.StringVar(&workloads, "workloads", "read-heavy,write-heavy", "comma-separated workloads: read-heavy (95% linearizable gets), write-heavy (95% puts)")
	fs.StringVar(&clients, "clients", "1,64", "comma-separated client counts to run each workload with")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured run")
	fs.IntVar(&o.valSize, "val-size", 256, "bytes in each value")
	fs.IntVar(&o.members, "members", 3, "cluster size")
	fs.IntVar(&o.prefillClients, "prefill-clients", 64, "concurrent clients writing the key space before the runs")
	fs.StringVar(&o.metcd, "metcd", "", "metcd binary (default: go build ./cmd/metcd into the temporary directory)")
	fs.StringVar(&o.bench, "bench", "", "metcd-bench binary (default: go build ./cmd/metcd-bench into the temporary directory)")
	fs.StringVar(&metcdFlags, "metcd-flags", "", "extra flags for every member, space-separated (e.g. \"--snapshot-count 100000\")")
	fs.StringVar(&o.logLevel, "log-level", "info", "members' --log-level (their logs are in the temporary directory)")
	fs.StringVar(&o.out, "out", "results.json", "write the results as JSON here (empty: do not)")
	fs.StringVar(&o.png, "png", "engines.png", "render the charts as PNG here (empty: do not)")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for binaries, data dirs and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data dirs and logs instead of removing them")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "timeout of each prefill and benchmark request")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", time.Minute, "how long a new cluster may take to elect a leader")
	fs.DurationVar(&o.prefillTimeout, "prefill-timeout", 30*time.Minute, "how long a prefill may take")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 2*time.Minute, "how long the members may take to apply everything committed, before each run")
	fs.DurationVar(&o.startupTimeout, "startup-timeout", 10*time.Minute, "how long a restarted member may take to catch up")
	fs.DurationVar(&o.stopGrace, "stop-grace", 20*time.Second, "how long a member may take to exit after SIGTERM before it is killed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	bad := func(format string, a ...any) (*options, error) {
		fmt.Fprintf(stderr, "metcd-enginebench: "+format+"\n", a...)
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o.engines = splitList(engines)
	var err error
	if o.keys, err = parseCounts(keys); err != nil {
		return bad("--keys: %v", err)
	}
	for _, name := range splitList(workloads) {
		w, ok := lookupWorkload(name)
		if !ok {
			return bad("--workloads: unknown workload %q: want read-heavy or write-heavy", name)
		}
		o.workloads = append(o.workloads, w)
	}
	if len(o.workloads) == 0 {
		return bad("--workloads: none given")
	}
	cs, err := parseCounts(clients)
	if err != nil {
		return bad("--clients: %v", err)
	}
	for _, c := range cs {
		if c > 100000 {
			return bad("--clients: %d is too many", c)
		}
		o.clients = append(o.clients, int(c))
	}
	o.metcdFlags = strings.Fields(metcdFlags)
	switch {
	case o.duration < 100*time.Millisecond:
		return bad("--duration must be at least 100ms")
	case o.valSize < 0:
		return bad("--val-size must not be negative")
	case o.members < 1:
		return bad("--members must be at least 1")
	case o.prefillClients < 1:
		return bad("--prefill-clients must be at least 1")
	case o.requestTimeout <= 0 || o.readyTimeout <= 0 || o.prefillTimeout <= 0 || o.settleTimeout <= 0 || o.startupTimeout <= 0 || o.stopGrace <= 0:
		return bad("timeouts must be positive")
	}
	return o, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseCounts parses a comma-separated list of positive integers, each
// optionally with a k (thousand) or M (million) suffix: "100k,1M".
func parseCounts(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		mult := 1.0
		num := f
		switch f[len(f)-1] {
		case 'k', 'K':
			mult, num = 1e3, f[:len(f)-1]
		case 'm', 'M':
			mult, num = 1e6, f[:len(f)-1]
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q is not a count", f)
		}
		v *= mult
		if v < 1 || v > 1e12 || v != math.Trunc(v) {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		for _, seen := range out {
			if seen == int64(v) {
				return nil, fmt.Errorf("%q given twice", f)
			}
		}
		out = append(out, int64(v))
	}
	if len(out) == 0 {
		return nil, errors.New("none given")
	}
	return out, nil
}

// keyDigits is the zero-padded width of key indices for a key space of n:
// metcd-bench's default of 8, or more if needed.
func keyDigits(n int64) int {
	return max(8, len(strconv.FormatInt(max(n-1, 0), 10)))
}

// engineFlagRE finds the engine list in metcd's --help: the usage of
// --engine is "storage engine: a, b, c (default "memory")".
var engineFlagRE = regexp.MustCompile(`storage engine: ([^\n(]*?)\s*\(default`)

// parseEngineList extracts the engine names from metcd --help output.
func parseEngineList(help string) ([]string, error) {
	m := engineFlagRE.FindStringSubmatch(help)
	if m == nil {
		return nil, errors.New("no \"storage engine: ...\" in its --help")
	}
	names := splitList(m[1])
	if len(names) == 0 {
		return nil, errors.New("its --help lists no engine")
	}
	return names, nil
}

// registeredEngines asks the metcd binary which engines it has.
func registeredEngines(ctx context.Context, bin string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput() // exits 0 or 2
	names, err := parseEngineList(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	return names, nil
}

// buildBinaries builds metcd and metcd-bench from the module around the
// current directory into dir.
func buildBinaries(ctx context.Context, dir string, stderr io.Writer) (metcd, bench string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", "", errors.New("not inside the metcd module: run from the repository, or pass --metcd and --bench")
	}
	var errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/metcd", "./cmd/metcd-bench")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &errBuf, &errBuf
	logf(stderr, "building metcd and metcd-bench from %s", root)
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/metcd ./cmd/metcd-bench: %v\n%s", err, errBuf.String())
	}
	return filepath.Join(dir, "metcd"), filepath.Join(dir, "metcd-bench"), nil
}

// logf prints a progress line on w.
func logf(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "metcd-enginebench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// run is the whole comparison; see the package comment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}

	// Everything that must be undone is undone by defers, in reverse:
	// clusters (in measure), then the work dir.
	work := o.workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "metcd-enginebench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf(stderr, "kept data dirs and logs in %s", work)
			return
		}
		if o.workDir == "" {
			os.RemoveAll(work)
		} else {
			os.RemoveAll(filepath.Join(work, "bin"))
		}
	}()

	if o.metcd == "" || o.bench == "" {
		metcd, bench, err := buildBinaries(ctx, filepath.Join(work, "bin"), stderr)
		if err != nil {
			return err
		}
		if o.metcd == "" {
			o.metcd = metcd
		}
		if o.bench == "" {
			o.bench = bench
		}
	}
	for _, p := range []*string{&o.metcd, &o.bench} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	registered, err := registeredEngines(ctx, o.metcd)
	if err != nil {
		return err
	}
	if len(o.engines) == 0 {
		o.engines = registered
	}
	for _, e := range o.engines {
		if !contains(registered, e) {
			fmt.Fprintf(stderr, "metcd-enginebench: --engines: %s has no engine %q; it has %s\n", o.metcd, e, strings.Join(registered, ", "))
			return errUsage
		}
	}

	res := newResults(o)
	save := func() {
		if o.out == "" {
			return
		}
		if err := writeJSONFile(o.out, res); err != nil {
			logf(stderr, "writing %s: %v", o.out, err)
		}
	}
	save()
	logf(stderr, "comparing %s with %v keys, workloads %v, clients %v, %v per run; work dir %s",
		strings.Join(o.engines, ", "), o.keys, res.Config.Workloads, o.clients, o.duration, work)

	t0 := time.Now()
	for _, engine := range o.engines {
		for _, keys := range o.keys {
			if ctx.Err() != nil {
				break
			}
			dir := filepath.Join(work, fmt.Sprintf("%s-%d", engine, keys))
			err := measure(ctx, o, res, engine, keys, dir, save, stderr)
			switch {
			case err != nil && ctx.Err() != nil:
				res.Clusters[len(res.Clusters)-1].Error = "interrupted"
			case err != nil:
				logf(stderr, "%s, %s keys: %v", engine, countLabel(keys), err)
				res.Failed = append(res.Failed, fmt.Sprintf("%s, %s keys: %s", engine, countLabel(keys), firstLine(err.Error())))
			}
			save()
		}
	}
	res.Finished = time.Now().UTC().Format(time.RFC3339)
	if ctx.Err() != nil {
		res.Notes = append(res.Notes, "interrupted: the results hold what was measured before")
	}
	save()
	logf(stderr, "done in %v", time.Since(t0).Round(time.Second))

	writeMarkdown(stdout, res)
	if o.out != "" {
		fmt.Fprintf(stdout, "\nResults: %s\n", o.out)
	}
	if o.png != "" {
		if err := writePNGFile(o.png, res); err != nil {
			return fmt.Errorf("rendering %s: %w", o.png, err)
		}
		fmt.Fprintf(stdout, "Charts: %s\n", o.png)
	}
	switch {
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case len(res.Failed) > 0:
		return fmt.Errorf("%d of %d clusters failed: %s", len(res.Failed), len(o.engines)*len(o.keys), strings.Join(res.Failed, "; "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newResults(o *options) *Results {
	host, _ := os.Hostname()
	res := &Results{
		Started: time.Now().UTC().Format(time.RFC3339),
		Host: HostInfo{
			Hostname: host, CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version(),
		},
		Config: Config{
			Engines:         o.engines,
			Keys:            o.keys,
			Clients:         o.clients,
			DurationSeconds: o.duration.Seconds(),
			ValueBytes:      o.valSize,
			Members:         o.members,
			PrefillClients:  o.prefillClients,
			MetcdFlags:      o.metcdFlags,
			Metcd:           o.metcd,
			Bench:           o.bench,
		},
		Runs:     []Run{},
		Clusters: []Cluster{},
	}
	for _, w := range o.workloads {
		res.Config.Workloads = append(res.Config.Workloads, w.Name)
	}
	for _, k := range o.keys {
		res.Config.KeyBytes = append(res.Config.KeyBytes, keyDigits(k))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("the members, the load generator and the prefill share this machine's %d CPUs", runtime.NumCPU()))
	return res
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Fprintln(os.Stderr, "\nmetcd-enginebench: stopping: ending the current step, stopping the members, keeping what was measured (again to quit at once)")
		cancel()
		<-sigc
		// The kernel kills the members (Pdeathsig); their data stays.
		fmt.Fprintln(os.Stderr, "metcd-enginebench: quitting; the work dir is left behind")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "metcd-enginebench:", err)
		os.Exit(1)
	}
}
