package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The cost as the work grows: for each key count of --growth-keys and each
// system (alternating), on a fresh cluster:
//
//  1. prefill the key count (256-byte values, transactions of 100 puts from
//     32 clients), timed; the members' memory (VmRSS) after it;
//  2. put and linearizable range throughput over that key space, --clients
//     clients for --growth-duration each; memory after them;
//  3. restart of a follower: SIGTERM, then the time from starting it again
//     until it has applied what it had before and serves a serializable
//     get of the last key;
//  4. catch-up of a new member: enough writes to a pad key that every
//     member has taken a snapshot and compacted its log (the snapshot count
//     plus the 5000 entries both keep for slow followers, and some), then
//     member add, start, and the time until the new member has applied the
//     leader's index and serves the last key, while one put every 50ms
//     keeps the cluster from being idle. It can only have caught up from a
//     snapshot; the report says whether its data dir holds one.

// trickleInterval is the pace of the writes during a new member's catch-up.
const trickleInterval = 50 * time.Millisecond

// GrowthPoint is what was measured of one system at one key count.
type GrowthPoint struct {
	System            string    `json:"system"`
	Keys              int64     `json:"keys"`
	PrefillSeconds    float64   `json:"prefill_seconds,omitempty"`
	MemAfterPrefill   []procMem `json:"mem_after_prefill,omitempty"`
	DataDirBytes      int64     `json:"data_dir_bytes,omitempty"` // the restarted follower's, before its restart
	Put               *Measured `json:"put,omitempty"`
	Range             *Measured `json:"range,omitempty"`
	MemAfterRuns      []procMem `json:"mem_after_runs,omitempty"`
	StopSeconds       float64   `json:"stop_seconds,omitempty"`
	RestartSeconds    float64   `json:"restart_seconds,omitempty"`
	MemAfterRestart   *procMem  `json:"mem_after_restart,omitempty"`
	PadWrites         int       `json:"pad_writes,omitempty"`
	CatchupSeconds    float64   `json:"catchup_seconds,omitempty"`
	CatchupBySnapshot bool      `json:"catchup_by_snapshot,omitempty"`
	MemNewMember      *procMem  `json:"mem_new_member,omitempty"`
	Error             string    `json:"error,omitempty"`
	// Skipped says why this point was not measured (see tooBig).
	Skipped string `json:"skipped,omitempty"`
}

// GrowthSection is the "cost as the work grows" part.
type GrowthSection struct {
	Metcd           string        `json:"metcd,omitempty"` // the metcd source measured (git describe)
	Started         string        `json:"started"`
	Finished        string        `json:"finished,omitempty"`
	Command         string        `json:"command"`
	Quick           bool          `json:"quick,omitempty"`
	Keys            []int64       `json:"keys"`
	Systems         []string      `json:"systems"`
	Clients         int           `json:"clients"`
	DurationSeconds float64       `json:"duration_seconds"`
	Points          []GrowthPoint `json:"points"`
	// Commands are the metcd-bench commands of the first point (endpoints
	// as $ENDPOINTS), in order.
	Commands    []string `json:"commands,omitempty"`
	Interrupted bool     `json:"interrupted,omitempty"`
}

// recordCommand keeps args as one of the section's example commands, the
// first time a step runs.
func (sec *GrowthSection) recordCommand(step string, args []string) {
	if sec == nil {
		return
	}
	prefix := "# " + step + "\n"
	for _, c := range sec.Commands {
		if strings.HasPrefix(c, prefix) {
			return
		}
	}
	sec.Commands = append(sec.Commands, prefix+"metcd-bench "+withEndpointsVar(args))
}

