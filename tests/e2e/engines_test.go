package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMixedEngines runs one member per durable engine in one cluster: the
// core scenarios hold whatever engine each member uses, and snapshots,
// being engine-neutral streams, install across engines.
func TestMixedEngines(t *testing.T) {
	c := NewStoppedCluster(t, Options{Size: 3, Extra: []string{"--snapshot-count", "20"}})
	engines := []string{"bolt", "leveldb", "pebble"}
	for i, e := range engines {
		c.Members[i].Extra = []string{"--engine", e}
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	for i, e := range engines {
		if s, err := c.Status(i); err != nil || s.Engine != e {
			t.Fatalf("member %d status %+v %v: want engine %s", i+1, s, err, e)
		}
	}

	want := map[string]string{}
	put := func(via int, k int) {
		key := fmt.Sprintf("mix/%04d", k)
		c.MustPut(via, key, snapValue(k))
		want[key] = snapValue(k)
	}
	// Writes through every member, each read back linearizably from the
	// member after it.
	for k := range 150 {
		put(k%3, k)
		c.MustGet((k+1)%3, fmt.Sprintf("mix/%04d", k), snapValue(k))
	}

	// Kill the leader; writes go on; the killed member restarts with all.
	li := c.WaitLeader(10 * time.Second)
	c.Kill(li)
	survivors := []int{(li + 1) % 3, (li + 2) % 3}
	c.WaitNewLeader(15*time.Second, li, survivors...)
	for k := 150; k < 200; k++ {
		put(survivors[k%2], k)
	}
	c.Restart(li)
	c.Eventually(30*time.Second, "restarted member has every value", func() error {
		return serializableHasAll(c, li, want)
	})

	// A fourth member on the memory engine joins after compaction: it can
	// only catch up by installing a snapshot made by another engine.
	c.Extra = append(c.Extra, "--engine", "memory")
	n4 := c.AddMember(c.WaitLeader(10*time.Second), false)
	c.Eventually(30*time.Second, "member 4 (memory) has every value", func() error {
		return serializableHasAll(c, n4, want)
	})
	if s := waitSnapshot(t, c, n4, 20*time.Second); s.Engine != "memory" {
		t.Fatalf("member 4 engine %q", s.Engine)
	}

	// A durable member that misses more than the log keeps must install a
	// snapshot into its engine; it then restarts from that engine.
	lagger := (c.WaitLeader(10*time.Second) + 1) % 3
	c.Kill(lagger)
	others := []int{}
	for i := range c.Members {
		if i != lagger {
			others = append(others, i)
		}
	}
	c.WaitLeader(15*time.Second, others...)
	for k := 200; k < 300; k++ {
		put(others[k%len(others)], k)
	}
	c.Restart(lagger)
	c.Eventually(30*time.Second, "lagging durable member installed a snapshot and has every value", func() error {
		return serializableHasAll(c, lagger, want)
	})
	if !strings.Contains(c.Log(lagger), "installed snapshot state") {
		t.Errorf("member %d (%s) caught up without installing a snapshot; log tail:\n%s",
			lagger+1, engines[lagger], strings.Join(tailLines(c.Log(lagger), 20), "\n"))
	}

	// Kill everyone, restart, nothing acknowledged is lost.
	c.KillAll()
	for i := range c.Members {
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	for i := range c.Members {
		c.Eventually(30*time.Second, fmt.Sprintf("member %d has every value after a full restart", i+1), func() error {
			return serializableHasAll(c, i, want)
		})
	}
	// And a linearizable read through each engine.
	for i := range c.Members {
		c.MustGet(i, "mix/0299", snapValue(299))
	}
}

// TestEngineMismatchRefused: a data dir remembers its engine; starting it
// with another is refused with a message naming both, and nothing changes.
func TestEngineMismatchRefused(t *testing.T) {
	c := NewStoppedCluster(t, Options{Size: 1})
	c.Members[0].Extra = []string{"--engine", "pebble"}
	c.Start(0)
	c.WaitReady(30 * time.Second)
	c.MustPut(0, "k", "v")
	if code := c.Stop(0); code != 0 {
		t.Fatalf("stop exit code %d", code)
	}
	before := dirListing(t, c.Members[0].DataDir)
	args := append([]string(nil), c.Args(0)...)
	args = append(args, "--engine", "bolt")
	c.StartArgs(0, args)
	code, err := c.WaitExit(0, 20*time.Second)
	if err != nil || code == 0 {
		t.Fatalf("start with another engine: exit %d, %v; want a non-zero exit", code, err)
	}
	log := c.Log(0)
	if !strings.Contains(log, "pebble") || !strings.Contains(log, "bolt") {
		t.Errorf("error should name both engines; log tail:\n%s", strings.Join(tailLines(log, 5), "\n"))
	}
	if after := dirListing(t, c.Members[0].DataDir); !slices.Equal(after, before) {
		t.Errorf("data dir changed by the refused start:\nbefore %s\nafter  %s", before, after)
	}
	c.Start(0)
	c.WaitReady(30 * time.Second)
	c.MustGet(0, "k", "v")
}
