package e2e

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestV3Watch drives the Watch service of a 3-member cluster: key, range
// and prefix watches, history from start_revision, prev_kv, filters,
// progress requests, fragmented responses, cancellation, compacted
// history and many watchers on one stream. Watchers sit on followers and
// on the leader while writes go through another member.
func TestV3Watch(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	f1, f2 := (li+1)%3, (li+2)%3
	wcli := c.V3Client(t, f1) // watches on a follower
	pcli := c.V3Client(t, f2) // writes through the other follower
	put := func(k, v string) int64 { return mustV3Put(t, pcli, k, v).Header.Revision }
	del := func(k string, opts ...clientv3.OpOption) int64 {
		t.Helper()
		ctx, cancel := ctxFor(v3Timeout)
		defer cancel()
		r, err := pcli.Delete(ctx, k, opts...)
		if err != nil {
			t.Fatalf("Delete %s: %v", k, err)
		}
		return r.Header.Revision
	}
	watch := func(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
		t.Helper()
		ctx, cancel := watchCtx(t)
		t.Cleanup(cancel)
		wch := startWatch(t, cli, ctx, key, append(opts, clientv3.WithCreatedNotify())...)
		waitCreated(t, wch)
		return wch
	}
	same := func(t *testing.T, what string, got []v3Event, want ...v3Event) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %v\n want %v", what, got, want)
		}
	}

	t.Run("Key", func(t *testing.T) {
		wch := watch(t, wcli, "w/k")
		r1 := put("w/k", "v1")
		put("w/k2", "other") // not this key
		put("w/j", "other")
		r2 := del("w/k")
		got := collectEvents(t, wch, 2, 10*time.Second)
		same(t, "watch w/k", got, v3Event{"PUT", "w/k", "v1", r1, ""}, v3Event{"DELETE", "w/k", "", r2, ""})
		noMoreEvents(t, wch, 300*time.Millisecond)
	})

	t.Run("RangeAndPrefix", func(t *testing.T) {
		c := c.For(t)
		rch := watch(t, wcli, "wr/b", clientv3.WithRange("wr/d"))
		pch := watch(t, c.V3Client(t, li), "wr/", clientv3.WithPrefix()) // on the leader
		var revs []int64
		for _, k := range []string{"wr/a", "wr/b", "wr/c", "wr/d", "wr/c"} {
			revs = append(revs, put(k, "x"))
		}
		put("wq", "outside")
		got := collectEvents(t, rch, 3, 10*time.Second)
		same(t, "watch [wr/b, wr/d)", got, v3Event{"PUT", "wr/b", "x", revs[1], ""}, v3Event{"PUT", "wr/c", "x", revs[2], ""}, v3Event{"PUT", "wr/c", "x", revs[4], ""})
		got = collectEvents(t, pch, 5, 10*time.Second)
		var want []v3Event
		for i, k := range []string{"wr/a", "wr/b", "wr/c", "wr/d", "wr/c"} {
			want = append(want, v3Event{"PUT", k, "x", revs[i], ""})
		}
		same(t, "watch prefix wr/ on the leader", got, want...)
		noMoreEvents(t, rch, 200*time.Millisecond)
		noMoreEvents(t, pch, 200*time.Millisecond)
	})

	t.Run("HistoryPrevKVAndFilters", func(t *testing.T) {
		c := c.For(t)
		var want []v3Event
		first := put("wh/a", "1")
		want = append(want, v3Event{"PUT", "wh/a", "1", first, ""})
		r := put("wh/a", "2")
		want = append(want, v3Event{"PUT", "wh/a", "2", r, "1"})
		r = put("wh/b", "3")
		want = append(want, v3Event{"PUT", "wh/b", "3", r, ""})
		r = del("wh/a")
		want = append(want, v3Event{"DELETE", "wh/a", "", r, "2"})
		// a txn: two events at one revision
		ctx := v3ctx(t)
		tr, err := pcli.Txn(ctx).Then(clientv3.OpPut("wh/c", "4"), clientv3.OpDelete("wh/b")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v3Event{"PUT", "wh/c", "4", tr.Header.Revision, ""}, v3Event{"DELETE", "wh/b", "", tr.Header.Revision, "3"})

		// from history, with prev_kv
		hch := watch(t, wcli, "wh/", clientv3.WithPrefix(), clientv3.WithRev(first), clientv3.WithPrevKV())
		got := collectEvents(t, hch, len(want), 10*time.Second)
		same(t, "watch wh/ from revision with prev_kv", got, want...)
		// from history without prev_kv, starting in the middle
		nch := watch(t, c.V3Client(t, f2), "wh/", clientv3.WithPrefix(), clientv3.WithRev(want[2].Mod))
		var noPrev []v3Event
		for _, e := range want[2:] {
			e.Prev = ""
			noPrev = append(noPrev, e)
		}
		same(t, "watch wh/ from the middle without prev_kv", collectEvents(t, nch, len(noPrev), 10*time.Second), noPrev...)
		// filters over the same history
		var puts, dels []v3Event
		for _, e := range noPrev {
			if e.Type == "PUT" {
				puts = append(puts, e)
			} else {
				dels = append(dels, e)
			}
		}
		nodel := watch(t, wcli, "wh/", clientv3.WithPrefix(), clientv3.WithRev(want[2].Mod), clientv3.WithFilterDelete())
		noput := watch(t, wcli, "wh/", clientv3.WithPrefix(), clientv3.WithRev(want[2].Mod), clientv3.WithFilterPut())
		same(t, "watch with the delete filter", collectEvents(t, nodel, len(puts), 10*time.Second), puts...)
		same(t, "watch with the put filter", collectEvents(t, noput, len(dels), 10*time.Second), dels...)
		// live events after the history
		r = put("wh/d", "5")
		live := v3Event{"PUT", "wh/d", "5", r, ""}
		same(t, "live event after history", collectEvents(t, nch, 1, 10*time.Second), live)
		same(t, "live event after history, delete filter", collectEvents(t, nodel, 1, 10*time.Second), live)
		noMoreEvents(t, noput, 300*time.Millisecond)
		r = del("wh/d")
		same(t, "live delete, put filter", collectEvents(t, noput, 1, 10*time.Second), v3Event{"DELETE", "wh/d", "", r, ""})
		noMoreEvents(t, nodel, 300*time.Millisecond)
	})

	t.Run("RequestProgress", func(t *testing.T) {
		c := c.For(t)
		// watchers of one stream share its context (metadata); a progress
		// request on that context answers with the current revision
		ctx, cancel := watchCtx(t)
		defer cancel()
		wch := startWatch(t, wcli, ctx, "wp/none", clientv3.WithCreatedNotify())
		waitCreated(t, wch)
		rev := put("wp/other", "x")
		deadline := time.After(10 * time.Second)
		for {
			// a context without metadata: the same stream as the watch
			rctx, rcancel := ctxFor(v3Timeout)
			err := wcli.RequestProgress(rctx)
			rcancel()
			if err != nil {
				t.Fatalf("RequestProgress: %v", err)
			}
			select {
			case wr := <-wch:
				if !wr.IsProgressNotify() {
					t.Fatalf("answer to RequestProgress is not a progress notification: %+v (events %d)", wr, len(wr.Events))
				}
				if wr.Header.Revision < rev {
					// the watcher may not have seen the put yet; ask again
					continue
				}
				if wr.Header.Revision != rev {
					t.Errorf("progress notification at revision %d, want %d", wr.Header.Revision, rev)
				}
				if wr.Header.MemberId != c.Members[f1].ID {
					t.Errorf("progress notification from member %d, want %d", wr.Header.MemberId, c.Members[f1].ID)
				}
				return
			case <-deadline:
				t.Fatalf("no progress notification within 10s")
			case <-time.After(2 * time.Second):
			}
		}
	})

	t.Run("Fragment", func(t *testing.T) {
		c := c.For(t)
		// 64 values of 100 KB deleted in one revision, watched with
		// prev_kv: 6.4 MB in one revision. The client accepts messages up
		// to 3 MiB, so the events arrive only if the server fragments
		// them (clientv3 reassembles the fragments).
		const n, size = 64, 100 * 1000
		var last int64
		for i := range n {
			last = mustV3Put(t, pcli, fmt.Sprintf("wf/%02d", i), strings.Repeat(string(rune('a'+i%26)), size)).Header.Revision
		}
		small := newV3ClientCfg(t, clientv3.Config{Endpoints: c.V3Endpoints(f1), MaxCallRecvMsgSize: 3 << 20})
		// From the revision after the last put: a watch without a revision
		// starts after the revision the follower has applied, which may be
		// before the last put (then its event comes too, as with etcd).
		wch := watch(t, small, "wf/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment(), clientv3.WithRev(last+1))
		rev := del("wf/", clientv3.WithPrefix())
		got := collectEvents(t, wch, n, 30*time.Second)
		if len(got) != n {
			t.Fatalf("got %d of %d delete events", len(got), n)
		}
		for i, e := range got {
			want := v3Event{"DELETE", fmt.Sprintf("wf/%02d", i), "", rev, strings.Repeat(string(rune('a'+i%26)), size)}
			if e != want {
				t.Errorf("event %d: %s %s@%d prev %d bytes, want the delete of %s at %d with its 100 KB prev_kv", i, e.Type, e.Key, e.Mod, len(e.Prev), want.Key, rev)
				break
			}
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		c := c.For(t)
		ctx, cancel := watchCtx(t)
		wch := startWatch(t, wcli, ctx, "wc/k", clientv3.WithCreatedNotify())
		waitCreated(t, wch)
		// a second watcher on the same stream keeps running
		other := startWatch(t, wcli, ctx, "wc/other")
		cancel()
		if !waitClosed(wch, 10*time.Second) || !waitClosed(other, 10*time.Second) {
			t.Fatalf("watch channels not closed within 10s of cancelling their context")
		}
		// a watcher closed with Watcher.Close on its own client
		wc := newV3ClientCfg(t, clientv3.Config{Endpoints: c.V3Endpoints(f1)})
		w := clientv3.NewWatcher(wc)
		cctx, ccancel := watchCtx(t)
		defer ccancel()
		ch := startWatch(t, w, cctx, "wc/k", clientv3.WithCreatedNotify())
		waitCreated(t, ch)
		w.Close()
		if !waitClosed(ch, 10*time.Second) {
			t.Fatalf("watch channel not closed within 10s of Watcher.Close")
		}
		// the server still serves new watches on the member
		nch := watch(t, wcli, "wc/k")
		r := put("wc/k", "after")
		same(t, "watch after cancellations", collectEvents(t, nch, 1, 10*time.Second), v3Event{"PUT", "wc/k", "after", r, ""})
	})

	t.Run("ManyWatchersOneStream", func(t *testing.T) {
		const n = 60
		ctx, cancel := watchCtx(t)
		defer cancel()
		chans := make([]clientv3.WatchChan, n)
		for i := range n {
			chans[i] = startWatch(t, wcli, ctx, fmt.Sprintf("wm/%02d", i), clientv3.WithCreatedNotify())
		}
		for i := range n {
			waitCreated(t, chans[i])
		}
		revs := make([]int64, n)
		for i := n - 1; i >= 0; i-- {
			revs[i] = put(fmt.Sprintf("wm/%02d", i), fmt.Sprintf("v%d", i))
		}
		// one event per watcher, its own key only
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := collectEvents(t, chans[i], 1, 15*time.Second)
				if len(got) == 1 {
					want := v3Event{"PUT", fmt.Sprintf("wm/%02d", i), fmt.Sprintf("v%d", i), revs[i], ""}
					if got[0] != want {
						t.Errorf("watcher %d: %v, want %v", i, got[0], want)
					}
				}
				noMoreEvents(t, chans[i], 200*time.Millisecond)
			}()
		}
		wg.Wait()
	})

	t.Run("Compacted", func(t *testing.T) {
		c := c.For(t)
		var revs []int64
		for i := range 4 {
			revs = append(revs, put("wx/k", fmt.Sprintf("v%d", i)))
		}
		ctx := v3ctx(t)
		if _, err := pcli.Compact(ctx, revs[2]); err != nil {
			t.Fatalf("Compact: %v", err)
		}
		for _, cl := range []*clientv3.Client{wcli, c.V3Client(t, li)} {
			// the compaction is applied asynchronously on the watcher's member
			c.Eventually(10*time.Second, "a watch below the compacted revision is cancelled with ErrCompacted", func() error {
				wctx, cancel := watchCtx(t)
				defer cancel()
				wch := startWatch(t, cl, wctx, "wx/k", clientv3.WithRev(revs[0]))
				select {
				case wr, ok := <-wch:
					if !ok {
						return fmt.Errorf("channel closed without a response")
					}
					if len(wr.Events) > 0 {
						return fmt.Errorf("got events %v from compacted history", wr.Events)
					}
					if !wr.Canceled || wr.CompactRevision != revs[2] || !isV3Err(wr.Err(), rpctypes.ErrCompacted) {
						return fmt.Errorf("response canceled=%v compact_revision=%d err=%v, want canceled at %d with %v", wr.Canceled, wr.CompactRevision, wr.Err(), revs[2], rpctypes.ErrCompacted)
					}
					return nil
				case <-time.After(5 * time.Second):
					return fmt.Errorf("no response within 5s")
				}
			})
		}
		// at the compacted revision itself the history is still there
		wch := watch(t, wcli, "wx/k", clientv3.WithRev(revs[2]))
		same(t, "watch from the compacted revision", collectEvents(t, wch, 2, 10*time.Second),
			v3Event{"PUT", "wx/k", "v2", revs[2], ""}, v3Event{"PUT", "wx/k", "v3", revs[3], ""})
	})
}