func (e *env) runGrowth(ctx context.Context) {
	o := e.o
	sec := &GrowthSection{
		Metcd: e.res.Metcd.Source, Started: nowUTC(), Command: e.command, Quick: o.quick, Keys: o.growthKeys, Clients: o.clients,
		DurationSeconds: o.growthDuration.Seconds(), Points: []GrowthPoint{},
	}
	for _, s := range e.systems {
		sec.Systems = append(sec.Systems, s.Name)
	}
	e.res.Growth = sec
	e.save()
	for _, keys := range o.growthKeys {
		for _, sys := range e.systems {
			if ctx.Err() != nil {
				sec.Interrupted = true
				e.save()
				return
			}
			label := fmt.Sprintf("growth, %s keys, %s", countLabel(keys), sys.Name)
			p := GrowthPoint{System: sys.Name, Keys: keys}
			if why := tooBig(sec.Points, sys, keys, o.members, memTotalKiB()); why != "" {
				p.Skipped = why
				e.logf("%s: skipped: %s", label, why)
				sec.Points = append(sec.Points, p)
				e.save()
				continue
			}
			err := e.growthPoint(ctx, sys, keys, &p, label)
			if ctx.Err() != nil {
				sec.Interrupted = true
				e.save()
				return
			}
			if err != nil {
				p.Error = err.Error()
				e.logf("%s: failed: %s", label, firstLine(err.Error()))
				e.res.Failed = append(e.res.Failed, fmt.Sprintf("%s: %s", label, firstLine(err.Error())))
			}
			sec.Points = append(sec.Points, p)
			e.save()
		}
	}
	sec.Finished = nowUTC()
	e.save()
}

// inMemoryEngines are metcd engines that hold every key in the member's
// memory, so that their footprint grows with the key count.
var inMemoryEngines = map[string]bool{"memory": true}

// tooBig says why a system should not be measured at keys, or "" if it
// may. A system that holds everything in memory is skipped when its
// members' RSS, projected to keys, would take more than three quarters of
// the machine's memory: it would be killed or push the machine into
// reclaim. The projection follows the growth between the two largest
// smaller key counts measured, or scales the one measured point when it
// holds at least minProjectKeys (below that, a member's fixed overhead
// would dominate the projection). Systems on disk engines keep a bounded
// cache, and their RSS does not scale so.
func tooBig(done []GrowthPoint, sys system, keys int64, members int, totalKiB int64) string {
	if sys.Kind == kindEtcd || !inMemoryEngines[sys.Engine] || totalKiB <= 0 {
		return ""
	}
	type point struct{ keys, peak int64 }
	var pts []point // ascending keys, measured, below keys
	for _, p := range done {
		if p.System != sys.Name || p.Skipped != "" || p.Keys >= keys || len(p.MemAfterRuns) == 0 {
			continue
		}
		var peak int64
		for _, ms := range [][]procMem{p.MemAfterPrefill, p.MemAfterRuns} {
			for _, m := range ms {
				peak = max(peak, m.RSSKiB)
			}
		}
		pts = append(pts, point{p.Keys, peak})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].keys < pts[j].keys })
	var need int64 // per member
	switch n := len(pts); {
	case n >= 2 && pts[n-1].keys > pts[n-2].keys:
		hi, lo := pts[n-1], pts[n-2]
		slope := float64(hi.peak-lo.peak) / float64(hi.keys-lo.keys)
		need = hi.peak + int64(max(slope, 0)*float64(keys-hi.keys))
	case n >= 1 && pts[n-1].keys >= minProjectKeys:
		need = pts[n-1].peak * keys / pts[n-1].keys
	default:
		return ""
	}
	if need*int64(members) <= totalKiB/4*3 {
		return ""
	}
	last := pts[len(pts)-1]
	return fmt.Sprintf("the %s engine keeps every key in memory: its members held up to %s each at %s keys, so %s keys would need about %s for %d members, more than 3/4 of this machine's %s",
		sys.Engine, bytesLabel(last.peak<<10), countLabel(last.keys), countLabel(keys), bytesLabel(need*int64(members)<<10), members, bytesLabel(totalKiB<<10))
}

// minProjectKeys is the smallest key count whose RSS tooBig scales up alone.
const minProjectKeys = 100_000

