package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure one run.
type Options struct {
	Seed     int64         // drives the fault schedule, the workload and the links' randomness
	Duration time.Duration // how long faults are injected (at least one of each kind is, even if it takes longer)
	Engine   string        // --engine of every member
	Size     int           // members: 3 or 5
	Faults   []FaultKind   // kinds to inject (nil: AllFaults), in a seeded random order, cycling

	ClientsPerMember int           // clients connected to one member each (per member)
	SharedClients    int           // clients connected to every member
	Keys             int           // size of the key set
	Think            time.Duration // mean pause between a client's operations
	OpTimeout        time.Duration // deadline of one operation

	HoldMin, HoldMax time.Duration // how long a fault lasts
	GapMin, GapMax   time.Duration // quiet time between faults
	RecoveryTimeout  time.Duration // how long the cluster may take to be healthy after a heal
	CheckTimeout     time.Duration // porcupine's time limit

	// CompactEvery is how often a compactor compacts the key space's
	// history to the oldest revision every watcher has received (0: 1s;
	// negative: never). So compactions come right behind the writes, often
	// in the same raft batch, while no watcher ever needs a compacted
	// revision to resume.
	CompactEvery time.Duration

	SnapshotCount int // --snapshot-count (small, so snapshots and log compaction happen)
	HeartbeatMs   int // --heartbeat-interval
	ElectionMs    int // --election-timeout
	// MemberArgs are more flags for every member, after the ones above.
	MemberArgs []string

	// UnsafeSerializableReads makes the clients' reads serializable (local
	// to the member they reach), which is not linearizable: a self-test
	// showing that the checker catches stale reads. Never set otherwise.
	UnsafeSerializableReads bool

	Binary  string // the metcd binary; built from the module if empty
	OutDir  string // a failing run's history, visualisation and logs go in a folder here (default $TMPDIR/metcd-chaos)
	KeepDir bool   // keep the work dir (data dirs, logs) even if the run passes

	Logf func(format string, args ...any) // progress; nil: silent
}

