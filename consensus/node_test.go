package consensus

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// others returns ids without skip.
func others(ids []uint64, skip ...uint64) []uint64 {
	var out []uint64
	for _, id := range ids {
		if !slices.Contains(skip, id) {
			out = append(out, id)
		}
	}
	return out
}

// waitClosed fails the test unless ch is closed within waitTimeout.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// keysInApplyOrder returns the keys of log in the order they were first
// applied.
func keysInApplyOrder(log []appliedEntry) []string {
	var keys []string
	seen := map[string]bool{}
	for _, e := range log {
		k, _, _ := bytes.Cut([]byte(e.Data), []byte("="))
		if !seen[string(k)] {
			seen[string(k)] = true
			keys = append(keys, string(k))
		}
	}
	return keys
}

func TestElectionAndReplication(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)

	leaders := 0
	term := c.node(lead).Status().GetTerm()
	for _, id := range all {
		if c.node(id).Role() == raft.StateLeader {
			leaders++
		}
		if got := c.node(id).Status().GetTerm(); got != term {
			t.Errorf("member %d at term %d, leader %d at term %d", id, got, lead, term)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d members in the leader role, want exactly 1", leaders)
	}
	follower := others(all, lead)[0]

	// Alternate proposals between the leader and a follower (which forwards
	// to the leader); each is waited for, so apply order must match.
	var want []string
	for i := range 10 {
		via := lead
		if i%2 == 1 {
			via = follower
		}
		key := fmt.Sprintf("k%02d", i)
		c.propose(via, key, fmt.Sprintf("v%02d-via-%d", i, via))
		want = append(want, key)
	}
	v := c.waitConverged(all...)
	if got := keysInApplyOrder(v.log); !slices.Equal(got, want) {
		t.Fatalf("apply order %v, want %v", got, want)
	}
	for i, key := range want {
		via := lead
		if i%2 == 1 {
			via = follower
		}
		if got, exp := v.kv[key], fmt.Sprintf("v%02d-via-%d", i, via); got != exp {
			t.Errorf("%s=%q, want %q", key, got, exp)
		}
	}
	for i := 1; i < len(v.log); i++ {
		if v.log[i].Index <= v.log[i-1].Index {
			t.Fatalf("apply log indexes not increasing: %v", v.log)
		}
	}
	// 3 bootstrap conf changes + at least one empty leader entry + 10.
	if v.applied < 14 {
		t.Errorf("applied index %d, want >= 14", v.applied)
	}
	st := c.node(lead).Status()
	if st.GetCommit() < v.applied {
		t.Errorf("leader commit %d < applied %d", st.GetCommit(), v.applied)
	}
	// A follower applies an entry once it has persisted it and learned the
	// commit; its append response may still be on the way to the leader, so
	// the leader's view of each match is waited for, not read once.
	c.eventually("the leader to see every match reach the applied index", func() (bool, string) {
		st, ok := c.leaderStatus(all...)
		if !ok {
			return false, "no member in the leader role"
		}
		for _, id := range all {
			if pr := st.Progress[id]; pr.Match < v.applied {
				return false, fmt.Sprintf("leader's progress for %d: match %d < applied %d", id, pr.Match, v.applied)
			}
		}
		return true, ""
	})
	for _, id := range all {
		if got := c.view(id).voters; !slices.Equal(got, all) {
			t.Errorf("member %d: voters %v, want %v", id, got, all)
		}
	}
	if n := c.net.delivered(raftpb.MsgProp); n < 5 {
		t.Errorf("%d MsgProp delivered, want >= 5 (follower forwarding)", n)
	}
}

