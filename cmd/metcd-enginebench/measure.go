package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// measure runs everything for one engine and key count on a fresh cluster
// in dir, adding to res (and calling save after each step). The cluster is
// stopped, and dir removed unless --keep, whatever happens.
func measure(ctx context.Context, o *options, res *Results, engine string, keys int64, dir string, save func(), stderr io.Writer) (err error) {
	res.Clusters = append(res.Clusters, Cluster{Engine: engine, Keys: keys})
	ci := len(res.Clusters) - 1
	cres := func() *Cluster { return &res.Clusters[ci] }
	defer func() {
		if err != nil {
			cres().Error = err.Error()
		}
	}()
	label := fmt.Sprintf("%s, %s keys", engine, countLabel(keys))

	c, err := newCluster(o.metcd, engine, dir, o.members, o.logLevel, o.metcdFlags)
	if err != nil {
		return err
	}
	defer func() {
		c.stop(o.stopGrace)
		if !o.keep {
			os.RemoveAll(dir)
		}
	}()
	logf(stderr, "%s: starting %d members (clients on %s)", label, o.members, strings.Join(c.endpoints(), ","))
	t0 := time.Now()
	if err := c.start(ctx, o.readyTimeout); err != nil {
		return err
	}
	cres().ReadySeconds = time.Since(t0).Seconds()

	digits := keyDigits(keys)
	value := makeValue(o.valSize)
	logf(stderr, "%s: prefilling %d keys with %d clients", label, keys, o.prefillClients)
	pctx, cancel := context.WithTimeout(ctx, o.prefillTimeout)
	took, err := prefill(pctx, c, keys, digits, value, o.prefillClients, o.requestTimeout, stderr, label)
	cancel()
	if err != nil {
		if pctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (--prefill-timeout %v)", err, o.prefillTimeout)
		}
		return err
	}
	cres().PrefillSeconds = took.Seconds()
	cres().PrefillPerSec = float64(keys) / took.Seconds()
	logf(stderr, "%s: prefilled in %.1fs (%.0f puts/s)", label, took.Seconds(), cres().PrefillPerSec)
	save()

	var failedRuns []string
	for _, w := range o.workloads {
		for _, clients := range o.clients {
			if err := c.settle(ctx, o.settleTimeout); err != nil {
				return err
			}
			r := Run{Engine: engine, Keys: keys, Workload: w.Name, ReadRatio: w.ReadRatio, Consistency: "linearizable", Clients: clients}
			berr := runBench(ctx, o, c, keys, digits, w, clients, &r)
			if ctx.Err() != nil {
				return ctx.Err() // interrupted: the run is not a result
			}
			if berr != nil {
				r.Error = berr.Error()
			}
			res.Runs = append(res.Runs, r)
			save()
			if berr != nil {
				logf(stderr, "%s: %s, %s: %v", label, w.Name, clientsLabel(clients), berr)
				failedRuns = append(failedRuns, fmt.Sprintf("%s with %s", w.Name, clientsLabel(clients)))
				if err := c.exited(); err != nil {
					return err
				}
				continue
			}
			logf(stderr, "%s: %s, %s: %.0f req/s, p50 %.2fms, p99 %.2fms, %d errors",
				label, w.Name, clientsLabel(clients), r.ReqPerSec, r.P50Ms, r.P99Ms, r.Errors)
		}
	}

	if err := measureStartup(ctx, o, c, makeKey(0, digits), cres(), label, stderr); err != nil {
		return err
	}
	save()
	if len(failedRuns) > 0 {
		return fmt.Errorf("runs failed: %s", strings.Join(failedRuns, ", "))
	}
	return nil
}

// makeKey is key number i as metcd-bench makes it with an empty
// --key-prefix: i zero-padded to digits.
func makeKey(i int64, digits int) string {
	s := strconv.FormatInt(i, 10)
	if len(s) < digits {
		s = strings.Repeat("0", digits-len(s)) + s
	}
	return s
}

// makeValue returns n printable bytes.
func makeValue(n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	v := make([]byte, n)
	x := uint32(2463534242)
	for i := range v {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		v[i] = alphabet[x%uint32(len(alphabet))]
	}
	return v
}

