package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Workloads.
const (
	workloadPut   = "put"
	workloadRange = "range" // "get" is accepted as another name
	workloadTxn   = "txn"
	workloadWatch = "watch"
	workloadMixed = "mixed"
)

// Protocols.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http"
)

// op indexes per-operation statistics.
type op int

const (
	opPut   op = iota
	opRange    // a single-key read (HTTP GET, gRPC Range)
	opTxn      // compare-and-swap
	opWatch    // a watch event received (its latency: from the put's start)
	numOps
)

func (o op) String() string { return [...]string{"put", "range", "txn", "watch"}[o] }

// config is a validated run description; see the flags in main.go.
type config struct {
	Protocol       string
	Workload       string
	ReadRatio      float64 // share of ranges in the mixed workload
	Serializable   bool    // ranges are serializable (local) reads
	Clients        int
	Total          int64         // requests to issue (puts, for watch); 0: no limit (Duration is set)
	Duration       time.Duration // stop issuing after this; 0: no limit (Total is set)
	Warmup         time.Duration // unmeasured run of the workload first
	Rate           float64       // most requests per second over all clients; 0: no limit
	KeyPrefix      string
	KeySize        int // digits of the key index
	ValSize        int
	KeySpace       int64
	SequentialKeys bool
	Prefill        bool
	PrefillOnly    bool
	PrefillBatch   int    // keys per prefill request, where the protocol has transactions
	TxnCompare     string // "mod" (mod_revision) or "value"
	Watchers       int
	WatchStreams   int
	Timeout        time.Duration // per request
	Seed           uint64
}

// keyspaceDigits is the number of decimal digits needed for indices below n.
func keyspaceDigits(n int64) int {
	if n <= 1 {
		return 1
	}
	return len(strconv.FormatInt(n-1, 10))
}

// makeKey writes key number i as prefix + i zero-padded to size digits into
// buf and returns it.
func makeKey(buf []byte, prefix string, size int, i int64) []byte {
	buf = append(buf[:0], prefix...)
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], i, 10)
	for n := len(d); n < size; n++ {
		buf = append(buf, '0')
	}
	return append(buf, d...)
}

// makeValue returns n printable pseudo-random bytes.
func makeValue(n int, seed uint64) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	v := make([]byte, n)
	for i := range v {
		v[i] = alphabet[r.IntN(len(alphabet))]
	}
	return v
}

// prefillWorkers is the least concurrency of the prefill.
const prefillWorkers = 16

// prefillAttempts is how often a prefill request is tried before the
// prefill fails (puts of a fixed value can be repeated).
const prefillAttempts = 5

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stats is what one worker (and, merged, the run) measured.
type stats struct {
	requests  [numOps]int64
	ok        [numOps]int64
	misses    int64 // ranges of an absent key: successful, but worth reporting
	casFailed int64 // txns whose compare failed (the key had changed): successful
	lat       [numOps]*histogram
	errs      map[string]int64  // by errorKind
	sample    map[string]string // one error message per kind
}

func newStats() *stats {
	s := &stats{errs: map[string]int64{}, sample: map[string]string{}}
	for i := range s.lat {
		s.lat[i] = newHistogram()
	}
	return s
}

// fail counts err (of a request of op o, already counted in requests).
func (s *stats) fail(kind, msg string) {
	s.errs[kind]++
	if _, ok := s.sample[kind]; !ok {
		s.sample[kind] = msg
	}
}

func (s *stats) merge(o *stats) {
	for i := range s.requests {
		s.requests[i] += o.requests[i]
		s.ok[i] += o.ok[i]
		s.lat[i].Merge(o.lat[i])
	}
	s.misses += o.misses
	s.casFailed += o.casFailed
	for k, n := range o.errs {
		s.errs[k] += n
		if _, ok := s.sample[k]; !ok {
			s.sample[k] = o.sample[k]
		}
	}
}

// progress is updated by workers with atomics and read by the progress line.
type progress struct {
	done   atomic.Int64 // requests completed (puts, for watch)
	failed atomic.Int64
	events atomic.Int64 // watch events received
}

// bench runs one workload over targets (worker i uses targets[i%len]).
type bench struct {
	cfg     config
	targets []target
	watch   []watchConn // for the watch workload: the gRPC connections
	value   []byte
	revs    []atomic.Int64 // txn: the last mod revision seen of each key, shared by all clients
	prog    progress       // of the measured run
	pre     progress       // of the prefill
	issued  atomic.Int64   // requests claimed so far (for --total)
	seq     atomic.Int64   // next key for --sequential-keys
	paced   atomic.Int64   // requests scheduled so far (for --rate)
	start   time.Time
}