func (o *Options) defaults() {
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	def(&o.Duration, 30*time.Second)
	if o.Engine == "" {
		o.Engine = "pebble"
	}
	defInt(&o.Size, 3)
	if len(o.Faults) == 0 {
		o.Faults = slices.Clone(AllFaults)
	}
	defInt(&o.ClientsPerMember, 2)
	if o.SharedClients < 0 {
		o.SharedClients = 0
	} else if o.SharedClients == 0 {
		o.SharedClients = 2
	}
	defInt(&o.Keys, 8)
	def(&o.Think, 10*time.Millisecond)
	def(&o.OpTimeout, 3*time.Second)
	def(&o.HoldMin, 1500*time.Millisecond)
	def(&o.HoldMax, 4*time.Second)
	def(&o.GapMin, 500*time.Millisecond)
	def(&o.GapMax, 1500*time.Millisecond)
	def(&o.RecoveryTimeout, 90*time.Second)
	def(&o.CheckTimeout, 2*time.Minute)
	if o.CompactEvery == 0 {
		o.CompactEvery = time.Second
	}
	defInt(&o.SnapshotCount, 300)
	defInt(&o.HeartbeatMs, 50)
	defInt(&o.ElectionMs, 500)
	if o.OutDir == "" {
		o.OutDir = filepath.Join(os.TempDir(), "metcd-chaos")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// ReplayCommand is the command that runs the same schedule again.
func (o *Options) ReplayCommand() string {
	faults := make([]string, len(o.Faults))
	for i, f := range o.Faults {
		faults[i] = string(f)
	}
	cmd := fmt.Sprintf("go run ./cmd/metcd-chaos --seed %d --engine %s --members %d --duration %v --faults %s",
		o.Seed, o.Engine, o.Size, o.Duration, strings.Join(faults, ","))
	if o.CompactEvery != time.Second {
		cmd += fmt.Sprintf(" --compact-every %v", o.CompactEvery)
	}
	if o.UnsafeSerializableReads {
		cmd += " --unsafe-serializable-reads"
	}
	return cmd
}

// Result is the outcome of a run.
type Result struct {
	Options     Options       `json:"-"`
	Elapsed     time.Duration `json:"elapsed"`
	Ops         Stats         `json:"ops"`
	Faults      []FaultRecord `json:"faults"`
	StartRev    int64         `json:"start_rev"`
	FinalRev    int64         `json:"final_rev"`
	Hashes      []string      `json:"hashes"` // per slot: "member <id>: <hash> @<rev>"
	Rewatches   int           `json:"rewatches"`
	Compactions int           `json:"compactions"` // compactions that succeeded
	CompactRev  int64         `json:"compact_rev"` // the last one's revision
	ProxyConns  int64         `json:"proxy_conns"`
	ProxyResets int64         `json:"proxy_resets"`
	Verdict     *Verdict      `json:"verdict"`
	// Problems lists everything that makes the run fail: safety
	// violations, crashes, a cluster that did not recover, diverging
	// hashes, harness errors.
	Problems    []string `json:"problems"`
	ArtifactDir string   `json:"artifact_dir,omitempty"`
	WorkDir     string   `json:"work_dir,omitempty"`
}

// OK reports whether the run found nothing wrong.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// FaultCounts counts the injected faults by kind.
func (r *Result) FaultCounts() map[FaultKind]int {
	m := map[FaultKind]int{}
	for _, f := range r.Faults {
		m[f.Kind]++
	}
	return m
}

// Summary is a one-paragraph account of the run.
func (r *Result) Summary() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "seed %d, engine %s, %d members, %v of faults (%v in all): ", o.Seed, o.Engine, o.Size, o.Duration, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "%d operations (%d ok, %d definitely failed, %d unknown)", r.Ops.Total, r.Ops.OK, r.Ops.Failed, r.Ops.Unkn)
	counts := r.FaultCounts()
	kinds := make([]string, 0, len(counts))
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "; %d faults [%s]", len(r.Faults), strings.Join(kinds, " "))
	if v := r.Verdict; v != nil {
		fmt.Fprintf(&b, "; porcupine: %d operations checked (%d never-applied unknown writes left out) -> %s in %v",
			v.Checked, v.Pruned, resultName(v.Linearizable), v.CheckTime.Round(time.Millisecond))
		fmt.Fprintf(&b, "; watch: %d revisions (%d..%d) on each of %d members, %d re-watches; %d lost acknowledged writes",
			v.WatchEvents, r.StartRev+1, r.FinalRev, o.Size, r.Rewatches, len(v.Lost))
	}
	if o.CompactEvery > 0 {
		fmt.Fprintf(&b, "; %d compactions (the last to revision %d)", r.Compactions, r.CompactRev)
	}
	if len(r.Hashes) > 0 {
		fmt.Fprintf(&b, "; HashKV: %s", strings.Join(r.Hashes, ", "))
	}
	fmt.Fprintf(&b, "; proxies: %d connections, %d reset by faults", r.ProxyConns, r.ProxyResets)
	if r.OK() {
		b.WriteString("; no problems found")
	} else {
		fmt.Fprintf(&b, "; %d PROBLEMS", len(r.Problems))
	}
	return b.String()
}

func resultName(r porcupine.CheckResult) string {
	switch r {
	case porcupine.Ok:
		return "linearizable"
	case porcupine.Illegal:
		return "NOT LINEARIZABLE"
	default:
		return "unknown (check timed out)"
	}
}

// Error describes a failed run with the seed to replay it.
func (r *Result) Error() error {
	if r.OK() {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run with seed %d failed (%d problems):\n", r.Options.Seed, len(r.Problems))
	for i, p := range r.Problems {
		if i == 30 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(r.Problems)-i)
			break
		}
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	if r.ArtifactDir != "" {
		fmt.Fprintf(&b, "history, visualisation and member logs: %s\n", r.ArtifactDir)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(&b, "data dirs kept in: %s\n", r.WorkDir)
	}
	fmt.Fprintf(&b, "replay: %s", r.Options.ReplayCommand())
	return errors.New(b.String())
}

