package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// workloadSpec is one workload of the comparison: the metcd-bench flags
// that make it (besides endpoints, duration, warm-up and output).
type workloadSpec struct {
	Name   string   `json:"name"`
	Title  string   `json:"title"`
	Args   []string `json:"args"`
	Events bool     `json:"events,omitempty"` // watch: the rate is events/s, the latency that of events
}

// allWorkloads are the workloads of the comparison, in order: the issue's
// reference settings (8-byte keys, 256-byte values).
func allWorkloads(o *options) []workloadSpec {
	many := strconv.Itoa(o.clients)
	conns := strconv.Itoa(o.conns)
	ks := strconv.FormatInt(o.keySpace, 10)
	pks := strconv.FormatInt(o.putKeySpace, 10)
	return []workloadSpec{
		{Name: "put-1", Title: "put, 1 client (on the leader)",
			Args: []string{"--workload", "put", "--clients", "1", "--conns", "1", "--target-leader", "--key-space", pks}},
		{Name: "put-" + many, Title: "put, " + many + " clients",
			Args: []string{"--workload", "put", "--clients", many, "--conns", conns, "--key-space", pks}},
		{Name: "range-l-" + many, Title: "linearizable range (one key), " + many + " clients",
			Args: []string{"--workload", "range", "--consistency", "l", "--clients", many, "--conns", conns, "--key-space", ks, "--prefill"}},
		{Name: "range-s-" + many, Title: "serializable range (one key), " + many + " clients",
			Args: []string{"--workload", "range", "--consistency", "s", "--clients", many, "--conns", conns, "--key-space", ks, "--prefill"}},
		{Name: "txn-" + many, Title: "txn compare-and-swap (mod_revision, then put), " + many + " clients",
			Args: []string{"--workload", "txn", "--txn-compare", "mod", "--clients", many, "--conns", conns, "--key-space", ks, "--prefill"}},
		{Name: "watch", Title: fmt.Sprintf("watch: %d watchers on %d key(s), %.0f puts/s", o.watchers, o.watchKeys, o.watchRate),
			Events: true,
			Args: []string{"--workload", "watch", "--watchers", strconv.Itoa(o.watchers), "--watch-streams", strconv.Itoa(o.watchStreams),
				"--key-space", strconv.FormatInt(o.watchKeys, 10), "--clients", "1", "--rate", strconv.FormatFloat(o.watchRate, 'f', -1, 64)}},
		{Name: "mixed-" + many, Title: "mixed: 90% linearizable ranges, 10% puts, " + many + " clients",
			Args: []string{"--workload", "mixed", "--read-ratio", "0.9", "--consistency", "l", "--clients", many, "--conns", conns, "--key-space", ks, "--prefill"}},
	}
}

// benchOut is the part of metcd-bench --json output we use.
type benchOut struct {
	Requests     int64 `json:"requests"`
	OK           int64 `json:"ok"`
	Errors       int64 `json:"errors"`
	ErrorsByKind []struct {
		Kind  string `json:"kind"`
		Count int64  `json:"count"`
	} `json:"errors_by_kind"`
	GetMisses         int64    `json:"get_misses"`
	TxnFailedCompares int64    `json:"txn_failed_compares"`
	ElapsedSeconds    float64  `json:"elapsed_seconds"`
	RequestsPerSecond float64  `json:"requests_per_second"`
	PrefillSeconds    float64  `json:"prefill_seconds"`
	LatencyMs         benchLat `json:"latency_ms"`
	Ops               map[string]struct {
		Requests          int64    `json:"requests"`
		OK                int64    `json:"ok"`
		RequestsPerSecond float64  `json:"requests_per_second"`
		OKPerSecond       float64  `json:"ok_per_second"`
		LatencyMs         benchLat `json:"latency_ms"`
	} `json:"ops"`
}

type benchLat struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
}

