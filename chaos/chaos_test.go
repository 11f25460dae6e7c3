package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary returns the metcd binary under test: $METCD_CHAOS_BIN, or
// ./cmd/metcd built once into a temporary folder.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if p := os.Getenv("METCD_CHAOS_BIN"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "metcd-chaos-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath, binErr = BuildBinary(dir)
	})
	if binErr != nil {
		t.Fatalf("building metcd: %v", binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" && os.Getenv("METCD_CHAOS_BIN") == "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// TestProxiedClusterPartition checks the proxies on real members: cutting
// the leader off makes the others elect a new leader and keep serving
// writes, while the old leader cannot commit; after the heal all agree.
func TestProxiedClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx := context.Background()
	c, err := NewCluster(ClusterConfig{
		Binary: binary(t), Dir: t.TempDir(), Size: 3, Engine: "pebble",
		HeartbeatMs: 50, ElectionMs: 500, Seed: 1, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	old, err := c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rest []int
	for i := range c.Slots {
		if i != old {
			rest = append(rest, i)
		}
	}
	c.Net.Partition(LinkRule{Mode: LinkRefuse}, []int{old}, rest)

	// The majority elects one of its own.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st0, err0 := c.Status(ctx, rest[0])
		st1, err1 := c.Status(ctx, rest[1])
		if err0 == nil && err1 == nil && st0.LeaderID != 0 && st0.LeaderID == st1.LeaderID && st0.LeaderID != c.ID(old) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader among %v while member %d is cut off: %+v %v / %+v %v", rest, c.ID(old), st0, err0, st1, err1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Writes go through the majority, not through the cut-off member.
	maj, err := newClient([]string{c.Slots[rest[0]].Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer maj.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := maj.Put(wctx, "/p/a", "1"); err != nil {
		t.Fatalf("write through the majority: %v", err)
	}
	cancel()
	iso, err := newClient([]string{c.Slots[old].Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer iso.Close()
	wctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	if _, err := iso.Put(wctx, "/p/b", "2"); err == nil {
		t.Fatalf("write through the cut-off member %d succeeded", c.ID(old))
	}
	cancel()
	if c.Net.Reset.Load() == 0 {
		t.Fatal("the proxies reset no connection")
	}

	c.Net.Heal()
	if err := c.WaitHealthy(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if crashes := c.Crashes(); len(crashes) > 0 {
		t.Fatalf("crashes: %v", crashes)
	}
}

// TestChaosShort is the CI form of the fault-injection runs: one run per
// engine, the fault kinds spread over the runs so that every kind is
// injected (each run injects each of its kinds at least once). A run that
// finds a problem fails with the seed to replay and the folder holding the
// history and porcupine's visualisation. METCD_CHAOS_SEED changes the
// seeds; METCD_CHAOS_DURATION the duration of each run.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos runs take about two minutes")
	}
	base := int64(1000)
	if s := os.Getenv("METCD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("METCD_CHAOS_SEED: %v", err)
		}
		base = v
	}
	dur := 20 * time.Second
	if s := os.Getenv("METCD_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("METCD_CHAOS_DURATION: %v", err)
		}
		dur = d
	}
	runs := []struct {
		engine string
		faults []FaultKind
	}{
		{"pebble", []FaultKind{FaultKillLeader, FaultIsolateLeader, FaultDelay}},
		{"bolt", []FaultKind{FaultKillMajority, FaultSplit, FaultMoveLeader}},
		{"leveldb", []FaultKind{FaultKill, FaultBlackhole, FaultDrop, FaultPause}},
		// The memory engine rebuilds its state from the newest snapshot's
		// state file and the WAL, so it survives losing every process at
		// once like the others (see docs/reliability.md).
		{"memory", []FaultKind{FaultKillAll, FaultRemoveAdd}},
	}
	covered := map[FaultKind]bool{}
	for _, r := range runs {
		for _, f := range r.faults {
			covered[f] = true
		}
	}
	for _, f := range AllFaults {
		if !covered[f] {
			t.Fatalf("fault %s is in no run", f)
		}
	}
	bin := binary(t)
	for i, r := range runs {
		seed := base + int64(i)
		t.Run(fmt.Sprintf("%s-seed%d", r.engine, seed), func(t *testing.T) {
			res, err := Run(context.Background(), Options{
				Seed: seed, Duration: dur, Engine: r.engine, Size: 3, Faults: r.faults,
				HoldMin: time.Second, HoldMax: 3 * time.Second,
				CheckTimeout: time.Minute,
				Binary:       bin,
				Logf:         t.Logf,
			})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			t.Log(res.Summary())
			if err := res.Error(); err != nil {
				t.Fatal(err)
			}
			counts := res.FaultCounts()
			for _, f := range r.faults {
				if counts[f] == 0 {
					t.Errorf("fault %s was not injected", f)
				}
			}
			if res.Verdict == nil || res.Verdict.Checked == 0 {
				t.Fatalf("nothing was checked")
			}
		})
	}
}
