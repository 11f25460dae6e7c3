package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseKeys returns the attached keys of a TimeToLive answer, sorted.
func leaseKeys(r *clientv3.LeaseTimeToLiveResponse) []string {
	var ks []string
	for _, k := range r.Keys {
		ks = append(ks, string(k))
	}
	slices.Sort(ks)
	return ks
}

// waitKeysGone waits until none of the keys exists on member idx (a
// serializable read, so each member is checked on its own state).
func waitKeysGone(t testing.TB, c *Cluster, idx int, d time.Duration, keys ...string) {
	t.Helper()
	cli := c.V3Client(t, idx)
	c.Eventually(d, fmt.Sprintf("keys %q gone on member %d", keys, c.Members[idx].ID), func() error {
		for _, k := range keys {
			ctx, cancel := ctxFor(v3Timeout)
			r, err := cli.Get(ctx, k, clientv3.WithSerializable())
			cancel()
			if err != nil {
				return err
			}
			if r.Count != 0 {
				return fmt.Errorf("%s still there: %v", k, kvStrings(r.Kvs))
			}
		}
		return nil
	})
}

// TestV3Lease drives the Lease service: Grant, TimeToLive with keys,
// Leases, KeepAliveOnce, the KeepAlive stream (through a follower),
// Revoke, expiry deleting the attached keys on every member, and the
// lease errors.
func TestV3Lease(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	fol := (li + 1) % 3
	cli := c.V3Client(t)
	fcli := c.V3Client(t, fol)

	t.Run("GrantTimeToLiveRevoke", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		g, err := fcli.Grant(ctx, 600) // through a follower
		if err != nil {
			t.Fatalf("Grant: %v", err)
		}
		if g.ID == 0 || g.TTL != 600 || g.Error != "" {
			t.Fatalf("Grant(600) = id %x ttl %d error %q, want an id and TTL 600", g.ID, g.TTL, g.Error)
		}
		c.checkHeader(t, "LeaseGrant", g.ResponseHeader, fol, 1)
		mustV3Put(t, cli, "ls/a", "1", clientv3.WithLease(g.ID))
		mustV3Put(t, cli, "ls/b", "2", clientv3.WithLease(g.ID))
		mustV3Put(t, cli, "ls/free", "3")
		for i := range c.Members {
			r, err := c.V3Client(t, i).TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
			if err != nil {
				t.Fatalf("TimeToLive on member %d: %v", c.Members[i].ID, err)
			}
			if r.ID != g.ID || r.GrantedTTL != 600 || r.TTL <= 590 || r.TTL > 600 {
				t.Errorf("TimeToLive on member %d = id %x granted %d ttl %d, want granted 600 and ttl in (590, 600]", c.Members[i].ID, r.ID, r.GrantedTTL, r.TTL)
			}
			if got := leaseKeys(r); !slices.Equal(got, []string{"ls/a", "ls/b"}) {
				t.Errorf("TimeToLive keys on member %d = %q, want [ls/a ls/b]", c.Members[i].ID, got)
			}
		}
		if r, err := cli.TimeToLive(ctx, g.ID); err != nil || len(r.Keys) != 0 {
			t.Errorf("TimeToLive without keys: %v %v, want no key list", r, err)
		}
		// Leases answers from the member's own state (as etcd), so a
		// lagging member may list the lease a moment later
		hasLease := func(want bool) func() error {
			return func() error {
				ls, err := cli.Leases(ctx)
				if err != nil {
					return err
				}
				if got := slices.ContainsFunc(ls.Leases, func(s clientv3.LeaseStatus) bool { return s.ID == g.ID }); got != want {
					return fmt.Errorf("Leases = %v, want %x listed: %v", ls.Leases, g.ID, want)
				}
				return nil
			}
		}
		c.Eventually(5*time.Second, "Leases lists the granted lease", hasLease(true))
		ka, err := fcli.KeepAliveOnce(ctx, g.ID)
		if err != nil || ka.ID != g.ID || ka.TTL != 600 {
			t.Errorf("KeepAliveOnce through a follower: %v %v, want TTL 600", ka, err)
		}

		rv, err := cli.Revoke(ctx, g.ID)
		if err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		for i := range c.Members {
			waitKeysGone(t, c, i, 10*time.Second, "ls/a", "ls/b")
		}
		if r := mustV3Get(t, cli, "ls/free"); r.Count != 1 {
			t.Errorf("Revoke deleted a key without the lease")
		}
		// the revoke deleted both keys in one revision
		h := mustV3Get(t, cli, "ls/a", clientv3.WithRev(rv.Header.Revision-1))
		if len(h.Kvs) != 1 {
			t.Errorf("ls/a at revision %d (before the revoke): %v, want present", rv.Header.Revision-1, kvStrings(h.Kvs))
		}
		r, err := cli.TimeToLive(ctx, g.ID)
		if err != nil || r.TTL != -1 {
			t.Errorf("TimeToLive of a revoked lease: %v %v, want TTL -1 (as etcd)", r, err)
		}
		c.Eventually(5*time.Second, "Leases no longer lists the revoked lease", hasLease(false))
		_, err = cli.Revoke(ctx, g.ID)
		wantV3Err(t, "Revoke of a revoked lease", err, rpctypes.ErrLeaseNotFound)
		_, err = cli.KeepAliveOnce(ctx, g.ID)
		wantV3Err(t, "KeepAliveOnce of a revoked lease", err, rpctypes.ErrLeaseNotFound)
		_, err = cli.Put(ctx, "ls/c", "x", clientv3.WithLease(g.ID))
		wantV3Err(t, "Put with a revoked lease", err, rpctypes.ErrLeaseNotFound)
	})

	t.Run("GrantWithIDAndErrors", func(t *testing.T) {
		ctx := v3ctx(t)
		lc := pb.NewLeaseClient(cli.ActiveConnection())
		r, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 0x5eed, TTL: 30})
		if err != nil || r.ID != 0x5eed || r.TTL != 30 {
			t.Fatalf("LeaseGrant with id 0x5eed: %v %v", r, err)
		}
		_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 0x5eed, TTL: 30})
		wantV3Err(t, "LeaseGrant of an existing id", err, rpctypes.ErrLeaseExist)
		_, err = cli.Grant(ctx, 9000000001)
		wantV3Err(t, "Grant with a TTL over etcd's maximum", err, rpctypes.ErrLeaseTTLTooLarge)
		// a TTL below the minimum is raised to it (etcd: 1.5 election
		// timeouts rounded up, 2 s with the default 1 s)
		g, err := cli.Grant(ctx, 1)
		if err != nil || g.TTL < 2 {
			t.Errorf("Grant(1): %v %v, want the TTL raised to the minimum (2 s with the default election timeout)", g, err)
		}
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(0x5eed)); err != nil {
			t.Errorf("Revoke 0x5eed: %v", err)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		const ttl = 3
		asked := time.Now() // the lease cannot expire before asked+ttl
		g, err := cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		granted := time.Now()
		mustV3Put(t, cli, "lx/a", "1", clientv3.WithLease(g.ID))
		pr := mustV3Put(t, cli, "lx/b", "2", clientv3.WithLease(g.ID))
		wctx, wcancel := watchCtx(t)
		defer wcancel()
		wch := startWatch(t, c.V3Client(t, fol), wctx, "lx/", clientv3.WithPrefix(), clientv3.WithRev(pr.Header.Revision+1))
		time.Sleep(1 * time.Second)
		// Checked only while the lease is surely alive: stalls of a loaded
		// machine can spend the rest of it before this point.
		if alive := time.Until(asked.Add(ttl*time.Second - 500*time.Millisecond)); alive > 0 {
			if r := mustV3Get(t, cli, "lx/", clientv3.WithPrefix()); r.Count != 2 {
				t.Errorf("%v into a %d s lease: %d keys, want 2", time.Since(asked), ttl, r.Count)
			}
		} else {
			t.Logf("no check of the live keys: %v of the %d s lease gone before it", time.Since(asked), ttl)
		}
		evs := collectEvents(t, wch, 2, 15*time.Second)
		took := time.Since(granted)
		t.Logf("lease of %d s expired after %v", ttl, took)
		if len(evs) == 2 {
			if evs[0].Type != "DELETE" || evs[1].Type != "DELETE" || evs[0].Mod != evs[1].Mod || evs[0].Mod != pr.Header.Revision+1 {
				t.Errorf("expiry events %v, want the deletes of lx/a and lx/b at revision %d", evs, pr.Header.Revision+1)
			}
		}
		if took < (ttl-1)*time.Second {
			t.Errorf("lease of %d s expired after %v", ttl, took)
		}
		for i := range c.Members {
			waitKeysGone(t, c, i, 5*time.Second, "lx/a", "lx/b")
		}
		c.Eventually(5*time.Second, "expired lease gone", func() error {
			r, err := cli.TimeToLive(ctx, g.ID)
			if err != nil {
				return err
			}
			if r.TTL != -1 {
				return fmt.Errorf("TimeToLive %v", r)
			}
			return nil
		})
		_, err = cli.KeepAliveOnce(ctx, g.ID)
		wantV3Err(t, "KeepAliveOnce of an expired lease", err, rpctypes.ErrLeaseNotFound)
	})

	// A keepalive of a lease that expired answers "not found" only once
	// the revoke is applied, as etcd's does: its keys are gone by then,
	// through whichever member the client asks. The keepalive is sent just
	// past the expiry, before the leader's next round of revokes (every
	// 500 ms) has usually gone through.
	t.Run("KeepAliveOfExpiredAfterRevoke", func(t *testing.T) {
		ctx := v3ctx(t)
		g, err := cli.Grant(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		expired := time.Now().Add(2*time.Second + 50*time.Millisecond) // the leader applied the grant before answering
		mustV3Put(t, cli, "lk2/a", "1", clientv3.WithLease(g.ID))
		time.Sleep(time.Until(expired))
		_, err = fcli.KeepAliveOnce(ctx, g.ID)
		if !isV3Err(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("keepalive just past the lease's expiry: %v, want %v", err, rpctypes.ErrLeaseNotFound)
		}
		for _, cl := range []*clientv3.Client{cli, fcli} {
			if r := mustV3Get(t, cl, "lk2/a"); r.Count != 0 {
				t.Fatalf("a keepalive reported the lease gone, its key is still there: %v", r.Kvs)
			}
		}
	})

	t.Run("KeepAliveStreamThroughFollower", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		const ttl = 3
		g, err := fcli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		mustV3Put(t, fcli, "lk/a", "1", clientv3.WithLease(g.ID))
		kctx, kcancel := watchCtx(t)
		defer kcancel()
		kch, err := fcli.KeepAlive(kctx, g.ID)
		if err != nil {
			t.Fatalf("KeepAlive: %v", err)
		}
		deadline := time.After(3 * ttl * time.Second)
		n := 0
	loop:
		for {
			select {
			case r, ok := <-kch:
				if !ok {
					t.Fatalf("keepalive channel closed after %d responses", n)
				}
				n++
				if r.ID != g.ID || r.TTL != ttl {
					t.Errorf("keepalive response %v, want id %x TTL %d", r, g.ID, ttl)
				}
			case <-deadline:
				break loop
			}
		}
		if n < 3 {
			t.Errorf("%d keepalive responses in %d s for a %d s lease, want several", n, 3*ttl, ttl)
		}
		r := mustV3Get(t, cli, "lk/a")
		if r.Count != 1 {
			t.Fatalf("key of a kept-alive lease gone after %d s (TTL %d s)", 3*ttl, ttl)
		}
		tl, err := cli.TimeToLive(ctx, g.ID)
		if err != nil || tl.TTL <= 0 {
			t.Errorf("TimeToLive of a kept-alive lease: %v %v", tl, err)
		}
		// stop the keepalives: the lease expires
		kcancel()
		stopped := time.Now()
		for i := range c.Members {
			waitKeysGone(t, c, i, 15*time.Second, "lk/a")
		}
		t.Logf("lease expired %v after the keepalives stopped", time.Since(stopped))
	})
}