// Measured is what one metcd-bench run measured: the rate (events/s for
// watch) and the latency in milliseconds.
type Measured struct {
	ReqPerSec         float64          `json:"req_per_s"`
	P50Ms             float64          `json:"p50_ms"`
	P90Ms             float64          `json:"p90_ms"`
	P99Ms             float64          `json:"p99_ms"`
	P999Ms            float64          `json:"p999_ms"`
	MaxMs             float64          `json:"max_ms"`
	Requests          int64            `json:"requests"`
	OK                int64            `json:"ok"`
	Errors            int64            `json:"errors"`
	ErrorsByKind      map[string]int64 `json:"errors_by_kind,omitempty"`
	GetMisses         int64            `json:"get_misses,omitempty"`
	TxnFailedCompares int64            `json:"txn_failed_compares,omitempty"`
	ElapsedSeconds    float64          `json:"elapsed_seconds"`
	PrefillSeconds    float64          `json:"prefill_seconds,omitempty"`
}

// parseBench decodes metcd-bench --json output; events picks the watch
// event rate as the rate.
func parseBench(data []byte, events bool) (Measured, error) {
	var b benchOut
	if err := json.Unmarshal(data, &b); err != nil {
		return Measured{}, fmt.Errorf("metcd-bench output: %w", err)
	}
	m := Measured{
		ReqPerSec: b.RequestsPerSecond,
		P50Ms:     b.LatencyMs.P50, P90Ms: b.LatencyMs.P90, P99Ms: b.LatencyMs.P99, P999Ms: b.LatencyMs.P999, MaxMs: b.LatencyMs.Max,
		Requests: b.Requests, OK: b.OK, Errors: b.Errors,
		GetMisses: b.GetMisses, TxnFailedCompares: b.TxnFailedCompares,
		ElapsedSeconds: b.ElapsedSeconds, PrefillSeconds: b.PrefillSeconds,
	}
	if events {
		m.ReqPerSec = b.Ops["watch"].OKPerSecond
	}
	for _, e := range b.ErrorsByKind {
		if m.ErrorsByKind == nil {
			m.ErrorsByKind = map[string]int64{}
		}
		m.ErrorsByKind[e.Kind] += e.Count
	}
	return m, nil
}