func newBench(cfg config, targets []target) *bench {
	b := &bench{cfg: cfg, targets: targets, value: makeValue(cfg.ValSize, cfg.Seed)}
	if cfg.Workload == workloadTxn && cfg.TxnCompare == "mod" {
		b.revs = make([]atomic.Int64, cfg.KeySpace)
	}
	return b
}

// prefill writes every key of the key space once, with cfg.Clients workers
// (at least prefillWorkers: it is not measured, so it may as well be quick),
// in transactions of cfg.PrefillBatch puts where the target has them. A
// failed request is retried (prefillAttempts in all) before the prefill
// fails.
func (b *bench) prefill(ctx context.Context) error {
	batch := int64(1)
	if _, ok := b.targets[0].(batchPutter); ok && b.cfg.PrefillBatch > 1 {
		batch = int64(b.cfg.PrefillBatch)
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < max(b.cfg.Clients, prefillWorkers); w++ {
		t := b.targets[w%len(b.targets)]
		wg.Go(func() {
			keys := make([][]byte, batch)
			for ctx.Err() == nil {
				i := next.Add(batch) - batch
				if i >= b.cfg.KeySpace {
					return
				}
				n := min(batch, b.cfg.KeySpace-i)
				for j := range n {
					keys[j] = makeKey(keys[j], b.cfg.KeyPrefix, b.cfg.KeySize, i+j)
				}
				var err error
				for attempt := range prefillAttempts {
					if attempt > 0 {
						sleepCtx(ctx, time.Duration(100<<attempt)*time.Millisecond)
					}
					rctx, rcancel := context.WithTimeout(ctx, b.cfg.Timeout)
					if batch > 1 {
						err = t.(batchPutter).PutBatch(rctx, keys[:n], b.value)
					} else {
						err = t.Put(rctx, keys[0], b.value)
					}
					rcancel()
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					once.Do(func() {
						firstErr = fmt.Errorf("prefill: put %s: %w", keys[0], err)
						cancel()
					})
					return
				}
				b.pre.done.Add(n)
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return fmt.Errorf("prefill interrupted: %w", context.Cause(ctx))
	}
	return firstErr
}

// pace waits for this request's slot under cfg.Rate (if set): request n
// (over all clients) starts at start + n/rate. It returns false if stop is
// closed or the deadline passes first.
func (b *bench) pace(deadline time.Time, stop <-chan struct{}) bool {
	if b.cfg.Rate <= 0 {
		return true
	}
	n := b.paced.Add(1) - 1
	at := b.start.Add(time.Duration(float64(n) / b.cfg.Rate * float64(time.Second)))
	if !deadline.IsZero() && !at.Before(deadline) {
		return false
	}
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// claim reports whether the worker may issue another request: --total not
// reached, the deadline not passed, stop not closed, and (with --rate) its
// slot come.
func (b *bench) claim(deadline time.Time, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return false
	default:
	}
	if b.cfg.Total > 0 && b.issued.Add(1) > b.cfg.Total {
		return false
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return false
	}
	return b.pace(deadline, stop)
}

// nextKey picks the index of the next key.
func (b *bench) nextKey(r *rand.Rand) int64 {
	if b.cfg.SequentialKeys {
		return (b.seq.Add(1) - 1) % b.cfg.KeySpace
	}
	return r.Int64N(b.cfg.KeySpace)
}

// run issues requests until cfg.Total have been claimed, cfg.Duration has
// passed or stop is done, whichever comes first; requests in flight then
// complete (each bounded by cfg.Timeout) and are counted. It returns the
// merged statistics and the elapsed time from the first request to the last
// response. The watch workload runs in runWatch; only it can fail as a
// whole (its watches must be created).
func (b *bench) run(stop <-chan struct{}) (*stats, time.Duration, error) {
	if b.cfg.Workload == workloadWatch {
		return b.runWatch(stop)
	}
	b.start = time.Now()
	var deadline time.Time
	if b.cfg.Duration > 0 {
		deadline = b.start.Add(b.cfg.Duration)
	}
	results := make([]*stats, b.cfg.Clients)
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.Clients; w++ {
		wg.Go(func() {
			results[w] = b.worker(w, deadline, stop)
		})
	}
	wg.Wait()
	elapsed := time.Since(b.start)
	total := newStats()
	for _, s := range results {
		total.merge(s)
	}
	return total, elapsed, nil
}

func (b *bench) worker(w int, deadline time.Time, stop <-chan struct{}) *stats {
	s := newStats()
	t := b.targets[w%len(b.targets)]
	r := rand.New(rand.NewPCG(b.cfg.Seed, uint64(w)+1))
	var key []byte
	for b.claim(deadline, stop) {
		i := b.nextKey(r)
		key = makeKey(key, b.cfg.KeyPrefix, b.cfg.KeySize, i)
		o := opPut
		switch b.cfg.Workload {
		case workloadRange:
			o = opRange
		case workloadTxn:
			o = opTxn
		case workloadMixed:
			if r.Float64() < b.cfg.ReadRatio {
				o = opRange
			}
		}

		// In-flight requests are not tied to stop or the deadline: they
		// finish and count, bounded by the per-request timeout.
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
		t0 := time.Now()
		var err error
		switch o {
		case opPut:
			err = t.Put(ctx, key, b.value)
		case opRange:
			err = t.Get(ctx, key)
		case opTxn:
			err = b.cas(ctx, t.(txnTarget), key, i, s)
		}
		lat := time.Since(t0)
		cancel()

		s.requests[o]++
		if errors.Is(err, errNotFound) {
			s.misses++
			err = nil
		}
		if err != nil {
			s.fail(errorKind(err), err.Error())
			b.prog.failed.Add(1)
		} else {
			s.ok[o]++
			s.lat[o].Record(lat)
		}
		b.prog.done.Add(1)
	}
	return s
}

// cas is one compare-and-swap of key (number i): with --txn-compare mod,
// "if the key's mod_revision is the last one any client saw, put the value,
// else read the key" (the read teaches the clients the current revision);
// with value, "if the key holds the value every put writes, put it again".
func (b *bench) cas(ctx context.Context, t txnTarget, key []byte, i int64, s *stats) error {
	c := casCompare{byValue: b.cfg.TxnCompare == "value", value: b.value}
	if !c.byValue {
		c.modRev = b.revs[i].Load()
	}
	res, err := t.CAS(ctx, key, b.value, c)
	if err != nil {
		return err
	}
	if !res.Swapped {
		s.casFailed++
	}
	if !c.byValue {
		// Keep the newest revision seen: a slower client must not put back
		// an older one. (Keys are never deleted, so revisions only grow.)
		for {
			cur := b.revs[i].Load()
			if res.ModRev <= cur || b.revs[i].CompareAndSwap(cur, res.ModRev) {
				break
			}
		}
	}
	return nil
}

// showProgress draws a progress bar for p on w every interval until stop
// is closed, then erases it. The bar fills with the share of total done or
// of duration passed (either may be 0: unknown), whichever is further along.
func showProgress(w io.Writer, p *progress, label string, total int64, duration time.Duration, interval time.Duration, stop <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last int64
	lastT := start
	const width = 24
	for {
		select {
		case <-stop:
			fmt.Fprint(w, "\r\033[K")
			return
		case now := <-tick.C:
			done, failed := p.done.Load(), p.failed.Load()
			rate := float64(done-last) / now.Sub(lastT).Seconds()
			last, lastT = done, now
			frac := 0.0
			if total > 0 {
				frac = float64(done) / float64(total)
			}
			if duration > 0 {
				frac = max(frac, now.Sub(start).Seconds()/duration.Seconds())
			}
			frac = min(frac, 1)
			fill := int(frac * width)
			bar := []byte(strings.Repeat("=", fill) + strings.Repeat(" ", width-fill))
			if fill < width {
				bar[fill] = '>'
			}
			extra := ""
			if ev := p.events.Load(); ev > 0 {
				extra = fmt.Sprintf("  %d events", ev)
			}
			fmt.Fprintf(w, "\r\033[K%s [%s] %3.0f%%  %5.1fs  %d requests  %.0f req/s  %d errors%s",
				label, bar, frac*100, now.Sub(start).Seconds(), done, rate, failed, extra)
		}
	}
}

// latencySummary is the latency report of one histogram, in milliseconds.
type latencySummary struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(h *histogram) latencySummary {
	return latencySummary{
		Min:  ms(h.Min()),
		Mean: ms(h.Mean()),
		P50:  ms(h.Quantile(0.50)),
		P90:  ms(h.Quantile(0.90)),
		P99:  ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)),
		Max:  ms(h.Max()),
	}
}

// opReport is the part of the report about one operation.
type opReport struct {
	Requests          int64          `json:"requests"`
	OK                int64          `json:"ok"`
	RequestsPerSecond float64        `json:"requests_per_second"`
	OKPerSecond       float64        `json:"ok_per_second"`
	LatencyMs         latencySummary `json:"latency_ms"`
}

// errorReport counts one kind of error.
type errorReport struct {
	Kind   string `json:"kind"`
	Count  int64  `json:"count"`
	Sample string `json:"sample"`
}

// report is the result of a run, as printed (or as JSON with --json).
//
// Requests, OK and Errors count every operation. For the watch workload an
// operation is a put of the writers or an event a watcher should receive
// (one per put per watcher of its key; a missing one is an error); the
// top-level latency is the event latency only (from the start of the put
// to the event's arrival), and ops.watch.ok_per_second is the event rate.
type report struct {
	Protocol          string              `json:"protocol"`
	Target            string              `json:"target"` // the same, under its old name
	Endpoints         []string            `json:"endpoints"`
	TargetLeader      bool                `json:"target_leader,omitempty"`
	Workload          string              `json:"workload"`
	ReadRatio         float64             `json:"read_ratio,omitempty"`
	Consistency       string              `json:"consistency,omitempty"`
	TxnCompare        string              `json:"txn_compare,omitempty"`
	Watchers          int                 `json:"watchers,omitempty"`
	WatchStreams      int                 `json:"watch_streams,omitempty"`
	Clients           int                 `json:"clients"`
	Conns             int                 `json:"conns"`
	ConnsPerEndpoint  int                 `json:"conns_per_endpoint,omitempty"` // http: the limit per endpoint (0: none)
	RateLimit         float64             `json:"rate_limit,omitempty"`
	KeySpace          int64               `json:"key_space"`
	KeyBytes          int                 `json:"key_bytes"`
	ValueBytes        int                 `json:"value_bytes"`
	SequentialKeys    bool                `json:"sequential_keys"`
	PrefillKeys       int64               `json:"prefill_keys,omitempty"`
	PrefillSeconds    float64             `json:"prefill_seconds,omitempty"`
	WarmupSeconds     float64             `json:"warmup_seconds,omitempty"`
	Requests          int64               `json:"requests"`
	OK                int64               `json:"ok"`
	Errors            int64               `json:"errors"`
	ErrorsByKind      []errorReport       `json:"errors_by_kind"`
	GetMisses         int64               `json:"get_misses"` // ranges that found no key
	TxnFailedCompares int64               `json:"txn_failed_compares,omitempty"`
	ElapsedSeconds    float64             `json:"elapsed_seconds"`
	RequestsPerSecond float64             `json:"requests_per_second"`
	OKPerSecond       float64             `json:"ok_per_second"`
	LatencyMs         latencySummary      `json:"latency_ms"`
	Ops               map[string]opReport `json:"ops"`
	Interrupted       bool                `json:"interrupted,omitempty"`
}

// makeReport fills in the measured part of a report.
func makeReport(s *stats, elapsed time.Duration, watch bool) report {
	var r report
	all := newHistogram()
	r.Ops = map[string]opReport{}
	perSec := func(n int64) float64 {
		if elapsed <= 0 {
			return 0
		}
		return float64(n) / elapsed.Seconds()
	}
	for o := op(0); o < numOps; o++ {
		r.Requests += s.requests[o]
		r.OK += s.ok[o]
		if !watch || o == opWatch {
			all.Merge(s.lat[o])
		}
		if s.requests[o] > 0 {
			r.Ops[o.String()] = opReport{
				Requests: s.requests[o], OK: s.ok[o],
				RequestsPerSecond: perSec(s.requests[o]), OKPerSecond: perSec(s.ok[o]),
				LatencyMs: summarize(s.lat[o]),
			}
		}
	}
	r.Errors = r.Requests - r.OK
	r.ErrorsByKind = []errorReport{}
	for k, n := range s.errs {
		r.ErrorsByKind = append(r.ErrorsByKind, errorReport{Kind: k, Count: n, Sample: s.sample[k]})
	}
	sort.Slice(r.ErrorsByKind, func(i, j int) bool {
		a, b := r.ErrorsByKind[i], r.ErrorsByKind[j]
		return a.Count > b.Count || a.Count == b.Count && a.Kind < b.Kind
	})
	r.GetMisses = s.misses
	r.TxnFailedCompares = s.casFailed
	r.ElapsedSeconds = elapsed.Seconds()
	r.RequestsPerSecond = perSec(r.Requests)
	r.OKPerSecond = perSec(r.OK)
	r.LatencyMs = summarize(all)
	return r
}

// writeText prints r for people.
func writeText(w io.Writer, r report) {
	fmt.Fprintf(w, "target:     %s, %d endpoint(s): %v", r.Protocol, len(r.Endpoints), r.Endpoints)
	if r.TargetLeader {
		fmt.Fprint(w, " (the leader)")
	}
	fmt.Fprintln(w)
	wl := r.Workload
	switch r.Workload {
	case workloadMixed:
		wl += fmt.Sprintf(" (%.0f%% ranges, %s)", r.ReadRatio*100, r.Consistency)
	case workloadRange:
		wl += " (" + r.Consistency + ")"
	case workloadTxn:
		wl += " (compare " + r.TxnCompare + ", then put)"
	case workloadWatch:
		wl += fmt.Sprintf(" (%d watchers on %d streams)", r.Watchers, r.WatchStreams)
	}
	conns := strconv.Itoa(r.Conns)
	if r.Protocol == protocolHTTP {
		conns = "unlimited"
		if r.ConnsPerEndpoint > 0 {
			conns = strconv.Itoa(r.ConnsPerEndpoint)
		}
		conns += " per endpoint"
	}
	order := "random"
	if r.SequentialKeys {
		order = "sequential"
	}
	fmt.Fprintf(w, "workload:   %s, %d clients, conns %s, %d %s keys of %d bytes, values of %d bytes\n",
		wl, r.Clients, conns, r.KeySpace, order, r.KeyBytes, r.ValueBytes)
	if r.RateLimit > 0 {
		fmt.Fprintf(w, "rate:       at most %.0f req/s\n", r.RateLimit)
	}
	if r.PrefillKeys > 0 {
		fmt.Fprintf(w, "prefill:    %d keys in %.2fs (%.0f keys/s)\n", r.PrefillKeys, r.PrefillSeconds, float64(r.PrefillKeys)/max(r.PrefillSeconds, 1e-9))
	}
	fmt.Fprintf(w, "requests:   %d (ok %d, errors %d", r.Requests, r.OK, r.Errors)
	if r.GetMisses > 0 {
		fmt.Fprintf(w, ", ranges of absent keys %d", r.GetMisses)
	}
	if r.TxnFailedCompares > 0 {
		fmt.Fprintf(w, ", txns whose compare failed %d", r.TxnFailedCompares)
	}
	fmt.Fprintln(w, ")")
	if r.Interrupted {
		fmt.Fprintln(w, "            interrupted: the figures cover the requests made before")
	}
	fmt.Fprintf(w, "elapsed:    %.3fs\n", r.ElapsedSeconds)
	if r.Workload == workloadWatch {
		wo, po := r.Ops[opWatch.String()], r.Ops[opPut.String()]
		fmt.Fprintf(w, "throughput: %.1f events/s received, %.1f puts/s\n", wo.OKPerSecond, po.RequestsPerSecond)
	} else {
		fmt.Fprintf(w, "throughput: %.1f req/s", r.RequestsPerSecond)
		if r.Errors > 0 {
			fmt.Fprintf(w, " (successful: %.1f req/s)", r.OKPerSecond)
		}
		fmt.Fprintln(w)
	}
	line := func(name string, l latencySummary) {
		fmt.Fprintf(w, "%-11s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (min %s, mean %s)\n", name,
			fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Min), fmtMs(l.Mean))
	}
	if r.Workload == workloadWatch {
		line("latency:", r.LatencyMs)
		fmt.Fprintln(w, "            (of watch events: from the start of the put to the event's arrival)")
		if po, ok := r.Ops[opPut.String()]; ok {
			line("  put:", po.LatencyMs)
		}
	} else {
		line("latency:", r.LatencyMs)
		if len(r.Ops) > 1 {
			for o := op(0); o < numOps; o++ {
				if or, ok := r.Ops[o.String()]; ok {
					line("  "+o.String()+":", or.LatencyMs)
				}
			}
		}
	}
	if r.OK < r.Requests {
		fmt.Fprintln(w, "            (latencies are of successful requests)")
	}
	for _, e := range r.ErrorsByKind {
		fmt.Fprintf(w, "error:      %s: %d (e.g. %s)\n", e.Kind, e.Count, e.Sample)
	}
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.3fms", v)
	}
}
