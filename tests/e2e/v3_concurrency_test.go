package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// newSession opens a concurrency session with the given TTL on cli,
// closed in t.Cleanup. The session's context (its lease grant and
// keepalives) ends after two minutes at most, so that a dead server
// cannot hang the test.
func newSession(t testing.TB, cli *clientv3.Client, ttl int) *concurrency.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	gctx, gcancel := context.WithTimeout(ctx, v3Timeout)
	defer gcancel()
	// the grant of NewSession uses the session's context: bound it by
	// v3Timeout through a lease granted here
	g, err := cli.Grant(gctx, int64(ttl))
	if err != nil {
		t.Fatalf("NewSession: Grant: %v", err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl), concurrency.WithLease(g.ID), concurrency.WithContext(ctx))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestV3Concurrency checks that the client recipes of
// go.etcd.io/etcd/client/v3/concurrency work against metcd: Mutex
// (mutual exclusion under contention, TryLock, a crashed holder's lock
// released by lease expiry) and Election (campaign, observe, proclaim,
// resign, next candidate in order) and STM (no lost update under
// contention, at each isolation level that promises it).
func TestV3Concurrency(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})

	t.Run("Mutex", func(t *testing.T) {
		c := c.For(t)
		const workers, rounds = 5, 8
		var inCS, overlaps atomic.Int32
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := range workers {
			cli := c.V3Client(t, w%3) // each worker on one member
			s := newSession(t, cli, 10)
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := concurrency.NewMutex(s, "cc/lock")
				for range rounds {
					ctx, cancel := ctxFor(30 * time.Second)
					err := func() error {
						if err := m.Lock(ctx); err != nil {
							return fmt.Errorf("worker %d Lock: %w", w, err)
						}
						if inCS.Add(1) > 1 {
							overlaps.Add(1)
						}
						defer func() {
							inCS.Add(-1)
							if err := m.Unlock(ctx); err != nil {
								errc <- fmt.Errorf("worker %d Unlock: %w", w, err)
							}
						}()
						// read-modify-write of a counter: lost updates if two
						// workers ever hold the lock at once
						r, err := cli.Get(ctx, "cc/counter")
						if err != nil {
							return err
						}
						v := 0
						if len(r.Kvs) == 1 {
							v, _ = strconv.Atoi(string(r.Kvs[0].Value))
						}
						time.Sleep(2 * time.Millisecond)
						_, err = cli.Put(ctx, "cc/counter", strconv.Itoa(v+1))
						return err
					}()
					cancel()
					if err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		if n := overlaps.Load(); n != 0 {
			t.Errorf("%d times two workers held the lock at once", n)
		}
		r := mustV3Get(t, c.V3Client(t), "cc/counter")
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != strconv.Itoa(workers*rounds) {
			t.Errorf("counter = %v, want %d (lost updates mean the lock did not exclude)", kvStrings(r.Kvs), workers*rounds)
		}
		if r := mustV3Get(t, c.V3Client(t), "cc/lock", clientv3.WithPrefix()); r.Count != 0 {
			t.Errorf("lock keys left after every Unlock: %q", kvKeys(r.Kvs))
		}
	})

	t.Run("TryLockAndCrashedHolder", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		// the holder's client is closed without unlocking: its session
		// lease (TTL 2 s) is no longer kept alive
		hcli := c.V3Client(t, 0)
		hg, err := hcli.Grant(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := concurrency.NewSession(hcli, concurrency.WithTTL(2), concurrency.WithLease(hg.ID))
		if err != nil {
			t.Fatal(err)
		}
		holder := concurrency.NewMutex(hs, "cc/try")
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		other := concurrency.NewMutex(newSession(t, c.V3Client(t, 1), 10), "cc/try")
		if err := other.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
			t.Fatalf("TryLock while held: %v, want ErrLocked", err)
		}
		hs.Orphan()
		hcli.Close()
		crashed := time.Now()
		lctx, cancel := ctxFor(20 * time.Second)
		defer cancel()
		if err := other.Lock(lctx); err != nil {
			t.Fatalf("Lock after the holder crashed: %v", err)
		}
		t.Logf("lock of a crashed holder (TTL 2 s) acquired after %v", time.Since(crashed))
		if d := time.Since(crashed); d < time.Second {
			t.Errorf("lock acquired %v after the holder stopped, before its 2 s lease could expire", d)
		}
		third := concurrency.NewMutex(newSession(t, c.V3Client(t, 2), 10), "cc/try")
		if err := third.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
			t.Errorf("TryLock while the second holder has it: %v, want ErrLocked", err)
		}
		if err := other.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := third.TryLock(ctx); err != nil {
			t.Errorf("TryLock of a free lock: %v", err)
		}
		third.Unlock(ctx)
	})

	t.Run("STM", func(t *testing.T) {
		// Software transactional memory on Txn compares: workers on all
		// three members move money between accounts and count their
		// transfers in a shared key, under each isolation level that
		// promises no lost update. The total and the count must come out
		// exact: a compare that let a stale read through would lose money
		// or a count.
		c := c.For(t)
		for _, tc := range []struct {
			name string
			iso  concurrency.Isolation
		}{
			{"SerializableSnapshot", concurrency.SerializableSnapshot},
			{"Serializable", concurrency.Serializable},
			{"RepeatableReads", concurrency.RepeatableReads},
		} {
			iso := tc.iso
			t.Run(tc.name, func(t *testing.T) {
				pfx := fmt.Sprintf("cc/stm/%d/", iso)
				const accounts, start, workers, transfers = 4, 100, 6, 12
				for a := range accounts {
					if _, err := c.V3Client(t).Put(v3ctx(t), pfx+strconv.Itoa(a), strconv.Itoa(start)); err != nil {
						t.Fatal(err)
					}
				}
				// atoi reads a balance or the count ("" is 0), keeping the
				// first value that is not a number for the transfer to fail on.
				atoi := func(s string, bad *error) int {
					n, err := strconv.Atoi(s)
					if s != "" && err != nil && *bad == nil {
						*bad = fmt.Errorf("not a number: %q", s)
					}
					return n
				}
				var wg sync.WaitGroup
				errc := make(chan error, workers)
				for w := range workers {
					cli := c.V3Client(t, w%3)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range transfers {
							from, to := (w+i)%accounts, (w+i+1+i%(accounts-1))%accounts
							if from == to {
								to = (to + 1) % accounts
							}
							_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
								var bad error
								f, d := atoi(stm.Get(pfx+strconv.Itoa(from)), &bad), atoi(stm.Get(pfx+strconv.Itoa(to)), &bad)
								amt := 1 + (w+i)%7
								if f < amt {
									amt = f
								}
								stm.Put(pfx+strconv.Itoa(from), strconv.Itoa(f-amt))
								stm.Put(pfx+strconv.Itoa(to), strconv.Itoa(d+amt))
								stm.Put(pfx+"n", strconv.Itoa(atoi(stm.Get(pfx+"n"), &bad)+1))
								return bad
							}, concurrency.WithIsolation(iso), concurrency.WithAbortContext(v3ctx(t)))
							if err != nil {
								errc <- fmt.Errorf("worker %d transfer %d: %w", w, i, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errc)
				for err := range errc {
					t.Fatal(err)
				}
				r := mustV3Get(t, c.V3Client(t), pfx, clientv3.WithPrefix())
				total, n := 0, 0
				for _, kv := range r.Kvs {
					v, err := strconv.Atoi(string(kv.Value))
					if err != nil {
						t.Fatalf("%s = %q", kv.Key, kv.Value)
					}
					if string(kv.Key) == pfx+"n" {
						n = v
					} else {
						total += v
					}
				}
				if total != accounts*start || n != workers*transfers {
					t.Fatalf("after %d transfers: total %d, want %d; transfer count %d, want %d (%v)", workers*transfers, total, accounts*start, n, workers*transfers, r.Kvs)
				}
			})
		}
	})

	t.Run("Election", func(t *testing.T) {
		c := c.For(t)
		ctx := v3ctx(t)
		const pfx = "cc/election"
		cands := make([]*concurrency.Election, 3)
		sessions := make([]*concurrency.Session, 3)
		for i := range 3 {
			sessions[i] = newSession(t, c.V3Client(t, i), 10)
			cands[i] = concurrency.NewElection(sessions[i], pfx)
		}
		obs := concurrency.NewElection(newSession(t, c.V3Client(t, 1), 10), pfx)
		if _, err := obs.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
			t.Fatalf("Leader before any campaign: %v, want ErrElectionNoLeader", err)
		}
		octx, ocancel := watchCtx(t)
		defer ocancel()
		och := obs.Observe(octx)
		observe := func(want string) {
			t.Helper()
			timer := time.NewTimer(10 * time.Second)
			defer timer.Stop()
			for {
				select {
				case r, ok := <-och:
					if !ok {
						t.Fatalf("observe channel closed while waiting for %q", want)
					}
					if len(r.Kvs) == 1 && string(r.Kvs[0].Value) == want {
						return
					}
				case <-timer.C:
					t.Fatalf("observer did not see leader value %q within 10s", want)
				}
			}
		}
		leaderIs := func(want string) {
			t.Helper()
			r, err := obs.Leader(ctx)
			if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != want {
				t.Fatalf("Leader = %v %v, want %q", r, err, want)
			}
		}

		if err := cands[0].Campaign(ctx, "c0"); err != nil {
			t.Fatalf("Campaign c0: %v", err)
		}
		leaderIs("c0")
		observe("c0")
		// the other two campaign in order and wait
		won := make([]chan error, 3)
		for i := 1; i < 3; i++ {
			won[i] = make(chan error, 1)
			cctx, ccancel := watchCtx(t)
			defer ccancel()
			go func() { won[i] <- cands[i].Campaign(cctx, fmt.Sprintf("c%d", i)) }()
			c.Eventually(10*time.Second, fmt.Sprintf("candidate %d queued", i), func() error {
				r := mustV3Get(t, c.V3Client(t), pfx+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
				if r.Count != int64(i+1) {
					return fmt.Errorf("%d candidates", r.Count)
				}
				return nil
			})
		}
		select {
		case err := <-won[1]:
			t.Fatalf("candidate 1 won while c0 leads: %v", err)
		case err := <-won[2]:
			t.Fatalf("candidate 2 won while c0 leads: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		if err := cands[0].Proclaim(ctx, "c0-again"); err != nil {
			t.Fatalf("Proclaim: %v", err)
		}
		observe("c0-again")
		leaderIs("c0-again")

		// resign: the next candidate (by creation order) wins
		if err := cands[0].Resign(ctx); err != nil {
			t.Fatalf("Resign: %v", err)
		}
		select {
		case err := <-won[1]:
			if err != nil {
				t.Fatalf("candidate 1 Campaign: %v", err)
			}
		case err := <-won[2]:
			t.Fatalf("candidate 2 won before candidate 1: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("candidate 1 did not win within 10s of the resignation")
		}
		observe("c1")
		leaderIs("c1")

		// the leader's session ends (its lease is revoked): the last one wins
		if err := sessions[1].Close(); err != nil {
			t.Fatalf("closing candidate 1's session: %v", err)
		}
		select {
		case err := <-won[2]:
			if err != nil {
				t.Fatalf("candidate 2 Campaign: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("candidate 2 did not win within 10s of the leader's session ending")
		}
		observe("c2")
		leaderIs("c2")
		if err := cands[2].Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := obs.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
			t.Errorf("Leader after every candidate left: %v, want ErrElectionNoLeader", err)
		}
	})
}