// runBench runs metcd-bench with args (plus --json) and parses its report.
// label and expect drive the progress line.
func (e *env) runBench(ctx context.Context, args []string, events bool, timeout time.Duration, label string, expect time.Duration) (Measured, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.o.bench, append(args, "--json")...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	stopProg := e.progress(label, expect)
	runErr := cmd.Run()
	stopProg()
	if ctx.Err() != nil {
		return Measured{}, fmt.Errorf("metcd-bench: %w", ctx.Err())
	}
	m, perr := parseBench(stdout.Bytes(), events)
	switch {
	case perr != nil && runErr != nil:
		return m, fmt.Errorf("metcd-bench: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	case perr != nil:
		return m, perr
	case runErr != nil:
		return m, fmt.Errorf("metcd-bench: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return m, nil
}

// CompareRun is one workload run against one system.
type CompareRun struct {
	Workload string    `json:"workload"`
	System   string    `json:"system"`
	Round    int       `json:"round"`
	Args     []string  `json:"args"` // metcd-bench's
	Members  []procMem `json:"members,omitempty"`
	// ReadySeconds is the cluster's start until a leader; StopSeconds its
	// stop after the run.
	ReadySeconds float64 `json:"ready_seconds,omitempty"`
	StopSeconds  float64 `json:"stop_seconds,omitempty"`
	Measured
	Error string `json:"error,omitempty"`
}

// CompareSection is the side-by-side comparison.
type CompareSection struct {
	Metcd           string         `json:"metcd,omitempty"` // the metcd source measured (git describe)
	Started         string         `json:"started"`
	Finished        string         `json:"finished,omitempty"`
	Command         string         `json:"command"`
	Quick           bool           `json:"quick,omitempty"`
	DurationSeconds float64        `json:"duration_seconds"`
	WarmupSeconds   float64        `json:"warmup_seconds"`
	Rounds          int            `json:"rounds"`
	Members         int            `json:"members"`
	KeyBytes        int            `json:"key_bytes"`
	ValueBytes      int            `json:"value_bytes"`
	Systems         []string       `json:"systems"`
	Workloads       []workloadSpec `json:"workloads"`
	Runs            []CompareRun   `json:"runs"`
	Interrupted     bool           `json:"interrupted,omitempty"`
}

// commonBenchArgs are the metcd-bench flags of every comparison run.
func (e *env) commonBenchArgs(eps []string, duration, warmup time.Duration) []string {
	args := []string{
		"--endpoints", strings.Join(eps, ","),
		"--duration", duration.String(),
		"--key-size", strconv.Itoa(e.o.keySize),
		"--val-size", strconv.Itoa(e.o.valSize),
		"--timeout", e.o.requestTimeout.String(),
		"--seed", "1",
	}
	if warmup > 0 {
		args = append(args, "--warmup", warmup.String())
	}
	return args
}

// runCompare runs every workload against every system, rounds times,
// alternating systems within each workload and round, one cluster at a
// time, each run on a fresh cluster.
func (e *env) runCompare(ctx context.Context) {
	o := e.o
	sec := &CompareSection{
		Metcd: e.res.Metcd.Source, Started: nowUTC(), Command: e.command, Quick: o.quick,
		DurationSeconds: o.duration.Seconds(), WarmupSeconds: o.warmup.Seconds(), Rounds: o.rounds, Members: o.members,
		KeyBytes: o.keySize, ValueBytes: o.valSize, Workloads: o.workloads, Runs: []CompareRun{},
	}
	for _, s := range e.systems {
		sec.Systems = append(sec.Systems, s.Name)
	}
	e.res.Compare = sec
	e.save()

	steps := len(o.workloads) * o.rounds * len(e.systems)
	step := 0
	t0 := time.Now()
	for _, w := range o.workloads {
		for round := 1; round <= o.rounds; round++ {
			for _, sys := range e.systems {
				if ctx.Err() != nil {
					sec.Interrupted = true
					e.save()
					return
				}
				step++
				label := fmt.Sprintf("[%d/%d] %s, %s, round %d", step, steps, w.Name, sys.Name, round)
				r := e.compareRun(ctx, sys, w, round, label)
				if ctx.Err() != nil {
					sec.Interrupted = true
					e.save()
					return
				}
				sec.Runs = append(sec.Runs, r)
				e.save()
				eta := time.Duration(float64(time.Since(t0)) / float64(step) * float64(steps-step))
				if r.Error != "" {
					e.logf("%s: failed: %s", label, firstLine(r.Error))
					e.res.Failed = append(e.res.Failed, fmt.Sprintf("%s, %s, round %d: %s", w.Name, sys.Name, round, firstLine(r.Error)))
				} else {
					e.logf("%s: %.0f %s, p50 %.2fms, p99 %.2fms, %d errors (cluster ready in %.1fs, stopped in %.1fs; about %v left)",
						label, r.ReqPerSec, rateUnit(w), r.P50Ms, r.P99Ms, r.Errors, r.ReadySeconds, r.StopSeconds, eta.Round(time.Second))
				}
			}
		}
	}
	sec.Finished = nowUTC()
	e.save()
}

func rateUnit(w workloadSpec) string {
	if w.Events {
		return "events/s"
	}
	return "req/s"
}

// compareRun starts a fresh cluster of sys, runs workload w and stops it.
func (e *env) compareRun(ctx context.Context, sys system, w workloadSpec, round int, label string) (r CompareRun) {
	o := e.o
	r = CompareRun{Workload: w.Name, System: sys.Name, Round: round}
	dir := filepath.Join(e.work, fmt.Sprintf("%s-%s-%d", w.Name, sys.Name, round))
	c, err := newCluster(sys, e.settings, dir, o.members)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer func() {
		t0 := time.Now()
		c.kill()
		r.StopSeconds = time.Since(t0).Seconds()
		if !o.keep {
			os.RemoveAll(dir)
		}
	}()
	t0 := time.Now()
	if err := c.start(ctx, o.readyTimeout); err != nil {
		r.Error = err.Error()
		return r
	}
	r.ReadySeconds = time.Since(t0).Seconds()
	warmup := o.warmup
	if w.Events {
		warmup = 0 // metcd-bench has no warm-up for watch
	}
	r.Args = append(e.commonBenchArgs(c.endpoints(), o.duration, warmup), w.Args...)
	timeout := o.duration + warmup + 2*o.requestTimeout + o.prefillTimeout
	m, err := e.runBench(ctx, r.Args, w.Events, timeout, label, o.duration+warmup)
	r.Measured = m
	r.Members = c.memory()
	if err != nil {
		r.Error = err.Error()
		if xerr := c.exited(); xerr != nil {
			r.Error += "\n" + xerr.Error()
		}
	}
	return r
}

func nowUTC() string { return time.Now().UTC().Format(time.RFC3339) }