func TestLeaderFailureAndRestart(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	old := c.waitLeader(all...)
	for i := range 5 {
		c.propose(old, fmt.Sprintf("a%d", i), "1")
	}
	before := c.waitConverged(all...)

	rest := others(all, old)
	var changed []<-chan struct{}
	for _, id := range rest {
		changed = append(changed, c.node(id).LeaderChanged())
	}
	c.stop(old)
	for i, ch := range changed {
		waitClosed(t, ch, fmt.Sprintf("member %d to notice the leader change", rest[i]))
	}
	lead := c.waitLeader(rest...)
	if lead == old {
		t.Fatalf("stopped member %d is still the leader", old)
	}
	for i := range 6 {
		c.propose(rest[i%2], fmt.Sprintf("b%d", i), "2")
	}
	mid := c.waitConverged(rest...)
	if mid.applied <= before.applied {
		t.Fatalf("applied %d after failover, not beyond %d", mid.applied, before.applied)
	}

	m := c.restart(old)
	if m.boot.Fresh {
		t.Fatal("restarted member found a fresh disk")
	}
	if got := m.boot.HardState.GetCommit(); got < before.applied {
		t.Errorf("restarted member's hard state commit %d < %d applied before it stopped", got, before.applied)
	}
	if n := uint64(len(m.boot.Entries)); n < before.applied {
		t.Errorf("restarted member replayed %d entries, want >= %d", n, before.applied)
	}
	if m.boot.Entries[0].GetIndex() != 1 {
		t.Errorf("first replayed entry %d, want 1", m.boot.Entries[0].GetIndex())
	}

	c.eventually("restarted member to catch up", func() (bool, string) {
		v := c.view(old)
		return v.applied >= mid.applied, fmt.Sprintf("applied %d < %d", v.applied, mid.applied)
	})
	final := c.waitConverged(all...)
	for i := range 5 {
		if final.kv[fmt.Sprintf("a%d", i)] != "1" {
			t.Errorf("a%d missing after restart: %v", i, final.kv)
		}
	}
	for i := range 6 {
		if final.kv[fmt.Sprintf("b%d", i)] != "2" {
			t.Errorf("b%d missing after restart: %v", i, final.kv)
		}
	}
	if got := c.view(old).firstSeen; got != 1 {
		t.Errorf("restarted member replayed from %d, want 1", got)
	}

	// The restarted member is a full participant again.
	c.waitLeader(all...)
	c.propose(old, "c", "3")
	c.waitKey("c", "3", all...)
	c.waitConverged(all...)
}

func TestPartitionedLeaderStepsDown(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	old := c.waitLeader(all...)
	c.propose(old, "before", "1")
	c.waitConverged(all...)

	rest := others(all, old)
	oldChanged := c.node(old).LeaderChanged()
	c.net.isolate(old, rest...)

	// A proposal to the cut-off leader: accepted into its log at best, it
	// can never gather a quorum.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	isoErr := c.node(old).Propose(ctx, []byte("iso=1"))
	cancel()
	t.Logf("proposal to isolated leader %d: err=%v", old, isoErr)

	// CheckQuorum: the old leader steps down on its own.
	waitClosed(t, oldChanged, "the isolated leader's leader change")
	c.eventually("isolated leader to step down", func() (bool, string) {
		l, r := c.node(old).Leader(), c.node(old).Role()
		return l != old && r != raft.StateLeader, fmt.Sprintf("leader %d role %v", l, r)
	})

	lead := c.waitLeader(rest...)
	if lead == old {
		t.Fatalf("isolated member %d leads the majority", old)
	}
	c.propose(lead, "during", "1")
	c.propose(others(rest, lead)[0], "during2", "1")
	c.waitConverged(rest...)
	if got := c.node(old).Leader(); got == old {
		t.Fatalf("isolated member %d claims leadership again", old)
	}
	vOld := c.view(old)
	if _, ok := vOld.kv["during"]; ok {
		t.Fatal("isolated member applied an entry committed by the majority")
	}
	for _, id := range all {
		if _, ok := c.view(id).kv["iso"]; ok {
			t.Fatalf("member %d applied the isolated leader's proposal during the partition", id)
		}
	}

	c.net.heal()
	c.eventually("old leader to follow the new one", func() (bool, string) {
		l := c.node(old).Leader()
		return l != 0 && l != old && l == c.node(others(all, old)[0]).Leader(), fmt.Sprintf("old leader follows %d", l)
	})
	// A further proposal through the old leader flushes everything through.
	c.propose(old, "after", "1")
	final := c.waitConverged(all...)
	for _, k := range []string{"before", "during", "during2", "after"} {
		if final.kv[k] != "1" {
			t.Errorf("%s missing after heal: %v", k, final.kv)
		}
	}
	// Never on only some members: the views are equal (waitConverged), so
	// iso is on all or on none. Raft also says it must be none: the old
	// leader's uncommitted entry was overwritten by the new term's log.
	_, isoApplied := final.kv["iso"]
	for _, id := range all {
		if _, ok := c.view(id).kv["iso"]; ok != isoApplied {
			t.Fatalf("iso applied on member %d: %v, on member %d: %v", id, ok, all[0], isoApplied)
		}
	}
	if isoApplied {
		t.Errorf("the isolated leader's proposal was committed after the heal; its term's entry should have been overwritten")
	}
}