// TestV3WatchLeaderKill: a writer puts numbered values continuously; three
// watchers (one on a follower, one on all endpoints, one on the leader
// alone) must each see every revision of the key exactly once and in
// order, across kill -9 of the leader and its restart.
func TestV3WatchLeaderKill(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	fol := (li + 1) % 3
	wcli := c.V3Client(t)
	start := mustV3Put(t, wcli, "seq/start", "x").Header.Revision + 1

	type watcher struct {
		name string
		cli  *clientv3.Client
		mu   sync.Mutex
		evs  []v3Event
		errs []string
	}
	ws := []*watcher{
		{name: fmt.Sprintf("on follower %d", c.Members[fol].ID), cli: c.V3Client(t, fol)},
		{name: "on all endpoints", cli: c.V3Client(t)},
		{name: fmt.Sprintf("on the leader %d alone", c.Members[li].ID), cli: c.V3Client(t, li)},
	}
	ctx, cancel := watchCtx(t)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range ws {
		wch := startWatch(t, w.cli, ctx, "seq/k", clientv3.WithRev(start))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wr := range wch {
				w.mu.Lock()
				if err := wr.Err(); err != nil {
					w.errs = append(w.errs, err.Error())
				}
				for _, ev := range wr.Events {
					w.evs = append(w.evs, toV3Event(ev))
				}
				w.mu.Unlock()
			}
		}()
	}

	// the writer: numbered values; a failed put is not retried (its
	// outcome may be unknown), the next one gets the next number
	var (
		acked   []int
		wmu     sync.Mutex
		stop    = make(chan struct{})
		wdone   = make(chan struct{})
		failed  int
		lastErr error
	)
	go func() {
		defer close(wdone)
		stopping := false
		for n := 1; ; n++ {
			select {
			case <-stop:
				stopping = true
			default:
			}
			pctx, pcancel := ctxFor(3 * time.Second)
			_, err := wcli.Put(pctx, "seq/k", fmt.Sprintf("%06d", n))
			pcancel()
			wmu.Lock()
			if err == nil {
				acked = append(acked, n)
			} else {
				failed++
				lastErr = err
			}
			wmu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			} else if stopping {
				// the last put is acknowledged: no write of unknown
				// outcome can commit after it
				return
			}
		}
	}()
	nAcked := func() int {
		wmu.Lock()
		defer wmu.Unlock()
		return len(acked)
	}
	c.Eventually(10*time.Second, "writer progress before the kill", func() error {
		if n := nAcked(); n < 30 {
			return fmt.Errorf("%d acked", n)
		}
		return nil
	})
	c.Kill(li)
	nl := c.WaitNewLeader(20*time.Second, li)
	t.Logf("killed leader %d; new leader %d", c.Members[li].ID, c.Members[nl].ID)
	before := nAcked()
	c.Eventually(15*time.Second, "writer progress under the new leader", func() error {
		if n := nAcked(); n < before+30 {
			return fmt.Errorf("%d acked", n-before)
		}
		return nil
	})
	c.Restart(li)
	c.WaitLeader(20 * time.Second)
	c.WaitV3Ready(t, 15*time.Second, li)
	before = nAcked()
	c.Eventually(15*time.Second, "writer progress after the restart", func() error {
		if n := nAcked(); n < before+30 {
			return fmt.Errorf("%d acked", n-before)
		}
		return nil
	})
	close(stop)
	<-wdone
	final := mustV3Get(t, wcli, "seq/k")
	if len(final.Kvs) != 1 {
		t.Fatalf("seq/k missing at the end")
	}
	lastRev := final.Kvs[0].ModRevision
	wmu.Lock()
	t.Logf("writer: %d acked, %d failed (last error %v); last revision %d", len(acked), failed, lastErr, lastRev)
	ackedSet := map[string]bool{}
	for _, n := range acked {
		ackedSet[fmt.Sprintf("%06d", n)] = true
	}
	wmu.Unlock()

	for _, w := range ws {
		c.Eventually(20*time.Second, "watcher "+w.name+" reaches the last revision", func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.evs) == 0 || w.evs[len(w.evs)-1].Mod < lastRev {
				var last int64
				if len(w.evs) > 0 {
					last = w.evs[len(w.evs)-1].Mod
				}
				return fmt.Errorf("%d events, last at revision %d, want %d", len(w.evs), last, lastRev)
			}
			return nil
		})
	}
	// give duplicates a chance to show up
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()

	for _, w := range ws {
		w.mu.Lock()
		evs := w.evs
		if len(w.errs) > 0 {
			t.Errorf("watcher %s: error responses %v", w.name, w.errs)
		}
		w.mu.Unlock()
		// every revision from start to lastRev exactly once, in order
		// (only the writer writes seq/k, and nothing else writes at all)
		if len(evs) == 0 {
			t.Errorf("watcher %s: no events", w.name)
			continue
		}
		seen := map[string]bool{}
		prevVal := ""
		for i, e := range evs {
			wantRev := start + int64(i)
			if e.Mod != wantRev || e.Type != "PUT" || e.Key != "seq/k" {
				t.Errorf("watcher %s: event %d is %v, want the put at revision %d (gap, duplicate or reorder; events around: %v)", w.name, i, e, wantRev, evs[max(0, i-2):min(len(evs), i+3)])
				break
			}
			if e.Value <= prevVal {
				t.Errorf("watcher %s: value %s after %s", w.name, e.Value, prevVal)
				break
			}
			prevVal = e.Value
			seen[e.Value] = true
		}
		if last := evs[len(evs)-1].Mod; last != lastRev || int64(len(evs)) != lastRev-start+1 {
			t.Errorf("watcher %s: %d events up to revision %d, want %d up to %d", w.name, len(evs), last, lastRev-start+1, lastRev)
		}
		missing := 0
		for v := range ackedSet {
			if !seen[v] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("watcher %s: %d acknowledged writes never seen", w.name, missing)
		}
	}
}

