// Command metcd-benchcompare measures metcd and etcd side by side on this
// machine and writes docs/performance.md, docs/performance.png and
// docs/performance-results.json.
//
// It builds metcd and metcd-bench from this module, gets an etcd server
// v3.7.3 (built from the go.etcd.io/etcd/server/v3 module in a temporary
// module of its own; see obtainEtcd for the fallbacks), and then runs two
// parts (--parts):
//
//   - compare: the same metcd-bench workloads against a 3-member metcd
//     cluster of each engine of --metcd-engines and a 3-member etcd
//     cluster, all on loopback with the same settings (fsync on, heartbeat
//     100ms, election timeout 1000ms, snapshot count 10000, quota 8 GiB),
//     one cluster at a time and each run on a fresh cluster, alternating
//     the systems within each workload and round so that drift in the
//     machine affects them alike. The workloads are the reference
//     settings: 8-byte keys, 256-byte values; put with 1 client (on the
//     leader) and with 100; linearizable and serializable range, txn
//     compare-and-swap and a 90/10 read/write mix with 100 clients, over
//     10k prefilled keys; watch event latency (100 watchers on one key, 100
//     puts/s).
//   - growth: the cost as the work grows, per key count of --growth-keys
//     (default 10k and 1M): prefill time, memory (VmRSS of each member),
//     put and range throughput, the restart of a follower holding the
//     keys, and the catch-up of a new member by snapshot.
//
// Running one part keeps the other's results from the existing JSON file,
// so the page stays whole. --quick makes a short smoke run (results marked
// as such).
//
//	make bench-compare                                  # everything, about 35 minutes on 2 cores
//	go run ./cmd/metcd-benchcompare --quick             # a smoke run of a few minutes
//	go run ./cmd/metcd-benchcompare --parts growth --growth-keys 10k,1M,10M
//
// Exit status: 0 if everything was measured, 1 if something failed or it
// was interrupted (what was measured is written), 2 for bad flags.
package main