// Run starts a cluster, runs the workload while injecting faults, and
// checks the history. The returned error is for a run that could not be
// carried out at all (no binary, no cluster); a run that found problems
// returns a Result whose Error() describes them.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	res := &Result{Options: opts}
	begin := time.Now()
	defer func() { res.Elapsed = time.Since(begin) }()
	logf := func(format string, args ...any) {
		opts.Logf("[%6.1fs] %s", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	problem := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		res.Problems = append(res.Problems, msg)
		logf("PROBLEM: %s", msg)
	}

	workDir, err := os.MkdirTemp("", "metcd-chaos-run-")
	if err != nil {
		return nil, err
	}
	keepWork := opts.KeepDir
	defer func() {
		if keepWork || !res.OK() {
			res.WorkDir = workDir
		} else {
			os.RemoveAll(workDir)
		}
	}()
	if opts.Binary == "" {
		logf("building metcd")
		if opts.Binary, err = BuildBinary(workDir); err != nil {
			return nil, err
		}
		res.Options.Binary = opts.Binary
	}

	c, err := NewCluster(ClusterConfig{
		Binary: opts.Binary, Dir: workDir, Size: opts.Size, Engine: opts.Engine,
		SnapshotCount: opts.SnapshotCount, HeartbeatMs: opts.HeartbeatMs, ElectionMs: opts.ElectionMs,
		Extra: opts.MemberArgs, Seed: opts.Seed, Logf: logf,
	})
	if err != nil {
		return nil, err
	}
	closed := false
	closeCluster := func() {
		if !closed {
			closed = true
			res.ProxyConns, res.ProxyResets = c.Net.Accepted.Load(), c.Net.Reset.Load()
			c.Close()
		}
	}
	defer closeCluster()
	if err := c.WaitHealthy(ctx, 60*time.Second); err != nil {
		keepWork = true
		return nil, fmt.Errorf("the cluster did not start (logs in %s): %w", workDir, err)
	}
	logf("cluster of %d up (engine %s), client endpoints %v", opts.Size, opts.Engine, c.Endpoints())

	admin, err := newClient(c.Endpoints())
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	const prefix = "/chaos/"
	keys := Keys(prefix, opts.Keys)
	gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
	gr, err := admin.Get(gctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	gcancel()
	if err != nil {
		return nil, fmt.Errorf("initial read: %w", err)
	}
	res.StartRev = gr.Header.Revision

	// Watchers, one per member, from the start.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var wwg sync.WaitGroup
	var watchers []*Watcher
	for i, s := range c.Slots {
		w, err := newWatcher(i, s.Endpoint, prefix, res.StartRev+1)
		if err != nil {
			return nil, err
		}
		watchers = append(watchers, w)
		wwg.Add(1)
		go func() { defer wwg.Done(); w.run(wctx) }()
	}

	// Clients.
	h := NewHistory()
	stats := &statsCounter{}
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	var lwg sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		for _, cli := range clients {
			cli.Close()
		}
	}()
	startWorker := func(id int, eps []string, ep string) error {
		cli, err := newClient(eps)
		if err != nil {
			return err
		}
		clients = append(clients, cli)
		w := &worker{
			id: id, endpoint: ep, cli: cli, rng: rand.New(rand.NewSource(opts.Seed*1000 + int64(id))),
			h: h, keys: keys, think: opts.Think, opTimeout: opts.OpTimeout, stats: stats,
			serializable: opts.UnsafeSerializableReads,
		}
		lwg.Add(1)
		go func() { defer lwg.Done(); w.run(lctx) }()
		return nil
	}
	id := 0
	for _, s := range c.Slots {
		for range opts.ClientsPerMember {
			if err := startWorker(id, []string{s.Endpoint}, s.Endpoint); err != nil {
				return nil, err
			}
			id++
		}
	}
	for range opts.SharedClients {
		if err := startWorker(id, c.Endpoints(), "*"); err != nil {
			return nil, err
		}
		id++
	}
	logf("%d clients on keys %s..%s, %d watchers from revision %d", id, keys[0], keys[len(keys)-1], len(watchers), res.StartRev+1)
	if opts.CompactEvery > 0 {
		cp := &compactor{cli: admin, watchers: watchers, every: opts.CompactEvery, timeout: opts.OpTimeout}
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			res.Compactions, res.CompactRev = cp.run(lctx)
		}()
	}

	// Faults.
	inj := &injector{c: c, rng: rand.New(rand.NewSource(opts.Seed)), admin: admin, logf: logf}
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(inj.rng.Int63n(int64(hi-lo)))
	}
	var order []FaultKind
	injected := map[FaultKind]bool{}
	deadline := time.Now().Add(opts.Duration)
	healthy := true
	for ctx.Err() == nil {
		done := time.Now().After(deadline)
		for _, k := range opts.Faults {
			if !injected[k] {
				done = false
			}
		}
		if done {
			break
		}
		if err := sleepCtx(ctx, between(opts.GapMin, opts.GapMax)); err != nil {
			break
		}
		if len(order) == 0 {
			order = slices.Clone(opts.Faults)
			inj.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		kind := order[0]
		order = order[1:]
		injected[kind] = true
		rec := FaultRecord{Kind: kind, Start: time.Since(begin)}
		desc, heal, err := inj.inject(ctx, kind)
		rec.Desc = desc
		logf("fault %s: %s", kind, desc)
		if err != nil {
			rec.Err = err.Error()
			problem("fault %s (%s): %v", kind, desc, err)
		}
		if !quick(kind) {
			sleepCtx(ctx, between(opts.HoldMin, opts.HoldMax))
		}
		if err := heal(); err != nil {
			rec.Err = err.Error()
			problem("healing %s (%s): %v", kind, desc, err)
		}
		rec.Heal = time.Since(begin)
		err = c.WaitHealthy(ctx, opts.RecoveryTimeout)
		rec.Ready = time.Since(begin)
		res.Faults = append(res.Faults, rec)
		if err != nil {
			problem("after %s (%s), healed at %.1fs: %v", kind, desc, rec.Heal.Seconds(), err)
			healthy = false
			break
		}
		logf("healed; cluster healthy %.1fs after the heal", (rec.Ready - rec.Heal).Seconds())
	}

	// Let the clients run on a healthy cluster for a moment, then stop them.
	sleepCtx(ctx, time.Second)
	lcancel()
	lwg.Wait()
	res.Ops = stats.snapshot()
	logf("clients stopped: %d operations (%d ok, %d failed, %d unknown)", res.Ops.Total, res.Ops.OK, res.Ops.Failed, res.Ops.Unkn)

	if healthy {
		if err := c.WaitHealthy(ctx, opts.RecoveryTimeout); err != nil {
			problem("at the end: %v", err)
			healthy = false
		}
	}
	finalRev := int64(0)
	if healthy {
		if err := finalReads(ctx, admin, h, keys); err != nil {
			problem("%v", err)
		}
		for _, r := range h.Records() {
			if r.Worker == -1 && r.Out.Rev > finalRev {
				finalRev = r.Out.Rev
			}
		}
		res.FinalRev = finalRev
		// Every watcher reaches the final revision.
		wt, wtcancel := context.WithTimeout(ctx, 60*time.Second)
		for _, w := range watchers {
			if err := w.waitFor(wt, finalRev); err != nil {
				problem("%v", err)
			}
		}
		wtcancel()
		// Every member has the same key space history at the final revision.
		res.Hashes = hashes(ctx, c, admin, finalRev, problem)
		if err := c.CheckMembership(ctx, admin); err != nil {
			problem("membership at the end: %v", err)
		}
	}
	wcancel()
	wwg.Wait()
	for _, w := range watchers {
		n, _ := w.Rewatches()
		res.Rewatches += n
	}
	for _, cr := range c.Crashes() {
		problem("%s", cr)
	}
	closeCluster()

	{
		// A run whose cluster did not recover is still checked for
		// linearizability, without the end-of-run checks.
		var watches map[int][]Event
		if healthy && finalRev > 0 {
			watches = map[int][]Event{}
			for _, w := range watchers {
				watches[w.Slot] = w.Events()
			}
		}
		logf("checking %d operations (porcupine, time limit %v)", len(h.Records()), opts.CheckTimeout)
		v := Check(h.Records(), watches, res.StartRev, finalRev, opts.CheckTimeout)
		res.Verdict = v
		res.Problems = append(res.Problems, v.Violations...)
		if v.Linearizable == porcupine.Unknown {
			problem("porcupine did not finish within %v: linearizability not established (raise --check-timeout)", opts.CheckTimeout)
		}
	}
	if !res.OK() {
		res.Elapsed = time.Since(begin)
		res.ArtifactDir = writeArtifacts(res, h, watchers, c, workDir)
	}
	return res, nil
}