// TestV3WatchProgressNotifyInterval: etcd's --watch-progress-notify-interval
// sets the period of the notifications clientv3's WithProgressNotify
// watchers get (etcd's default, 10 minutes, is too long for a test). Each
// is a progress notification at the member's revision; an event in
// between comes as an event.
func TestV3WatchProgressNotifyInterval(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 1, Extra: []string{"--watch-progress-notify-interval", "300ms"}})
	cli := c.V3Client(t)
	rev := mustV3Put(t, cli, "pn/a", "1").Header.Revision
	ctx, cancel := watchCtx(t)
	defer cancel()
	wch := startWatch(t, cli, ctx, "pn/", clientv3.WithPrefix(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	waitCreated(t, wch)
	next := func() clientv3.WatchResponse {
		t.Helper()
		select {
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil {
				t.Fatalf("watch ended: %v", wr.Err())
			}
			return wr
		case <-time.After(10 * time.Second):
			t.Fatal("no watch response in 10s with a progress notify interval of 300ms")
			return clientv3.WatchResponse{}
		}
	}
	for i := 0; i < 2; i++ {
		if wr := next(); !wr.IsProgressNotify() || wr.Header.Revision != rev {
			t.Fatalf("response %d: %+v, want a progress notification at revision %d", i, wr, rev)
		}
	}
	rev = mustV3Put(t, cli, "pn/b", "2").Header.Revision
	for {
		wr := next()
		if len(wr.Events) == 1 && string(wr.Events[0].Kv.Key) == "pn/b" && wr.Events[0].Kv.ModRevision == rev {
			break
		}
		if !wr.IsProgressNotify() || wr.Header.Revision != rev-1 {
			t.Fatalf("%+v, want the event at %d or a progress notification before it", wr, rev)
		}
	}
	if wr := next(); !wr.IsProgressNotify() || wr.Header.Revision != rev {
		t.Fatalf("%+v, want a progress notification at revision %d", wr, rev)
	}
}