func TestReadIndexOnFollower(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)
	var acked uint64
	for i := range 5 {
		acked = max(acked, c.propose(lead, fmt.Sprintf("r%d", i), "x"))
	}
	follower := others(all, lead)[0]
	commit := c.node(lead).Status().GetCommit()
	if commit < acked {
		t.Fatalf("leader commit %d < acknowledged index %d", commit, acked)
	}

	read := func(id uint64, rctx []byte) raft.ReadState {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.node(id).ReadIndex(ctx, rctx)
			cancel()
			if err != nil {
				t.Fatalf("ReadIndex on %d: %v", id, err)
			}
			// raft may drop a read silently (e.g. during an election); ask
			// again after a while.
			retry := time.After(time.Second)
		wait:
			for {
				select {
				case rs := <-c.node(id).ReadStates():
					if bytes.Equal(rs.RequestCtx, rctx) {
						return rs
					}
					t.Logf("ignoring read state for %q", rs.RequestCtx)
				case <-retry:
					break wait
				}
			}
		}
		t.Fatalf("no read state for %q on %d", rctx, id)
		return raft.ReadState{}
	}

	rs := read(follower, []byte("read-on-follower"))
	if rs.Index < acked || rs.Index < commit {
		t.Fatalf("read index %d below acknowledged %d / commit %d seen before the read", rs.Index, acked, commit)
	}
	// The follower can serve the read once it has applied up to the index.
	c.eventually("follower to apply up to the read index", func() (bool, string) {
		v := c.view(follower)
		return v.applied >= rs.Index, fmt.Sprintf("applied %d < %d", v.applied, rs.Index)
	})
	v := c.view(follower)
	for i := range 5 {
		if v.kv[fmt.Sprintf("r%d", i)] != "x" {
			t.Fatalf("follower at read index %d misses r%d: %v", rs.Index, i, v.kv)
		}
	}

	// A write acknowledged after the first read is visible to a later one.
	idx := c.propose(follower, "r-late", "y")
	rs2 := read(follower, []byte("second-read"))
	if rs2.Index < idx || rs2.Index < rs.Index {
		t.Fatalf("second read index %d below acknowledged %d or first read %d", rs2.Index, idx, rs.Index)
	}
	rsLead := read(lead, []byte("read-on-leader"))
	if rsLead.Index < idx {
		t.Fatalf("leader read index %d below acknowledged %d", rsLead.Index, idx)
	}
}