// memTotalKiB is the machine's memory from /proc/meminfo, 0 if unknown.
func memTotalKiB() int64 {
	f := strings.Fields(procField("/proc/meminfo", "MemTotal"))
	if len(f) != 2 || f[1] != "kB" {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// newMemberClient is a clientv3 client on the cluster's running members.
func newMemberClient(c *cluster) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

func (e *env) growthPoint(ctx context.Context, sys system, keys int64, p *GrowthPoint, label string) error {
	o := e.o
	dir := filepath.Join(e.work, fmt.Sprintf("growth-%d-%s", keys, sys.Name))
	c, err := newCluster(sys, e.settings, dir, o.members)
	if err != nil {
		return err
	}
	defer func() {
		c.kill()
		if !o.keep {
			os.RemoveAll(dir)
		}
	}()
	if err := c.start(ctx, o.readyTimeout); err != nil {
		return err
	}
	digits := max(o.keySize, len(strconv.FormatInt(keys-1, 10)))
	lastKey := makeKey(keys-1, digits)
	kargs := []string{"--key-space", strconv.FormatInt(keys, 10), "--key-size", strconv.Itoa(digits), "--val-size", strconv.Itoa(o.valSize),
		"--timeout", o.requestTimeout.String(), "--seed", "1"}

	// 1. Prefill.
	e.logf("%s: prefilling", label)
	prefillTimeout := o.prefillTimeout + time.Duration(keys)*time.Millisecond
	args := append([]string{"--endpoints", strings.Join(c.endpoints(), ","), "--prefill-only", "--clients", "32", "--conns", strconv.Itoa(min(o.conns, 6)),
		"--prefill-batch", "100"}, kargs...)
	e.res.Growth.recordCommand("prefill", args)
	m, err := e.runBench(ctx, args, false, prefillTimeout, label+": prefill", 0)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	p.PrefillSeconds = m.PrefillSeconds
	if err := c.settle(ctx, o.settleTimeout); err != nil {
		return err
	}
	p.MemAfterPrefill = c.memory()
	e.logf("%s: prefilled in %.1fs (%.0f keys/s); RSS %s", label, p.PrefillSeconds, float64(keys)/max(p.PrefillSeconds, 1e-9), memLabel(p.MemAfterPrefill))
	e.save()

	// 2. Throughput.
	for _, run := range []struct {
		name string
		dst  **Measured
		args []string
	}{
		{"put", &p.Put, []string{"--workload", "put"}},
		{"range", &p.Range, []string{"--workload", "range", "--consistency", "l"}},
	} {
		args := append([]string{"--endpoints", strings.Join(c.endpoints(), ","), "--duration", o.growthDuration.String(),
			"--clients", strconv.Itoa(o.clients), "--conns", strconv.Itoa(o.conns)}, kargs...)
		args = append(args, run.args...)
		e.res.Growth.recordCommand(run.name, args)
		m, err := e.runBench(ctx, args, false, o.growthDuration+2*o.requestTimeout+time.Minute, label+": "+run.name, o.growthDuration)
		if err != nil {
			return fmt.Errorf("%s: %w", run.name, err)
		}
		*run.dst = &m
		e.logf("%s: %s %.0f req/s, p50 %.2fms, p99 %.2fms", label, run.name, m.ReqPerSec, m.P50Ms, m.P99Ms)
		if err := c.settle(ctx, o.settleTimeout); err != nil {
			return err
		}
	}
	p.MemAfterRuns = c.memory()
	e.save()

	// 3. Restart of a follower.
	f, err := c.follower(ctx)
	if err != nil {
		return err
	}
	st, err := status(ctx, f)
	if err != nil {
		return err
	}
	p.StopSeconds = stopMember(f, o.stopGrace).Seconds()
	if p.DataDirBytes, _, err = dirSize(f.dataDir); err != nil {
		return err
	}
	t0 := time.Now()
	if err := c.startMember(f); err != nil {
		return err
	}
	err = c.poll(ctx, o.catchupTimeout, 10*time.Millisecond, fmt.Sprintf("restarted member %d at applied index %d serving %s", f.id, st.Applied, lastKey),
		func(ctx context.Context) (bool, error) {
			now, err := statusWithin(ctx, f, pollTimeout)
			if err != nil || now.Leader == 0 || now.Applied < st.Applied {
				return false, err
			}
			return serves(ctx, f, lastKey)
		})
	if err != nil {
		return err
	}
	p.RestartSeconds = time.Since(t0).Seconds()
	mem := c.memory()[f.id-1]
	p.MemAfterRestart = &mem
	e.logf("%s: member %d stopped in %.2fs, restarted and serving in %.2fs; RSS %s", label, f.id, p.StopSeconds, p.RestartSeconds, kibLabel(mem.RSSKiB))
	e.save()
	if err := c.waitLeader(ctx, o.readyTimeout); err != nil {
		return err
	}

	// 4. A new member catches up.
	p.PadWrites = e.settings.SnapshotCount + 6000
	args = []string{"--endpoints", strings.Join(c.endpoints(), ","), "--workload", "put", "--total", strconv.Itoa(p.PadWrites),
		"--clients", "32", "--conns", strconv.Itoa(min(o.conns, 6)), "--key-prefix", "pad/", "--key-space", "1", "--key-size", "1",
		"--val-size", "8", "--timeout", o.requestTimeout.String()}
	e.res.Growth.recordCommand("writes before the member add (every member snapshots and compacts its log)", args)
	if _, err := e.runBench(ctx, args, false, o.prefillTimeout, label+": writes before the member add", 0); err != nil {
		return fmt.Errorf("writes before the member add: %w", err)
	}
	if err := c.settle(ctx, o.settleTimeout); err != nil {
		return err
	}
	var target uint64
	for _, m := range c.members {
		if st, err := status(ctx, m); err == nil {
			target = max(target, st.Applied)
		}
	}
	nm, err := c.newMember()
	if err != nil {
		return err
	}
	nm.join = true
	cli, err := newMemberClient(c)
	if err != nil {
		return err
	}
	// etcd refuses to add a voting member until every member has been
	// connected for 5s ("unhealthy cluster"): the follower restarted above
	// may be too recent. Retry for a while.
	var resp *clientv3.MemberAddResponse
	err = c.poll(ctx, o.readyTimeout, 500*time.Millisecond, "member add", func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, o.requestTimeout)
		defer cancel()
		var err error
		resp, err = cli.MemberAdd(actx, []string{nm.peerURL()})
		return err == nil, err
	})
	cli.Close()
	if err != nil {
		return fmt.Errorf("member add: %w", err)
	}
	if sys.Kind == kindMetcd && resp.Member.ID != uint64(nm.id) {
		return fmt.Errorf("member add: metcd gave id %d, expected %d", resp.Member.ID, nm.id)
	}
	// A trickle of writes while the new member catches up: a cluster is
	// rarely idle, and etcd needs one. (etcd 3.7.3 does not count a
	// snapshot it applies in the applied index it checks proposals against,
	// so a member that caught up by snapshot cannot publish itself, and
	// never serves clients, until it applies an entry after the snapshot.)
	tctx, stopTrickle := context.WithCancel(ctx)
	trickleDone := make(chan struct{})
	tcli, err := newMemberClient(c)
	if err != nil {
		stopTrickle()
		return err
	}
	go func() {
		defer close(trickleDone)
		defer tcli.Close()
		tick := time.NewTicker(trickleInterval)
		defer tick.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-tick.C:
				pctx, cancel := context.WithTimeout(tctx, time.Second)
				tcli.Put(pctx, "pad/0", "trickle")
				cancel()
			}
		}
	}()
	defer func() {
		stopTrickle()
		<-trickleDone
	}()
	t0 = time.Now()
	if err := c.startMember(nm); err != nil {
		return err
	}
	err = c.poll(ctx, o.catchupTimeout, 10*time.Millisecond, fmt.Sprintf("new member %d at applied index %d serving %s", nm.id, target, lastKey),
		func(ctx context.Context) (bool, error) {
			now, err := statusWithin(ctx, nm, pollTimeout)
			if err != nil || now.Applied < target {
				return false, err
			}
			return serves(ctx, nm, lastKey)
		})
	if err != nil {
		return fmt.Errorf("%w\n  end of the new member's log:\n%s", err, logTail(nm.logPath, 15))
	}
	p.CatchupSeconds = time.Since(t0).Seconds()
	newMem := c.memory()[nm.id-1]
	p.MemNewMember = &newMem
	if _, p.CatchupBySnapshot, err = dirSize(nm.dataDir); err != nil {
		return err
	}
	how := "from the log (no snapshot file in its data dir)"
	if p.CatchupBySnapshot {
		how = "by snapshot"
	}
	e.logf("%s: new member caught up %s in %.2fs; RSS %s", label, how, p.CatchupSeconds, kibLabel(newMem.RSSKiB))
	return nil
}

// makeKey is key number i as metcd-bench makes it with no prefix: i
// zero-padded to digits.
func makeKey(i int64, digits int) string {
	s := strconv.FormatInt(i, 10)
	if len(s) < digits {
		s = strings.Repeat("0", digits-len(s)) + s
	}
	return s
}

// memLabel summarizes the members' RSS: "112/98/97 MiB".
func memLabel(ms []procMem) string {
	var parts []string
	for _, m := range ms {
		if m.RSSKiB > 0 {
			parts = append(parts, strconv.FormatInt(m.RSSKiB>>10, 10))
		}
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, "/") + " MiB"
}

func kibLabel(kib int64) string {
	if kib <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d MiB", kib>>10)
}