func (c *statsCounter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.s
	out := Stats{Total: s.Total, OK: s.OK, Failed: s.Failed, Unkn: s.Unkn, ByKind: map[OpKind]int{}, Errors: map[string]int{}}
	for k, v := range s.ByKind {
		out.ByKind[k] = v
	}
	for k, v := range s.Errors {
		out.Errors[k] = v
	}
	return out
}

// hashes asks every member for HashKV at rev and reports a difference.
func hashes(ctx context.Context, c *Cluster, cli *clientv3.Client, rev int64, problem func(string, ...any)) []string {
	var out []string
	var first *clientv3.HashKVResponse
	firstID := uint64(0)
	for i, s := range c.Slots {
		var resp *clientv3.HashKVResponse
		var err error
		for attempt := 0; attempt < 30; attempt++ {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err = cli.HashKV(hctx, s.Endpoint, rev)
			cancel()
			if err == nil {
				break
			}
			sleepCtx(ctx, time.Second)
		}
		if err != nil {
			problem("HashKV(%d) on member %d: %v", rev, c.ID(i), err)
			continue
		}
		out = append(out, fmt.Sprintf("member %d %08x@%d", c.ID(i), resp.Hash, resp.HashRevision))
		if first == nil {
			first, firstID = resp, c.ID(i)
			continue
		}
		if resp.Hash != first.Hash || resp.HashRevision != first.HashRevision || resp.CompactRevision != first.CompactRevision {
			problem("HashKV(%d) differs: member %d has %08x (hash revision %d, compact %d), member %d has %08x (hash revision %d, compact %d)",
				rev, firstID, first.Hash, first.HashRevision, first.CompactRevision, c.ID(i), resp.Hash, resp.HashRevision, resp.CompactRevision)
		}
	}
	return out
}