func TestWholeClusterRestart(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	c.waitLeader(all...)
	for i := range 12 {
		c.propose(all[i%3], fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	before := c.waitConverged(all...)

	for _, id := range all {
		c.stop(id)
	}
	for _, id := range all {
		m := c.restart(id)
		if m.boot.Fresh || m.boot.HardState.GetTerm() == 0 || len(m.boot.Entries) == 0 {
			t.Fatalf("member %d: nothing found on disk: fresh=%v hs=%v entries=%d", id, m.boot.Fresh, m.boot.HardState, len(m.boot.Entries))
		}
		if !bytes.Equal(m.boot.Metadata, fmt.Appendf(nil, "member-%d", id)) {
			t.Errorf("member %d: WAL metadata %q", id, m.boot.Metadata)
		}
		// The term is known from the disk, before any Ready: a Ready
		// carries the hard state only when it changes.
		if m.startTerm != m.boot.HardState.GetTerm() {
			t.Errorf("member %d: Term() = %d at start, want the persisted %d", id, m.startTerm, m.boot.HardState.GetTerm())
		}
	}
	c.waitLeader(all...)
	c.eventually("members to re-apply their logs", func() (bool, string) {
		for _, id := range all {
			if v := c.view(id); v.applied < before.applied {
				return false, fmt.Sprintf("member %d applied %d < %d", id, v.applied, before.applied)
			}
		}
		return true, ""
	})
	after := c.waitConverged(all...)
	if !maps.Equal(after.kv, before.kv) {
		t.Fatalf("state after restart %v, before %v", after.kv, before.kv)
	}
	if !slices.Equal(after.log, before.log) {
		t.Fatalf("apply log after restart %v, before %v", after.log, before.log)
	}
	for _, id := range all {
		if v := c.view(id); v.firstSeen != 1 || !slices.Equal(v.voters, all) {
			t.Errorf("member %d: replay started at %d, voters %v", id, v.firstSeen, v.voters)
		}
	}
	c.propose(2, "post", "restart")
	c.waitKey("post", "restart", all...)
}

func TestSnapshotAndCompaction(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)
	for i := range 20 {
		c.propose(lead, fmt.Sprintf("k%02d", i), "v")
	}
	c.waitConverged(all...)

	f := others(all, lead)[0]
	n := c.node(f)
	if fi, _ := n.storage.FirstIndex(); fi != 1 {
		t.Fatalf("first index %d before any compaction", fi)
	}
	i, cs, data := c.members[f].sm.snapshot()
	const keep = 5
	if err := n.Snapshot(i, cs, data, keep); err != nil {
		t.Fatalf("Snapshot(%d): %v", i, err)
	}
	if got := n.SnapshotIndex(); got != i {
		t.Fatalf("SnapshotIndex %d, want %d", got, i)
	}
	if fi, _ := n.storage.FirstIndex(); fi != i-keep+1 {
		t.Fatalf("first index %d after Snapshot(%d, keep %d), want %d", fi, i, keep, i-keep+1)
	}
	s, err := n.LastSnapshot()
	if err != nil || !bytes.Equal(s.GetData(), data) || !slices.Equal(s.GetMetadata().GetConfState().GetVoters(), all) {
		t.Fatalf("LastSnapshot = %v, %v", s.GetMetadata(), err)
	}
	snapTerm := s.GetMetadata().GetTerm()
	// An older snapshot is a no-op.
	if err := n.Snapshot(i-1, cs, []byte("stale"), keep); err != nil {
		t.Fatalf("stale Snapshot: %v", err)
	}
	if got := n.SnapshotIndex(); got != i {
		t.Fatalf("stale Snapshot moved the snapshot to %d", got)
	}

	for j := range 5 {
		c.propose(lead, fmt.Sprintf("post%d", j), "w")
	}
	pre := c.waitConverged(all...)

	c.stop(f)
	last, _ := n.storage.LastIndex()
	// Read the disk back directly.
	disk, boot, err := OpenDisk(c.lg, c.members[f].dir, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if boot.Fresh {
		t.Fatal("reopened disk is fresh")
	}
	if boot.Snapshot == nil || boot.SnapshotIndex() != i || boot.Snapshot.GetMetadata().GetTerm() != snapTerm {
		t.Fatalf("bootstrap snapshot %v, want index %d term %d", boot.Snapshot.GetMetadata(), i, snapTerm)
	}
	if !bytes.Equal(boot.Snapshot.GetData(), data) {
		t.Fatal("bootstrap snapshot data differs from what was saved")
	}
	if got := boot.Snapshot.GetMetadata().GetConfState().GetVoters(); !slices.Equal(slices.Sorted(slices.Values(got)), all) {
		t.Fatalf("bootstrap snapshot voters %v", got)
	}
	if len(boot.Entries) == 0 || boot.Entries[0].GetIndex() != i+1 {
		t.Fatalf("bootstrap entries start at %v, want %d", boot.Entries, i+1)
	}
	for k, e := range boot.Entries {
		if e.GetIndex() != i+1+uint64(k) {
			t.Fatalf("bootstrap entry %d has index %d, want %d", k, e.GetIndex(), i+1+uint64(k))
		}
	}
	if got := boot.Entries[len(boot.Entries)-1].GetIndex(); got != last {
		t.Fatalf("bootstrap ends at %d, raft log ended at %d", got, last)
	}
	if boot.HardState.GetCommit() < i {
		t.Fatalf("bootstrap commit %d below snapshot %d", boot.HardState.GetCommit(), i)
	}
	if _, err := os.Stat(disk.SnapDir()); err != nil {
		t.Fatal(err)
	}
	if err := disk.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart from the snapshot: only entries after it are replayed.
	m := c.restart(f)
	if fi, _ := m.node.storage.FirstIndex(); fi != i+1 {
		t.Fatalf("restarted raft log starts at %d, want %d", fi, i+1)
	}
	c.eventually("restarted member to catch up", func() (bool, string) {
		v := c.view(f)
		return v.applied >= pre.applied, fmt.Sprintf("applied %d < %d", v.applied, pre.applied)
	})
	final := c.waitConverged(all...)
	if !maps.Equal(final.kv, pre.kv) {
		t.Fatalf("state after restart from snapshot %v, want %v", final.kv, pre.kv)
	}
	if got := c.view(f).firstSeen; got != i+1 {
		t.Fatalf("restarted member applied from %d, want %d (after the snapshot)", got, i+1)
	}
}

func TestSnapshotCatchUpLaggingFollower(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)
	c.propose(lead, "k0", "v")
	c.waitConverged(all...)

	lag := others(all, lead)[0]
	other := others(all, lead, lag)[0]
	c.net.isolate(lag, lead, other)
	for i := 1; i <= 10; i++ {
		c.propose(lead, fmt.Sprintf("k%d", i), "v")
	}
	c.waitConverged(lead, other)

	// Both members that may lead compact away everything the lagging
	// follower lacks, so whichever leads after the heal must send a
	// snapshot.
	var i uint64 // the leader's snapshot index
	for _, id := range []uint64{lead, other} {
		si, cs, data := c.members[id].sm.snapshot()
		if err := c.node(id).Snapshot(si, cs, data, 0); err != nil {
			t.Fatal(err)
		}
		if fi, _ := c.node(id).storage.FirstIndex(); fi != si+1 {
			t.Fatalf("member %d's first index %d after compacting to %d", id, fi, si)
		}
		if id == lead {
			i = si
		}
	}
	if v := c.view(lag); v.applied >= i {
		t.Fatalf("isolated follower applied %d, already at the snapshot %d", v.applied, i)
	}

	c.net.heal()
	c.eventually("lagging follower to catch up", func() (bool, string) {
		v := c.view(lag)
		return v.applied >= i, fmt.Sprintf("applied %d < %d", v.applied, i)
	})
	c.propose(lead, "after", "snap")
	final := c.waitConverged(all...)
	if final.kv["k10"] != "v" || final.kv["after"] != "snap" {
		t.Fatalf("state after catch-up: %v", final.kv)
	}
	if got := c.view(lag).snapshots; got < 1 {
		t.Fatalf("lagging follower installed %d snapshots, want >= 1", got)
	}
	if got := c.net.delivered(raftpb.MsgSnap); got < 1 {
		t.Fatalf("%d MsgSnap delivered", got)
	}
	if got := c.node(lag).SnapshotIndex(); got < i {
		t.Fatalf("lagging follower's raft log snapshot %d < %d", got, i)
	}

	// The received snapshot is durable.
	c.stop(lag)
	m := c.restart(lag)
	if m.boot.SnapshotIndex() < i {
		t.Fatalf("restarted follower found snapshot %d on disk, want >= %d", m.boot.SnapshotIndex(), i)
	}
	c.eventually("restarted follower to catch up", func() (bool, string) {
		v := c.view(lag)
		return v.applied >= final.applied, fmt.Sprintf("applied %d < %d", v.applied, final.applied)
	})
	again := c.waitConverged(all...)
	if !maps.Equal(again.kv, final.kv) {
		t.Fatalf("state after restart %v, want %v", again.kv, final.kv)
	}
}

func TestAddMember(t *testing.T) {
	c := newCluster(t, 3)
	orig := []uint64{1, 2, 3}
	lead := c.waitLeader(orig...)
	for i := range 5 {
		c.propose(lead, fmt.Sprintf("k%d", i), "v")
	}
	c.waitConverged(orig...)

	m4 := c.start(4, nil, true)
	if !m4.boot.Fresh {
		t.Fatal("new member's disk is not fresh")
	}
	all := []uint64{1, 2, 3, 4}
	cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(4), Id: proto.Uint64(42)}
	c.eventually("conf change adding member 4 to apply on the leader", func() (bool, string) {
		if slices.Equal(c.view(lead).voters, all) {
			return true, ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.node(lead).ProposeConfChange(ctx, cc)
		cancel()
		// Give it time to commit before proposing again.
		for range 100 {
			if slices.Equal(c.view(lead).voters, all) {
				return true, ""
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false, fmt.Sprintf("voters %v, last propose err %v", c.view(lead).voters, err)
	})

	final := c.waitConverged(all...)
	v4 := c.view(4)
	if !slices.Equal(v4.voters, all) {
		t.Fatalf("new member's voters %v", v4.voters)
	}
	if v4.snapshots != 0 || v4.firstSeen != 1 {
		t.Fatalf("new member caught up via snapshot (%d) or from index %d, want entries from 1", v4.snapshots, v4.firstSeen)
	}
	for i := range 5 {
		if final.kv[fmt.Sprintf("k%d", i)] != "v" {
			t.Fatalf("k%d missing: %v", i, final.kv)
		}
	}
	for _, id := range orig {
		if got := c.view(id).voters; !slices.Equal(got, all) {
			t.Fatalf("member %d: voters %v", id, got)
		}
	}
	if c.node(4).Leader() != lead {
		t.Fatalf("new member follows %d, leader is %d", c.node(4).Leader(), lead)
	}

	// The new member forwards proposals and counts in the quorum: with one
	// original member down, 3 of 4 voters (including 4) must acknowledge.
	c.propose(4, "from4", "x")
	down := others(orig, lead)[0]
	c.stop(down)
	up := others(all, down)
	lead = c.waitLeader(up...)
	c.propose(4, "quorum", "y")
	c.waitKey("quorum", "y", up...)
	st := c.node(lead).Status()
	if _, ok := st.Config.Voters.IDs()[4]; !ok {
		t.Fatalf("leader's voters %v lack 4", st.Config.Voters)
	}
	// Member 4's append response can trail its apply (see
	// TestElectionAndReplication), so the leader's view is waited for.
	applied4 := c.view(4).applied
	c.eventually("the leader to see member 4's match reach its applied index", func() (bool, string) {
		st, ok := c.leaderStatus(up...)
		if !ok {
			return false, "no member in the leader role"
		}
		if pr := st.Progress[4]; pr.Match < applied4 {
			return false, fmt.Sprintf("leader's progress for 4: match %d < applied %d", pr.Match, applied4)
		}
		return true, ""
	})
	c.waitConverged(up...)
}

// TestPersistFailureStopsNode breaks a follower's WAL under it: its node
// must stop with the write error instead of acknowledging what it could
// not persist, the rest of the cluster carries on, and the member restarts
// from what its disk does hold.
func TestPersistFailureStopsNode(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)
	c.propose(lead, "a", "1")
	c.waitConverged(all...)

	f := others(all, lead)[0]
	other := others(all, lead, f)[0]
	if err := c.members[f].disk.w.Close(); err != nil { // the disk goes away
		t.Fatal(err)
	}
	idx := c.propose(lead, "b", "2")
	err := c.reap(f)
	if err == nil || !strings.Contains(err.Error(), "save to WAL") {
		t.Fatalf("broken follower's Run returned %v, want a WAL write error", err)
	}
	if got := c.node(f).Err(); got != err {
		t.Fatalf("Err() = %v, Run returned %v", got, err)
	}
	if v := c.view(f); v.kv["b"] != "" || v.applied >= idx {
		t.Fatalf("broken follower recorded b (applied %d, entry %d) without persisting it", v.applied, idx)
	}

	c.propose(other, "c", "3")
	c.waitConverged(lead, other)

	c.restart(f)
	c.eventually("restarted member to catch up", func() (bool, string) {
		v := c.view(f)
		return v.kv["c"] == "3", fmt.Sprintf("kv %v", v.kv)
	})
	final := c.waitConverged(all...)
	if final.kv["a"] != "1" || final.kv["b"] != "2" {
		t.Fatalf("state after restart %v", final.kv)
	}
}
