package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// findMember returns the member with id in ms, or nil.
func findMember(ms []*pb.Member, id uint64) *pb.Member {
	for _, m := range ms {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// TestV3Membership drives the Cluster service: MemberList (names, peer
// and client URLs), MemberAdd of a voter, MemberUpdate of its peer URL
// before it starts, its start with --join, MemberRemove (the removed
// member exits), MemberAddAsLearner, MemberPromote refused while the
// learner lags and accepted once it caught up, and the errors.
func TestV3Membership(t *testing.T) {
	c := NewStoppedCluster(t, Options{Size: 3})
	for i, m := range c.Members {
		m.Extra = []string{"--name", "m" + strconv.FormatUint(m.ID, 10)}
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	c.WaitV3Ready(t, 15*time.Second)
	li := c.WaitLeader(10 * time.Second)
	cli := c.V3Client(t, 0, 1, 2)
	ctx := v3ctx(t)

	// MemberList on every member (names and client URLs are published by
	// each member once it runs: wait for them)
	for i := range c.Members {
		var last *clientv3.MemberListResponse
		c.Eventually(10*time.Second, fmt.Sprintf("MemberList on member %d lists the 3 started members", c.Members[i].ID), func() error {
			r := c.v3MemberList(t, i)
			last = r
			if len(r.Members) != 3 {
				return fmt.Errorf("%s, want 3 members", describeMembers(r.Members))
			}
			for _, m := range c.Members {
				got := findMember(r.Members, m.ID)
				if got == nil || got.Name != "m"+strconv.FormatUint(m.ID, 10) || !slices.Equal(got.PeerURLs, []string{m.PeerURL}) ||
					!slices.Equal(got.ClientURLs, []string{m.ClientURL}) || got.IsLearner {
					return fmt.Errorf("%s; want member %d = {name m%d, peers [%s], clients [%s], voter}", describeMembers(r.Members), m.ID, m.ID, m.PeerURL, m.ClientURL)
				}
			}
			return nil
		})
		// As etcd's: no revision in a Cluster response's header.
		c.checkHeader(t, fmt.Sprintf("MemberList on member %d", c.Members[i].ID), last.Header, i, 0)
		if last.Header.Revision != 0 {
			t.Errorf("MemberList on member %d: header revision %d, want none (etcd's Cluster headers carry none)", c.Members[i].ID, last.Header.Revision)
		}
	}
	mustV3Put(t, cli, "mem/before", "1")

	// MemberAdd a voter: id 4, unstarted (no name) in the list
	n4, ar := c.AddMemberV3(t, li, false)
	m4 := c.Members[n4]
	if ar.Member.IsLearner || !slices.Equal(ar.Member.PeerURLs, []string{m4.PeerURL}) || ar.Member.Name != "" {
		t.Errorf("MemberAdd answer member %s, want id 4, peer %s, no name, voter", describeMembers([]*pb.Member{ar.Member}), m4.PeerURL)
	}
	if len(ar.Members) != 4 || findMember(ar.Members, 4) == nil {
		t.Errorf("MemberAdd answer members %s, want the 4 members", describeMembers(ar.Members))
	}
	_, err := cli.MemberAdd(ctx, []string{m4.PeerURL})
	wantV3Err(t, "MemberAdd of a peer URL already in the cluster", err, rpctypes.ErrPeerURLExist)
	_, err = cli.MemberAdd(ctx, []string{c.Members[0].PeerURL})
	wantV3Err(t, "MemberAdd of member 1's peer URL", err, rpctypes.ErrPeerURLExist)

	// MemberUpdate its peer URL before it starts; it then starts there
	newPeer := freeURL(t)
	if _, err := cli.MemberUpdate(ctx, m4.ID, []string{newPeer}); err != nil {
		t.Fatalf("MemberUpdate(4, %s): %v", newPeer, err)
	}
	for i := range 3 {
		c.Eventually(10*time.Second, fmt.Sprintf("member %d lists member 4 at %s", c.Members[i].ID, newPeer), func() error {
			r := c.v3MemberList(t, i)
			m := findMember(r.Members, 4)
			if m == nil || !slices.Equal(m.PeerURLs, []string{newPeer}) {
				return fmt.Errorf("members %s", describeMembers(r.Members))
			}
			return nil
		})
	}
	m4.PeerURL = newPeer
	m4.Extra = []string{"--name", "m4"}
	c.Start(n4)
	c.Eventually(30*time.Second, "member 4 started, named and serving", func() error {
		r := c.v3MemberList(t, li)
		m := findMember(r.Members, 4)
		if m == nil || m.Name != "m4" || !slices.Equal(m.ClientURLs, []string{m4.ClientURL}) {
			return fmt.Errorf("members %s", describeMembers(r.Members))
		}
		return nil
	})
	c.WaitV3Ready(t, 15*time.Second, n4)
	c4 := c.V3Client(t, n4)
	if g := mustV3Get(t, c4, "mem/before"); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "1" {
		t.Errorf("member 4: Get mem/before = %v, want 1", kvStrings(g.Kvs))
	}
	mustV3Put(t, c4, "mem/via4", "4")
	if g := mustV3Get(t, cli, "mem/via4"); len(g.Kvs) != 1 {
		t.Errorf("write through member 4 not visible to the others")
	}

	// MemberRemove member 4: it leaves the list and exits by itself
	c.expectExit(n4)
	rr, err := cli.MemberRemove(ctx, 4)
	if err != nil {
		t.Fatalf("MemberRemove(4): %v", err)
	}
	if len(rr.Members) != 3 || findMember(rr.Members, 4) != nil {
		t.Errorf("MemberRemove answer members %s, want the 3 others", describeMembers(rr.Members))
	}
	if _, err := c.WaitExit(n4, 20*time.Second); err != nil {
		t.Errorf("removed member 4 did not exit: %v", err)
	}
	_, err = cli.MemberRemove(ctx, 4)
	wantV3Err(t, "MemberRemove of a removed member", err, rpctypes.ErrMemberNotFound)
	_, err = cli.MemberRemove(ctx, 99)
	wantV3Err(t, "MemberRemove of an unknown member", err, rpctypes.ErrMemberNotFound)
	_, err = cli.MemberUpdate(ctx, 99, []string{"http://127.0.0.1:1"})
	wantV3Err(t, "MemberUpdate of an unknown member", err, rpctypes.ErrMemberNotFound)
	for i := range 3 {
		if r := c.v3MemberList(t, i); len(r.Members) != 3 || findMember(r.Members, 4) != nil {
			t.Errorf("MemberList on member %d after the removal: %s", c.Members[i].ID, describeMembers(r.Members))
		}
	}

	// a learner: id 5 (ids are never reused), promote refused while it
	// has not caught up (it is not even started), accepted afterwards
	for range 50 {
		mustV3Put(t, cli, "mem/fill", "x") // something to catch up on
	}
	n5, lr := c.AddMemberV3(t, li, true)
	m5 := c.Members[n5]
	if m5.ID != 5 || !lr.Member.IsLearner {
		t.Fatalf("MemberAddAsLearner: member %s, want id 5, a learner", describeMembers([]*pb.Member{lr.Member}))
	}
	if m := findMember(c.v3MemberList(t, 0).Members, 5); m == nil || !m.IsLearner {
		t.Errorf("MemberList: member 5 = %v, want a learner", m)
	}
	_, err = cli.MemberPromote(ctx, 5)
	wantV3Err(t, "MemberPromote of a learner that has not started", err, rpctypes.ErrMemberLearnerNotReady)
	_, err = cli.MemberPromote(ctx, c.Members[0].ID)
	wantV3Err(t, "MemberPromote of a voter", err, rpctypes.ErrMemberNotLearner)
	_, err = cli.MemberPromote(ctx, 99)
	wantV3Err(t, "MemberPromote of an unknown member", err, rpctypes.ErrMemberNotFound)
	m5.Extra = []string{"--name", "m5"}
	c.Start(n5)
	c.Eventually(30*time.Second, "the learner caught up and is promoted", func() error {
		pctx, cancel := ctxFor(v3Timeout)
		defer cancel()
		_, err := cli.MemberPromote(pctx, 5)
		if err != nil && !isV3Err(err, rpctypes.ErrMemberLearnerNotReady) {
			t.Fatalf("MemberPromote(5) once started: %v, want success or ErrMemberLearnerNotReady while it catches up", err)
		}
		return err
	})
	for i := range 3 {
		c.Eventually(10*time.Second, fmt.Sprintf("member %d lists member 5 as a voter", c.Members[i].ID), func() error {
			r := c.v3MemberList(t, i)
			m := findMember(r.Members, 5)
			if m == nil || m.IsLearner || len(r.Members) != 4 {
				return fmt.Errorf("members %s", describeMembers(r.Members))
			}
			return nil
		})
	}
	c.WaitV3Ready(t, 15*time.Second, n5)
	c5 := c.V3Client(t, n5)
	mustV3Put(t, c5, "mem/via5", "5")
	if g := mustV3Get(t, c5, "mem/", clientv3.WithPrefix()); !slices.Equal(kvKeys(g.Kvs), []string{"mem/before", "mem/fill", "mem/via4", "mem/via5"}) {
		t.Errorf("member 5: mem/ = %q", kvKeys(g.Kvs))
	}
	s, err := c5.Status(ctx, m5.V3Endpoint())
	if err != nil || s.IsLearner || s.Header.MemberId != 5 {
		t.Errorf("Status of the promoted member: %v %v, want member 5, not a learner", s, err)
	}
}

// TestV3Maintenance drives the Maintenance service: Status, Hash and
// HashKV (equal on every member at one revision), the Snapshot stream,
// MoveLeader, Defragment and AlarmList.
func TestV3Maintenance(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	cli := c.V3Client(t)
	ctx := v3ctx(t)
	var lastRev int64
	for i := range 30 {
		lastRev = mustV3Put(t, cli, fmt.Sprintf("mt/%02d", i), fmt.Sprintf("v%d", i)).Header.Revision
	}
	if _, err := cli.Delete(ctx, "mt/0", clientv3.WithPrefix()); err != nil { // mt/00..mt/09
		t.Fatal(err)
	}
	midRev := lastRev
	for i := range 5 {
		lastRev = mustV3Put(t, cli, fmt.Sprintf("mt/%02d", i), "again").Header.Revision
	}
	for i := range c.Members {
		c.WaitCaughtUp(i, li, 10*time.Second)
	}

	t.Run("Status", func(t *testing.T) {
		c := c.For(t)
		hs, err := c.Status(li)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range c.Members {
			s, err := cli.Status(ctx, m.V3Endpoint())
			if err != nil {
				t.Fatalf("Status of member %d: %v", m.ID, err)
			}
			c.checkHeader(t, fmt.Sprintf("Status of member %d", m.ID), s.Header, i, lastRev)
			if s.Header.Revision != lastRev {
				t.Errorf("Status of member %d: revision %d, want %d", m.ID, s.Header.Revision, lastRev)
			}
			if s.Leader != c.Members[li].ID {
				t.Errorf("Status of member %d: leader %d, want %d", m.ID, s.Leader, c.Members[li].ID)
			}
			if s.Version == "" || s.DbSize <= 0 || s.RaftIndex == 0 || s.RaftAppliedIndex == 0 || s.RaftTerm != hs.Term || s.IsLearner {
				t.Errorf("Status of member %d: version %q db size %d raft index %d applied %d term %d learner %v; want a version, sizes, indexes, term %d, not a learner",
					m.ID, s.Version, s.DbSize, s.RaftIndex, s.RaftAppliedIndex, s.RaftTerm, s.IsLearner, hs.Term)
			}
			if s.RaftAppliedIndex > s.RaftIndex {
				t.Errorf("Status of member %d: applied index %d > raft index %d", m.ID, s.RaftAppliedIndex, s.RaftIndex)
			}
			if len(s.Errors) != 0 {
				t.Errorf("Status of member %d: errors %q", m.ID, s.Errors)
			}
		}
	})

	t.Run("HashKV", func(t *testing.T) {
		c := c.For(t)
		for _, rev := range []int64{midRev, lastRev, 0} {
			var first *clientv3.HashKVResponse
			for i, m := range c.Members {
				h, err := cli.HashKV(ctx, m.V3Endpoint(), rev)
				if err != nil {
					t.Fatalf("HashKV(%d) on member %d: %v", rev, m.ID, err)
				}
				c.checkHeader(t, "HashKV", h.Header, i, lastRev)
				want := rev
				if rev == 0 {
					want = lastRev
				}
				if h.HashRevision != want {
					t.Errorf("HashKV(%d) on member %d: hash_revision %d, want %d", rev, m.ID, h.HashRevision, want)
				}
				if first == nil {
					first = h
					continue
				}
				if h.Hash != first.Hash || h.CompactRevision != first.CompactRevision {
					t.Errorf("HashKV(%d): member %d has hash %x (compact %d), member %d has %x (compact %d)", rev, c.Members[0].ID, first.Hash, first.CompactRevision, m.ID, h.Hash, h.CompactRevision)
				}
			}
		}
		// the hash of a past revision does not change with later writes,
		// and differs from the hash at another revision
		h1, err := cli.HashKV(ctx, c.Members[0].V3Endpoint(), midRev)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := cli.HashKV(ctx, c.Members[0].V3Endpoint(), lastRev)
		if err != nil {
			t.Fatal(err)
		}
		if h1.Hash == h2.Hash {
			t.Errorf("HashKV at revisions %d and %d are both %x", midRev, lastRev, h1.Hash)
		}
		mustV3Put(t, cli, "mt/later", "x")
		h3, err := cli.HashKV(ctx, c.Members[1].V3Endpoint(), midRev)
		if err != nil {
			t.Fatal(err)
		}
		if h3.Hash != h1.Hash {
			t.Errorf("HashKV(%d) changed after a later write: %x then %x", midRev, h1.Hash, h3.Hash)
		}
		// Hash (whole store) is equal on members that applied the same entries
		li := c.WaitLeader(10 * time.Second)
		for i := range c.Members {
			c.WaitCaughtUp(i, li, 10*time.Second)
		}
		var hashes []uint32
		for _, m := range c.Members {
			mc := pb.NewMaintenanceClient(c.V3Client(t, c.Index(m.ID)).ActiveConnection())
			h, err := mc.Hash(ctx, &pb.HashRequest{})
			if err != nil {
				t.Fatalf("Hash on member %d: %v", m.ID, err)
			}
			if h.Header == nil || h.Header.MemberId != m.ID {
				t.Errorf("Hash on member %d: header %v", m.ID, h.Header)
			}
			hashes = append(hashes, h.Hash)
		}
		if hashes[0] != hashes[1] || hashes[0] != hashes[2] {
			t.Errorf("Hash differs between members at the same applied index: %x", hashes)
		}
	})

	t.Run("Snapshot", func(t *testing.T) {
		c := c.For(t)
		sc := c.V3Client(t, (li+1)%3)
		sctx, cancel := ctxFor(30 * time.Second)
		defer cancel()
		rc, err := sc.Snapshot(sctx)
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("reading the snapshot stream: %v", err)
		}
		// etcd's layout: the data, then its SHA-256 (the data padded to
		// a multiple of 512 bytes, so size % 512 == 32)
		if len(data) <= sha256.Size || len(data)%512 != sha256.Size {
			t.Fatalf("snapshot of %d bytes: want data plus a SHA-256 trailer, size %% 512 == 32", len(data))
		}
		sum := sha256.Sum256(data[:len(data)-sha256.Size])
		if !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
			t.Errorf("snapshot trailer is not the SHA-256 of the data")
		}
		t.Logf("snapshot: %d bytes", len(data))
	})

	t.Run("Defragment", func(t *testing.T) {
		c := c.For(t)
		for _, m := range c.Members {
			dctx, cancel := ctxFor(60 * time.Second)
			r, err := cli.Defragment(dctx, m.V3Endpoint())
			cancel()
			if err != nil {
				t.Fatalf("Defragment member %d: %v", m.ID, err)
			}
			if r.Header == nil || r.Header.MemberId != m.ID {
				t.Errorf("Defragment member %d: header %v", m.ID, r.Header)
			}
			s, err := cli.Status(ctx, m.V3Endpoint())
			if err != nil || s.DbSize <= 0 {
				t.Errorf("Status after defragment of member %d: %v %v", m.ID, s, err)
			}
		}
		g := mustV3Get(t, cli, "mt/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if g.Count != 26 { // 30 - 10 deleted + 5 again + mt/later
			t.Errorf("after defragment: %d keys under mt/, want 26", g.Count)
		}
	})

	t.Run("AlarmList", func(t *testing.T) {
		r, err := cli.AlarmList(ctx)
		if err != nil || len(r.Alarms) != 0 {
			t.Errorf("AlarmList: %v %v, want no alarm", r, err)
		}
	})

	t.Run("MoveLeader", func(t *testing.T) {
		c := c.For(t)
		li := c.WaitLeader(10 * time.Second)
		target := (li + 1) % 3
		other := (li + 2) % 3
		// a follower refuses (as etcd: the request must go to the leader)
		_, err := c.V3Client(t, other).MoveLeader(ctx, c.Members[target].ID)
		wantV3Err(t, "MoveLeader sent to a follower", err, rpctypes.ErrNotLeader)
		_, err = c.V3Client(t, li).MoveLeader(ctx, 99)
		wantV3Err(t, "MoveLeader to an unknown member", err, rpctypes.ErrBadLeaderTransferee)
		r, err := c.V3Client(t, li).MoveLeader(ctx, c.Members[target].ID)
		if err != nil {
			t.Fatalf("MoveLeader(%d) on the leader %d: %v", c.Members[target].ID, c.Members[li].ID, err)
		}
		if r.Header != nil {
			t.Errorf("MoveLeader answer header %v, want none (etcd answers an empty message)", r.Header)
		}
		// MoveLeader answers once the transfer is done (as etcd): the
		// target already knows it leads
		s, err := cli.Status(ctx, c.Members[target].V3Endpoint())
		if err != nil {
			t.Errorf("Status of member %d: %v", c.Members[target].ID, err)
		} else if s.Leader != c.Members[target].ID {
			t.Errorf("Status of member %d right after MoveLeader: leader %d, want itself", c.Members[target].ID, s.Leader)
		}
		if nl := c.WaitLeader(10 * time.Second); nl != target {
			t.Errorf("leader after MoveLeader is member %d, want %d", c.Members[nl].ID, c.Members[target].ID)
		}
		mustV3Put(t, cli, "mt/after-move", "x")
	})
}