// prefill puts every key of the key space once, with workers concurrent
// clients spread over the members; a failed put is retried (on the next
// member) a few times before the prefill fails. It returns how long it took.
func prefill(ctx context.Context, c *cluster, keys int64, digits int, value []byte, workers int, timeout time.Duration, stderr io.Writer, label string) (time.Duration, error) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: workers,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	endpoints := c.endpoints()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range min(int64(workers), keys) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= keys {
					return
				}
				key := makeKey(i, digits)
				var err error
				for attempt := range 8 {
					ep := endpoints[(int(w)+attempt)%len(endpoints)]
					if err = put(ctx, client, ep, key, value, timeout); err == nil || ctx.Err() != nil {
						break
					}
					sleepCtx(ctx, min(50*time.Millisecond<<attempt, 2*time.Second))
				}
				if err != nil {
					cancel(fmt.Errorf("prefill: put %s: %w", key, err))
					return
				}
				done.Add(1)
			}
		})
	}
	progDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-progDone:
				return
			case <-tick.C:
				n := done.Load()
				logf(stderr, "%s: prefill: %d/%d keys (%.0f puts/s)", label, n, keys, float64(n)/time.Since(t0).Seconds())
				if err := c.exited(); err != nil {
					cancel(err)
				}
			}
		}
	}()
	wg.Wait()
	close(progDone)
	took := time.Since(t0)
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return took, fmt.Errorf("prefill stopped after %d of %d keys: %w", done.Load(), keys, err)
		}
		return took, err
	}
	if err := c.exited(); err != nil {
		return took, err
	}
	return took, nil
}

func put(ctx context.Context, client *http.Client, endpoint, key string, value []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, endpoint+"/"+key, bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// benchArgs are metcd-bench's arguments for one run.
func benchArgs(endpoints []string, keys int64, digits int, w workload, clients int, o *options) []string {
	return []string{
		"--endpoints", strings.Join(endpoints, ","),
		"--workload", "mixed",
		"--read-ratio", strconv.FormatFloat(w.ReadRatio, 'f', -1, 64),
		"--consistency", "linearizable",
		"--clients", strconv.Itoa(clients),
		"--duration", o.duration.String(),
		"--key-space", strconv.FormatInt(keys, 10),
		"--key-prefix=",
		"--key-size", strconv.Itoa(digits),
		"--val-size", strconv.Itoa(o.valSize),
		"--timeout", o.requestTimeout.String(),
		"--json",
	}
}

// runBench runs metcd-bench for one workload and fills in r.
func runBench(ctx context.Context, o *options, c *cluster, keys int64, digits int, w workload, clients int, r *Run) error {
	// metcd-bench stops issuing at --duration and waits at most one
	// --timeout for requests in flight; allow for its start and exit.
	ctx, cancel := context.WithTimeout(ctx, o.duration+o.requestTimeout+time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.bench, benchArgs(c.endpoints(), keys, digits, w, clients, o)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = childAttr()
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("metcd-bench: %w", ctx.Err())
	}
	perr := parseBenchReport(stdout.Bytes(), r)
	switch {
	case perr != nil && runErr != nil:
		return fmt.Errorf("metcd-bench: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	case perr != nil:
		return perr
	case r.OK == 0:
		return fmt.Errorf("metcd-bench: no request succeeded (%d errors)", r.Errors)
	}
	return nil
}

// measureStartup stops member 1 with SIGTERM, restarts it on its data and
// times how long it takes to apply at least what it had applied before the
// stop and to serve a serializable get of key.
func measureStartup(ctx context.Context, o *options, c *cluster, key string, cres *Cluster, label string, stderr io.Writer) error {
	if err := c.settle(ctx, o.settleTimeout); err != nil {
		return err
	}
	m := c.members[0]
	st, err := getStatus(ctx, m.clientURL)
	if err != nil {
		return fmt.Errorf("member 1 status before the restart: %w", err)
	}
	cres.AppliedIndex, cres.KeysReported, cres.EngineDataBytes = st.AppliedIndex, st.Keys, st.DataSizeBytes

	logf(stderr, "%s: stopping member 1 (applied index %d, %d keys)", label, st.AppliedIndex, st.Keys)
	cres.StopSeconds = stopMember(m, o.stopGrace).Seconds()
	if cres.StopSeconds >= o.stopGrace.Seconds() {
		return fmt.Errorf("member 1 did not exit within %v of SIGTERM; killed", o.stopGrace)
	}
	if cres.DataDirBytes, cres.DataDirDisk, err = dirSize(m.dataDir); err != nil {
		return err
	}

	t0 := time.Now()
	if err := c.startMember(m); err != nil {
		return err
	}
	err = c.poll(ctx, o.startupTimeout, 10*time.Millisecond,
		fmt.Sprintf("restarted member 1 at applied index %d serving a serializable get", st.AppliedIndex),
		func(ctx context.Context) (bool, error) {
			now, err := getStatus(ctx, m.clientURL)
			if err != nil || now.AppliedIndex < st.AppliedIndex {
				return false, err
			}
			return serializableGet(ctx, m.clientURL, key)
		})
	if err != nil {
		return err
	}
	cres.StartupSeconds = time.Since(t0).Seconds()
	logf(stderr, "%s: member 1 stopped in %.2fs, restarted and caught up in %.2fs; data dir %s (on disk %s), engine files %s",
		label, cres.StopSeconds, cres.StartupSeconds, sizeLabel(cres.DataDirBytes), sizeLabel(cres.DataDirDisk), sizeLabel(cres.EngineDataBytes))
	return nil
}
