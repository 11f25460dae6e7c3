package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Workloads.
const (
	workloadPut   = "put"
	workloadGet   = "get"
	workloadMixed = "mixed"
)

// op indexes per-operation statistics.
type op int

const (
	opPut op = iota
	opGet
	numOps
)

func (o op) String() string { return [...]string{"put", "get"}[o] }

// config is a validated run description; see the flags in main.go.
type config struct {
	Workload       string
	ReadRatio      float64 // share of gets in the mixed workload
	Clients        int
	Total          int64         // requests to issue; 0: no limit (Duration is set)
	Duration       time.Duration // stop issuing after this; 0: no limit (Total is set)
	KeyPrefix      string
	KeySize        int // digits of the key index
	ValSize        int
	KeySpace       int64
	SequentialKeys bool
	Prefill        bool
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

// stats is what one worker (and, merged, the run) measured.
type stats struct {
	requests [numOps]int64
	ok       [numOps]int64
	misses   int64 // gets of an absent key: successful, but worth reporting
	lat      [numOps]*histogram
	errs     map[string]int64  // by errorKind
	sample   map[string]string // one error message per kind
}

func newStats() *stats {
	s := &stats{errs: map[string]int64{}, sample: map[string]string{}}
	for i := range s.lat {
		s.lat[i] = newHistogram()
	}
	return s
}

func (s *stats) merge(o *stats) {
	for i := range s.requests {
		s.requests[i] += o.requests[i]
		s.ok[i] += o.ok[i]
		s.lat[i].Merge(o.lat[i])
	}
	s.misses += o.misses
	for k, n := range o.errs {
		s.errs[k] += n
		if _, ok := s.sample[k]; !ok {
			s.sample[k] = o.sample[k]
		}
	}
}

// progress is updated by workers with atomics and read by the progress line.
type progress struct {
	done   atomic.Int64
	failed atomic.Int64
}

// bench runs one workload over targets (worker i uses targets[i%len]).
type bench struct {
	cfg     config
	targets []target
	value   []byte
	prog    progress
	issued  atomic.Int64 // requests claimed so far (for --total)
	seq     atomic.Int64 // next key for --sequential-keys
}

func newBench(cfg config, targets []target) *bench {
	return &bench{cfg: cfg, targets: targets, value: makeValue(cfg.ValSize, cfg.Seed)}
}

// prefill writes every key of the key space once, with cfg.Clients workers
// (at least prefillWorkers: it is not measured, so it may as well be quick),
// and fails on the first error.
func (b *bench) prefill(ctx context.Context) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < max(b.cfg.Clients, prefillWorkers); w++ {
		t := b.targets[w%len(b.targets)]
		wg.Go(func() {
			var key []byte
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= b.cfg.KeySpace {
					return
				}
				key = makeKey(key, b.cfg.KeyPrefix, b.cfg.KeySize, i)
				rctx, rcancel := context.WithTimeout(ctx, b.cfg.Timeout)
				err := t.Put(rctx, key, b.value)
				rcancel()
				if err != nil {
					once.Do(func() {
						firstErr = fmt.Errorf("prefill: put %s: %w", key, err)
						cancel()
					})
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return fmt.Errorf("prefill interrupted: %w", context.Cause(ctx))
	}
	return firstErr
}

// run issues requests until cfg.Total have been claimed, cfg.Duration has
// passed or stop is done, whichever comes first; requests in flight then
// complete (each bounded by cfg.Timeout) and are counted. It returns the
// merged statistics and the elapsed time from the first request to the last
// response.
func (b *bench) run(stop <-chan struct{}) (*stats, time.Duration) {
	start := time.Now()
	var deadline time.Time
	if b.cfg.Duration > 0 {
		deadline = start.Add(b.cfg.Duration)
	}
	results := make([]*stats, b.cfg.Clients)
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.Clients; w++ {
		wg.Go(func() {
			results[w] = b.worker(w, deadline, stop)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := newStats()
	for _, s := range results {
		total.merge(s)
	}
	return total, elapsed
}

func (b *bench) worker(w int, deadline time.Time, stop <-chan struct{}) *stats {
	s := newStats()
	t := b.targets[w%len(b.targets)]
	r := rand.New(rand.NewPCG(b.cfg.Seed, uint64(w)+1))
	var key []byte
	for {
		select {
		case <-stop:
			return s
		default:
		}
		if b.cfg.Total > 0 && b.issued.Add(1) > b.cfg.Total {
			return s
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return s
		}

		var i int64
		if b.cfg.SequentialKeys {
			i = (b.seq.Add(1) - 1) % b.cfg.KeySpace
		} else {
			i = r.Int64N(b.cfg.KeySpace)
		}
		key = makeKey(key, b.cfg.KeyPrefix, b.cfg.KeySize, i)
		o := opPut
		switch b.cfg.Workload {
		case workloadGet:
			o = opGet
		case workloadMixed:
			if r.Float64() < b.cfg.ReadRatio {
				o = opGet
			}
		}

		// In-flight requests are not tied to stop or the deadline: they
		// finish and count, bounded by the per-request timeout.
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
		t0 := time.Now()
		var err error
		if o == opPut {
			err = t.Put(ctx, key, b.value)
		} else {
			err = t.Get(ctx, key)
		}
		lat := time.Since(t0)
		cancel()

		s.requests[o]++
		if errors.Is(err, errNotFound) {
			s.misses++
			err = nil
		}
		if err != nil {
			k := errorKind(err)
			s.errs[k]++
			if _, ok := s.sample[k]; !ok {
				s.sample[k] = err.Error()
			}
			b.prog.failed.Add(1)
		} else {
			s.ok[o]++
			s.lat[o].Record(lat)
		}
		b.prog.done.Add(1)
	}
}

// showProgress writes a one-line progress report to w every interval until
// stop is closed, then erases it.
func (b *bench) showProgress(w io.Writer, interval time.Duration, stop <-chan struct{}) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last int64
	lastT := start
	for {
		select {
		case <-stop:
			fmt.Fprint(w, "\r\033[K")
			return
		case now := <-tick.C:
			done, failed := b.prog.done.Load(), b.prog.failed.Load()
			rate := float64(done-last) / now.Sub(lastT).Seconds()
			last, lastT = done, now
			of := ""
			if b.cfg.Total > 0 {
				of = fmt.Sprintf("/%d", b.cfg.Total)
			}
			fmt.Fprintf(w, "\r\033[K%6.1fs  %d%s requests  %.0f req/s  %d errors",
				now.Sub(start).Seconds(), done, of, rate, failed)
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
	Requests  int64          `json:"requests"`
	OK        int64          `json:"ok"`
	LatencyMs latencySummary `json:"latency_ms"`
}

// errorReport counts one kind of error.
type errorReport struct {
	Kind   string `json:"kind"`
	Count  int64  `json:"count"`
	Sample string `json:"sample"`
}

// report is the result of a run, as printed (or as JSON with --json).
type report struct {
	Target            string              `json:"target"`
	Endpoints         []string            `json:"endpoints"`
	Workload          string              `json:"workload"`
	ReadRatio         float64             `json:"read_ratio,omitempty"`
	Consistency       string              `json:"consistency,omitempty"`
	Clients           int                 `json:"clients"`
	ConnsPerEndpoint  int                 `json:"conns_per_endpoint"`
	KeySpace          int64               `json:"key_space"`
	KeyBytes          int                 `json:"key_bytes"`
	ValueBytes        int                 `json:"value_bytes"`
	SequentialKeys    bool                `json:"sequential_keys"`
	Requests          int64               `json:"requests"`
	OK                int64               `json:"ok"`
	Errors            int64               `json:"errors"`
	ErrorsByKind      []errorReport       `json:"errors_by_kind"`
	GetMisses         int64               `json:"get_misses"`
	ElapsedSeconds    float64             `json:"elapsed_seconds"`
	RequestsPerSecond float64             `json:"requests_per_second"`
	OKPerSecond       float64             `json:"ok_per_second"`
	LatencyMs         latencySummary      `json:"latency_ms"`
	Ops               map[string]opReport `json:"ops"`
	Interrupted       bool                `json:"interrupted,omitempty"`
}

// makeReport fills in the measured part of a report.
func makeReport(s *stats, elapsed time.Duration) report {
	var r report
	all := newHistogram()
	r.Ops = map[string]opReport{}
	for o := op(0); o < numOps; o++ {
		r.Requests += s.requests[o]
		r.OK += s.ok[o]
		all.Merge(s.lat[o])
		if s.requests[o] > 0 {
			r.Ops[o.String()] = opReport{Requests: s.requests[o], OK: s.ok[o], LatencyMs: summarize(s.lat[o])}
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
	r.ElapsedSeconds = elapsed.Seconds()
	if elapsed > 0 {
		r.RequestsPerSecond = float64(r.Requests) / elapsed.Seconds()
		r.OKPerSecond = float64(r.OK) / elapsed.Seconds()
	}
	r.LatencyMs = summarize(all)
	return r
}

// writeText prints r for people.
func writeText(w io.Writer, r report) {
	fmt.Fprintf(w, "target:     %s, %d endpoint(s): %v\n", r.Target, len(r.Endpoints), r.Endpoints)
	wl := r.Workload
	switch {
	case r.Workload == workloadMixed:
		wl += fmt.Sprintf(" (%.0f%% gets, %s)", r.ReadRatio*100, r.Consistency)
	case r.Consistency != "":
		wl += " (" + r.Consistency + ")"
	}
	conns := "unlimited"
	if r.ConnsPerEndpoint > 0 {
		conns = strconv.Itoa(r.ConnsPerEndpoint)
	}
	order := "random"
	if r.SequentialKeys {
		order = "sequential"
	}
	fmt.Fprintf(w, "workload:   %s, %d clients, conns/endpoint %s, %d %s keys of %d bytes, values of %d bytes\n",
		wl, r.Clients, conns, r.KeySpace, order, r.KeyBytes, r.ValueBytes)
	fmt.Fprintf(w, "requests:   %d (ok %d, errors %d", r.Requests, r.OK, r.Errors)
	if r.GetMisses > 0 {
		fmt.Fprintf(w, ", gets of absent keys %d", r.GetMisses)
	}
	fmt.Fprintln(w, ")")
	if r.Interrupted {
		fmt.Fprintln(w, "            interrupted: the figures cover the requests made before")
	}
	fmt.Fprintf(w, "elapsed:    %.3fs\n", r.ElapsedSeconds)
	fmt.Fprintf(w, "throughput: %.1f req/s", r.RequestsPerSecond)
	if r.Errors > 0 {
		fmt.Fprintf(w, " (successful: %.1f req/s)", r.OKPerSecond)
	}
	fmt.Fprintln(w)
	line := func(name string, l latencySummary) {
		fmt.Fprintf(w, "%-11s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (min %s, mean %s)\n", name,
			fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Min), fmtMs(l.Mean))
	}
	line("latency:", r.LatencyMs)
	if len(r.Ops) > 1 {
		for o := op(0); o < numOps; o++ {
			if or, ok := r.Ops[o.String()]; ok {
				line("  "+o.String()+":", or.LatencyMs)
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