// writeArtifacts saves what a failing run needs to be understood: the
// history (JSON), porcupine's visualisation, the watch events, the fault
// log, a summary and the member logs. It returns the folder.
func writeArtifacts(res *Result, h *History, watchers []*Watcher, c *Cluster, workDir string) string {
	o := res.Options
	dir := filepath.Join(o.OutDir, fmt.Sprintf("seed%d-%s-%s", o.Seed, o.Engine, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("cannot write the history: %v", err))
		return ""
	}
	writeJSON := func(name string, v any) {
		b, err := json.MarshalIndent(v, "", " ")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("writing %s: %v", name, err))
		}
	}
	recs := h.Records()
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Call < recs[j].Call })
	writeJSON("history.json", recs)
	writeJSON("faults.json", res.Faults)
	for _, w := range watchers {
		writeJSON(fmt.Sprintf("watch-slot%d.json", w.Slot), w.Events())
	}
	writeJSON("result.json", res)
	summary := res.Summary() + "\n\n" + res.Error().Error() + "\n"
	os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(summary), 0o644)
	if res.Verdict != nil {
		if err := res.Verdict.Visualize(filepath.Join(dir, "linearizability.html")); err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("visualisation: %v", err))
		}
	}
	logs, _ := filepath.Glob(filepath.Join(workDir, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			os.WriteFile(filepath.Join(dir, filepath.Base(l)), b, 0o644)
		}
	}
	return dir
}