import (
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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the parsed flags.
type options struct {
	parts          []string
	quick          bool
	duration       time.Duration
	warmup         time.Duration
	rounds         int
	workloadNames  []string
	workloads      []workloadSpec
	engines        []string
	etcd           string
	apt            bool
	members        int
	clients        int
	conns          int
	keySpace       int64
	putKeySpace    int64
	keySize        int
	valSize        int
	watchers       int
	watchStreams   int
	watchKeys      int64
	watchRate      float64
	growthKeys     []int64
	growthDuration time.Duration
	set            settings
	outMD, outJSON string
	outPNG         string
	workDir        string
	keep           bool
	metcd, bench   string
	requestTimeout time.Duration
	readyTimeout   time.Duration
	prefillTimeout time.Duration
	settleTimeout  time.Duration
	catchupTimeout time.Duration
	stopGrace      time.Duration
}

var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("metcd-benchcompare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "metcd-benchcompare measures metcd and etcd side by side on this machine and writes\ndocs/performance.md, docs/performance.png and docs/performance-results.json.\n\nUsage: metcd-benchcompare [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var parts, workloads, engines, growthKeys, quota string
	fs.StringVar(&parts, "parts", "compare,growth", "what to run: compare (the workloads side by side), growth (cost as the key count grows), or both; report alone re-renders the page and chart from --json")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run: --duration 2s, --warmup 0, --rounds 1, --growth-keys 10k, --growth-duration 2s (unless set); results are marked as such")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of each measured run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured run of the workload before each measured one (not for watch)")
	fs.IntVar(&o.rounds, "rounds", 2, "runs of each workload on each system, alternating the systems")
	fs.StringVar(&workloads, "workloads", "", "comma-separated workloads to run (default all: put-1, put-N, range-l-N, range-s-N, txn-N, watch, mixed-N, where N is --clients)")
	fs.StringVar(&engines, "metcd-engines", "pebble,memory", "comma-separated metcd engines to measure, each as its own system")
	fs.StringVar(&o.etcd, "etcd", "", "etcd binary to use (default: build etcd v3.7.3 from its module)")
	fs.BoolVar(&o.apt, "apt", true, "if etcd v3.7.3 cannot be built and there is no etcd on $PATH, apt-get install Debian's etcd-server")
	fs.IntVar(&o.members, "members", 3, "cluster size of both systems")
	fs.IntVar(&o.clients, "clients", 100, "clients of the many-client workloads")
	fs.IntVar(&o.conns, "conns", 12, "gRPC connections the many clients share, spread over the members")
	fs.Int64Var(&o.keySpace, "key-space", 10000, "prefilled keys of the range, txn and mixed workloads")
	fs.Int64Var(&o.putKeySpace, "put-key-space", 100000, "keys the put workloads write (at random)")
	fs.IntVar(&o.keySize, "key-size", 8, "bytes per key")
	fs.IntVar(&o.valSize, "val-size", 256, "bytes per value")
	fs.IntVar(&o.watchers, "watchers", 100, "watch: watchers")
	fs.IntVar(&o.watchStreams, "watch-streams", 10, "watch: gRPC watch streams")
	fs.Int64Var(&o.watchKeys, "watch-keys", 1, "watch: keys watched (watcher j on key j mod this)")
	fs.Float64Var(&o.watchRate, "watch-rate", 100, "watch: puts per second")
	fs.StringVar(&growthKeys, "growth-keys", "10k,1M", "growth: comma-separated key counts (k and M suffixes; 10M takes long and needs ~10 GiB of disk per system)")
	fs.DurationVar(&o.growthDuration, "growth-duration", 10*time.Second, "growth: length of the put and range runs at each key count")
	fs.IntVar(&o.set.HeartbeatMs, "heartbeat-interval", 100, "both systems' --heartbeat-interval, ms")
	fs.IntVar(&o.set.ElectionMs, "election-timeout", 1000, "both systems' --election-timeout, ms")
	fs.IntVar(&o.set.SnapshotCount, "snapshot-count", 10000, "both systems' --snapshot-count")
	fs.StringVar(&quota, "quota-backend-bytes", "8GiB", "both systems' --quota-backend-bytes (a byte count, or with KiB, MiB, GiB)")
	fs.StringVar(&o.set.LogLevel, "log-level", "warn", "both systems' --log-level (their logs are in the work dir)")
	fs.StringVar(&o.outMD, "out", "docs/performance.md", "write the report here")
	fs.StringVar(&o.outJSON, "json", "docs/performance-results.json", "write the raw results here (and read the other part's from it)")
	fs.StringVar(&o.outPNG, "png", "docs/performance.png", "write the chart here")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for binaries, data dirs and logs (default: a new temporary directory); it must be on a real disk, not tmpfs")
	fs.BoolVar(&o.keep, "keep", false, "keep the data dirs and logs")
	fs.StringVar(&o.metcd, "metcd", "", "metcd binary (default: go build ./cmd/metcd)")
	fs.StringVar(&o.bench, "bench", "", "metcd-bench binary (default: go build ./cmd/metcd-bench)")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "timeout of each request")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", time.Minute, "how long a cluster may take to elect a leader")
	fs.DurationVar(&o.prefillTimeout, "prefill-timeout", 5*time.Minute, "how long a prefill may take (growth: plus 1ms per key)")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 2*time.Minute, "how long members may take to apply everything committed")
	fs.DurationVar(&o.catchupTimeout, "catchup-timeout", 10*time.Minute, "how long a restarted or new member may take to catch up")
	fs.DurationVar(&o.stopGrace, "stop-grace", 20*time.Second, "how long a member may take to exit after SIGTERM before it is killed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(format string, a ...any) (*options, error) {
		fmt.Fprintf(stderr, "metcd-benchcompare: "+format+"\n", a...)
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.quick {
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 0
		}
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["growth-keys"] {
			growthKeys = "10k"
		}
		if !set["growth-duration"] {
			o.growthDuration = 2 * time.Second
		}
	}
	o.parts = splitList(parts)
	if len(o.parts) == 0 {
		return bad("--parts: none given")
	}
	for _, p := range o.parts {
		if p != "compare" && p != "growth" && p != "report" {
			return bad("--parts: unknown part %q: want compare, growth or report", p)
		}
		if p == "report" && len(o.parts) > 1 {
			return bad("--parts: report re-renders the page from --json and runs nothing; give it alone")
		}
	}
	o.engines = splitList(engines)
	if len(o.engines) == 0 {
		return bad("--metcd-engines: none given")
	}
	var err error
	if o.growthKeys, err = parseCounts(growthKeys); err != nil {
		return bad("--growth-keys: %v", err)
	}
	if o.set.QuotaBytes, err = parseBytes(quota); err != nil {
		return bad("--quota-backend-bytes: %v", err)
	}
	switch {
	case o.duration < 100*time.Millisecond || o.growthDuration < 100*time.Millisecond:
		return bad("--duration and --growth-duration must be at least 100ms")
	case o.warmup < 0:
		return bad("--warmup must not be negative")
	case o.rounds < 1:
		return bad("--rounds must be at least 1")
	case o.members < 1:
		return bad("--members must be at least 1")
	case o.clients < 1 || o.conns < 1:
		return bad("--clients and --conns must be at least 1")
	case o.keySpace < 1 || o.putKeySpace < 1 || o.watchKeys < 1:
		return bad("key spaces must be at least 1")
	case o.keySize < len(strconv.FormatInt(max(o.keySpace, o.putKeySpace)-1, 10)):
		return bad("--key-size %d is too short for the key spaces", o.keySize)
	case o.valSize < 8:
		return bad("--val-size must be at least 8 (watch values carry a time stamp)")
	case o.watchers < 1 || o.watchStreams < 1 || o.watchRate <= 0:
		return bad("--watchers, --watch-streams and --watch-rate must be positive")
	case o.set.HeartbeatMs < 1 || o.set.ElectionMs <= o.set.HeartbeatMs || o.set.SnapshotCount < 1:
		return bad("bad raft settings")
	case o.requestTimeout <= 0 || o.readyTimeout <= 0 || o.prefillTimeout <= 0 || o.settleTimeout <= 0 || o.catchupTimeout <= 0 || o.stopGrace <= 0:
		return bad("timeouts must be positive")
	}
	all := allWorkloads(o)
	o.workloadNames = splitList(workloads)
	if len(o.workloadNames) == 0 {
		o.workloads = all
	} else {
		for _, n := range o.workloadNames {
			found := false
			for _, w := range all {
				if w.Name == n {
					o.workloads, found = append(o.workloads, w), true
				}
			}
			if !found {
				var names []string
				for _, w := range all {
					names = append(names, w.Name)
				}
				return bad("--workloads: unknown workload %q: want %s", n, strings.Join(names, ", "))
			}
		}
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

// parseCounts parses "10k,1M,2500": positive whole numbers with optional k
// and M suffixes, no repeats.
func parseCounts(s string) ([]int64, error) {
	var out []int64
	for _, f := range splitList(s) {
		mult, num := 1.0, f
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
		if v < 1 || v > 1e10 || v != math.Trunc(v) {
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

// parseBytes parses "8GiB", "512MiB", "1024".
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	return n * mult, nil
}

// env is one invocation's state.
type env struct {
	o        *options
	work     string
	root     string // the module root
	command  string
	settings settings
	systems  []system
	res      *Results
	stderr   io.Writer
	tty      bool
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.stderr, "\r\033[Kmetcd-benchcompare %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// progress draws "label: 7s/20s" on a terminal until the returned func is
// called (expect 0: no known length).
func (e *env) progress(label string, expect time.Duration) func() {
	if !e.tty {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t0 := time.Now()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprint(e.stderr, "\r\033[K")
				return
			case <-tick.C:
				el := time.Since(t0).Round(time.Second)
				if expect > 0 {
					fmt.Fprintf(e.stderr, "\r\033[K%s: %v/%v", label, el, expect)
				} else {
					fmt.Fprintf(e.stderr, "\r\033[K%s: %v", label, el)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// save writes the JSON results (atomically), after every step.
func (e *env) save() {
	if e.o.outJSON == "" {
		return
	}
	if err := writeJSONFile(e.o.outJSON, e.res); err != nil {
		e.logf("writing %s: %v", e.o.outJSON, err)
	}
}

// moduleRoot is the directory of the go.mod around the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the metcd module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// buildMetcd builds metcd and metcd-bench into dir.
func buildMetcd(ctx context.Context, root, dir string) (metcd, bench string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if _, err := goCmd(ctx, root, nil, "build", "-o", dir+string(filepath.Separator), "./cmd/metcd", "./cmd/metcd-bench"); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "metcd"), filepath.Join(dir, "metcd-bench"), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	e := &env{o: o, settings: o.set, stderr: stderr, tty: tty,
		command: "go run ./cmd/metcd-benchcompare " + strings.Join(args, " ")}
	e.command = strings.TrimSpace(e.command)

	if e.root, err = moduleRoot(ctx); err != nil {
		return err
	}
	// Outputs are relative to the repository root (docs/...), wherever we run.
	for _, p := range []*string{&o.outMD, &o.outJSON, &o.outPNG} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(e.root, *p)
		}
	}
	if len(o.parts) == 1 && o.parts[0] == "report" {
		e.res = loadResults(o.outJSON)
		return e.writeReport(stdout)
	}
	work := o.workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "metcd-benchcompare-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if e.work, err = filepath.Abs(work); err != nil {
		return err
	}
	defer func() {
		switch {
		case o.keep:
			e.logf("kept binaries, data dirs and logs in %s", e.work)
		case o.workDir == "":
			os.RemoveAll(e.work)
		default:
			os.RemoveAll(filepath.Join(e.work, "bin"))
			os.RemoveAll(filepath.Join(e.work, "etcd-module"))
		}
	}()
	binDir := filepath.Join(e.work, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}

	// The previous results: the part not run now is kept.
	e.res = loadResults(o.outJSON)
	e.res.Failed, e.res.Notes = nil, nil
	e.res.Machine = machineFacts(e.work)
	e.res.Settings = o.set
	if strings.HasPrefix(e.res.Machine.WorkDirFS, "tmpfs") {
		e.res.Notes = append(e.res.Notes, "the data dirs were on tmpfs, where fsync costs nothing: the figures do not show disk costs (use --work-dir on a disk)")
		e.logf("warning: %s is on tmpfs; fsync costs nothing there (use --work-dir on a disk)", e.work)
	}

	if o.metcd == "" || o.bench == "" {
		e.logf("building metcd and metcd-bench from %s", e.root)
		m, b, err := buildMetcd(ctx, e.root, binDir)
		if err != nil {
			return err
		}
		if o.metcd == "" {
			o.metcd = m
		}
		if o.bench == "" {
			o.bench = b
		}
	}
	for _, p := range []*string{&o.metcd, &o.bench} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	e.res.Metcd = MetcdInfo{Source: gitDescribe(ctx, e.root), Engines: o.engines}

	info, err := obtainEtcd(ctx, o, e.work, binDir, e.root, e.logf)
	if err != nil {
		return fmt.Errorf("getting an etcd server: %w", err)
	}
	e.res.Etcd = info
	e.logf("etcd %s: %s (%s)", info.Version, info.Path, info.Source)
	if "v"+info.Version != etcdVersion {
		e.res.Notes = append(e.res.Notes, fmt.Sprintf("the etcd measured is %s, not %s (%s)", info.Version, etcdVersion, info.Source))
	}

	for _, eng := range o.engines {
		e.systems = append(e.systems, system{Name: "metcd-" + eng, Kind: kindMetcd, Engine: eng, Bin: o.metcd})
	}
	e.systems = append(e.systems, system{Name: "etcd", Kind: kindEtcd, Bin: info.Path})
	e.res.Notes = append(e.res.Notes, fmt.Sprintf("the members of the cluster, the load generator and this tool share the machine's %d CPUs and its disk", e.res.Machine.CPUs))

	t0 := time.Now()
	for _, part := range o.parts {
		switch part {
		case "compare":
			e.runCompare(ctx)
		case "growth":
			e.runGrowth(ctx)
		}
	}
	e.logf("measured in %v", time.Since(t0).Round(time.Second))
	e.res.Generated = nowUTC()
	e.save()

	if err := e.writeReport(stdout); err != nil {
		return err
	}
	switch {
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case len(e.res.Failed) > 0:
		return fmt.Errorf("%d runs failed: %s", len(e.res.Failed), strings.Join(e.res.Failed, "; "))
	}
	return nil
}

// isTerminal reports whether f looks like a terminal: a character device
// other than /dev/null.
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
	ctx, cancel := context.WithCancel(context.Background())
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Fprintln(os.Stderr, "\nmetcd-benchcompare: stopping: ending the current run, stopping the members, writing what was measured (again to quit at once)")
		cancel()
		<-sigc
		fmt.Fprintln(os.Stderr, "metcd-benchcompare: quitting; the work dir is left behind")
		os.Exit(130)
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "metcd-benchcompare:", err)
		os.Exit(1)
	}
}

// analysisFile is the hand-written account of where the time goes, next to
// the page; the page embeds it.
const analysisFile = "performance-analysis.md"

// writeReport writes the page and the chart from e.res.
func (e *env) writeReport(stdout io.Writer) error {
	var analysis string
	if e.o.outMD != "" {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(e.o.outMD), analysisFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		analysis = string(b)
	}
	if e.o.outMD != "" {
		if err := writeFileAtomic(e.o.outMD, []byte(markdown(e.res, filepath.Base(e.o.outPNG), filepath.Base(e.o.outJSON), analysis))); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Report: %s\n", e.o.outMD)
	}
	if e.o.outPNG != "" {
		if err := writePNGFile(e.o.outPNG, e.res); err != nil {
			return fmt.Errorf("rendering %s: %w", e.o.outPNG, err)
		}
		fmt.Fprintf(stdout, "Chart:  %s\n", e.o.outPNG)
	}
	if e.o.outJSON != "" {
		fmt.Fprintf(stdout, "Raw:    %s\n", e.o.outJSON)
	}
	return nil
}
