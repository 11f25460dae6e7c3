package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func snapValue(k int) string {
	return fmt.Sprintf("value-%04d-%s", k, strings.Repeat("x", 64))
}

// waitSnapshot waits until member i reports snapshot_index > 0.
func waitSnapshot(t *testing.T, c *Cluster, i int, d time.Duration) Status {
	t.Helper()
	var st Status
	c.Eventually(d, fmt.Sprintf("member %d reports snapshot_index > 0", c.Members[i].ID), func() error {
		s, err := c.Status(i)
		if err != nil {
			return err
		}
		st = s
		if s.SnapshotIndex == 0 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	return st
}

// TestSnapshotCatchUp writes enough with --snapshot-count 20 for the log to
// be compacted, then adds a fourth member (POST /4, then --join), which can
// only catch up by installing a snapshot.
func TestSnapshotCatchUp(t *testing.T) {
	c := NewCluster(t, Options{Size: 3, Extra: []string{"--snapshot-count", "20"}})
	want := map[string]string{}
	for k := range 200 {
		key := fmt.Sprintf("snap/%04d", k)
		c.MustPut(k%3, key, snapValue(k))
		want[key] = snapValue(k)
	}
	li := c.WaitLeader(10 * time.Second)
	ls := waitSnapshot(t, c, li, 10*time.Second)
	t.Logf("leader status after 200 writes: %+v", ls)
	if ls.SnapshotIndex < 100 {
		t.Errorf("leader snapshot_index = %d after ~200 entries with --snapshot-count 20, want >= 100", ls.SnapshotIndex)
	}

	n4 := c.AddMember(li, false) // POST /4
	if c.Members[n4].ID != 4 {
		t.Fatalf("new member id = %d, want 4", c.Members[n4].ID)
	}
	c.Eventually(30*time.Second, "member 4 has every value locally", func() error {
		return serializableHasAll(c, n4, want)
	})
	s4 := waitSnapshot(t, c, n4, 20*time.Second)
	t.Logf("member 4 status: %+v", s4)

	li = c.WaitLeader(20 * time.Second)
	ms, err := c.MemberList(n4)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || !slices.ContainsFunc(ms, func(m MemberInfo) bool { return m.ID == 4 && m.PeerURL == c.Members[n4].PeerURL }) {
		t.Errorf("members on member 4 = %+v, want 4 members including {4 %s}", ms, c.Members[n4].PeerURL)
	}
	checkAll(t, c, n4, want)

	// the new member takes writes, the old ones see them
	for k := 200; k < 210; k++ {
		key := fmt.Sprintf("snap/%04d", k)
		c.MustPut(n4, key, snapValue(k))
		want[key] = snapValue(k)
		c.MustGet(k%3, key, snapValue(k))
	}

	// restart a member after snapshots were taken: snapshot + WAL replay
	// (and catch-up)
	r := (li + 1) % 3
	c.StopClean(r)
	c.Restart(r)
	c.WaitLeader(20 * time.Second)
	c.Eventually(30*time.Second, "restarted member has every value locally", func() error {
		return serializableHasAll(c, r, want)
	})
	checkAll(t, c, r, want)

	// and the joined member restarts too (same flags, --join included)
	c.StopClean(n4)
	c.Restart(n4)
	c.WaitLeader(20 * time.Second)
	c.Eventually(30*time.Second, "restarted member 4 has every value locally", func() error {
		return serializableHasAll(c, n4, want)
	})
}

// TestSnapshotRestart takes snapshots (--snapshot-count 20), overwrites and
// deletes some keys after them, makes sure every member applied everything,
// kills the whole cluster and restarts a single member: it must rebuild its
// whole state from its own snapshot and WAL (serializable reads, with no
// quorum). Then the others come back and linearizable reads agree.
func TestSnapshotRestart(t *testing.T) {
	c := NewCluster(t, Options{Size: 3, Extra: []string{"--snapshot-count", "20"}})
	want := map[string]string{}
	for k := range 205 {
		key := fmt.Sprintf("sr/%04d", k)
		c.MustPut(k%3, key, snapValue(k))
		want[key] = snapValue(k)
	}
	for k := range 10 {
		key := fmt.Sprintf("sr/%04d", k)
		c.MustPut(1, key, "overwritten")
		want[key] = "overwritten"
	}
	var deleted []string
	for k := 10; k < 17; k++ {
		key := fmt.Sprintf("sr/%04d", k)
		if r, err := c.Delete(2, key); err != nil || r.Code != http.StatusNoContent {
			t.Fatalf("DELETE %q: %v %v, want 204", key, r, err)
		}
		delete(want, key)
		deleted = append(deleted, key)
	}
	// A follower learns that the last entries are committed from the next
	// append or heartbeat, and raft does not require that commit-index-only
	// update to be fsynced (the commit index is volatile state), so after a
	// crash a lone member may only know the entries before its last append
	// as committed. One more write (whose outcome is allowed to be either)
	// makes every follower durably record the deletes above as committed.
	c.MustPut(0, "sr/fence", "fence")
	li := c.WaitLeader(10 * time.Second)
	for i := range c.Members {
		c.WaitCaughtUp(i, li, 10*time.Second)
		waitSnapshot(t, c, i, 10*time.Second)
	}

	c.KillAll()
	lone := others(3, li)[0]
	c.Restart(lone)
	c.Eventually(20*time.Second, "lone restarted member rebuilt its state from snapshot + WAL", func() error {
		return serializableHasAll(c, lone, want)
	})
	for _, k := range deleted {
		if r, err := c.GetSerializable(lone, k); err != nil || r.Code != http.StatusNotFound {
			t.Errorf("serializable GET of deleted %q on the restarted member: %v %v, want 404", k, r, err)
		}
	}
	if r, err := c.GetSerializable(lone, "sr/fence"); err != nil || !(r.Code == http.StatusNotFound || (r.Code == http.StatusOK && r.Body == "fence")) {
		t.Errorf("serializable GET sr/fence on the restarted member: %v %v, want 404 or 200 fence", r, err)
	}
	s, err := c.Status(lone)
	if err != nil {
		t.Fatal(err)
	}
	if s.SnapshotIndex == 0 {
		t.Errorf("restarted member status %+v: snapshot_index 0, want the snapshot it loaded", s)
	}

	for _, i := range others(3, lone) {
		c.Restart(i)
	}
	c.WaitReady(30 * time.Second)
	want["sr/fence"] = "fence"
	for i := range c.Members {
		checkAll(t, c, i, want)
	}
	c.MustPut(li, "sr/new", "after-restart")
	c.MustGet(lone, "sr/new", "after-restart")
}