// TestV3LeaseLeaderKill: expiry is the leader's decision and a new leader
// extends live leases, so a lease kept alive by a client with every
// endpoint survives kill -9 of the leader, while a lease nobody keeps
// alive still expires under the new leader.
func TestV3LeaseLeaderKill(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	cli := c.V3Client(t)
	ctx := v3ctx(t)
	const ttl = 4
	kept, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	mustV3Put(t, cli, "lk/kept", "1", clientv3.WithLease(kept.ID))
	mustV3Put(t, cli, "lk/idle", "1", clientv3.WithLease(idle.ID))
	kctx, kcancel := watchCtx(t)
	defer kcancel()
	kch, err := cli.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range kch {
		}
	}()
	time.Sleep(1 * time.Second)
	// keep the idle lease alive once, right before the kill, so it expires
	// under the new leader
	if _, err := cli.KeepAliveOnce(ctx, idle.ID); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	c.Kill(li)
	nl := c.WaitNewLeader(20*time.Second, li)
	t.Logf("leader %d killed, new leader %d after %v", c.Members[li].ID, c.Members[nl].ID, time.Since(killed))
	alive := c.Running()

	// the idle lease expires under the new leader, on both survivors
	for _, i := range alive {
		waitKeysGone(t, c, i, 20*time.Second, "lk/idle")
	}
	t.Logf("idle lease expired %v after the kill", time.Since(killed))
	// the kept-alive lease is still there, 3 TTLs after the kill
	if wait := 3*ttl*time.Second - time.Since(killed); wait > 0 {
		time.Sleep(wait)
	}
	for _, i := range alive {
		r := mustV3Get(t, c.V3Client(t, i), "lk/kept", clientv3.WithSerializable())
		if r.Count != 1 {
			t.Errorf("member %d: the kept-alive key is gone %v after the leader kill", c.Members[i].ID, time.Since(killed))
		}
	}
	tl, err := cli.TimeToLive(v3ctx(t), kept.ID)
	if err != nil || tl.TTL <= 0 || tl.GrantedTTL != ttl {
		t.Errorf("TimeToLive of the kept-alive lease after the kill: %v %v", tl, err)
	}
	// the old leader comes back as a follower and agrees
	c.Restart(li)
	c.WaitLeader(20 * time.Second)
	c.WaitV3Ready(t, 15*time.Second, li)
	c.Eventually(10*time.Second, "the restarted member has the same leases", func() error {
		ctx, cancel := ctxFor(v3Timeout)
		defer cancel()
		r, err := c.V3Client(t, li).Get(ctx, "lk/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if got := kvKeys(r.Kvs); !slices.Equal(got, []string{"lk/kept"}) {
			return fmt.Errorf("keys %q", got)
		}
		return nil
	})
	kcancel()
}
