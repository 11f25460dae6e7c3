package watch

import (
	"bytes"
	"cmp"
	"errors"
	"slices"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// maxGroup bounds the watchers that share one read, and so the time the
// hub's lock is held to hand out its responses (about 3 ms for 3,000
// watchers; etcd's maxWatchersPerSync is 512, but etcd also filters under
// its lock).
const maxGroup = 4096

// behind is an unsynced watcher ready for catch-up, with the revision it
// needs next (read under h.mu).
type behind struct {
	w    *Watcher
	from int64
}

// syncPass serves every unsynced watcher that has room once. Watchers
// whose next revisions are close share one History read: sorted by the
// revision they need next, each group starts at its lowest and takes in
// every watcher within MaxRevsPerBatch of it (at most maxGroup), as far
// as one read reaches.
// A thousand watchers that resume from the same revision thus cost one
// scan of the history, not a thousand (etcd's watchable store also reads
// once for many unsynced watchers). It reports whether another pass
// should follow at once (some watcher progressed but is still behind).
func (h *Hub) syncPass() bool {
	h.mu.Lock()
	if h.closed || len(h.unsynced) == 0 {
		h.mu.Unlock()
		return false
	}
	target := h.rev
	ready := make([]behind, 0, len(h.unsynced))
	for w := range h.unsynced {
		switch {
		case w.full() || w.backlogTooBig():
			if w.s != nil {
				w.s.mu.Lock()
				w.s.behind = true // the stream's next Take wakes the loop
				w.s.mu.Unlock()
			}
			// Still slow: retry on the next tick.
		case w.compacted != 0:
			h.sendCompacted(w)
		default:
			ready = append(ready, behind{w: w, from: w.minRev})
		}
	}
	h.mu.Unlock()

	slices.SortFunc(ready, func(a, b behind) int { return cmp.Compare(a.from, b.from) })
	again := false
	for i := 0; i < len(ready); {
		j := i + 1
		for j < len(ready) && j-i < maxGroup && ready[j].from < ready[i].from+int64(h.opts.MaxRevsPerBatch) {
			j++
		}
		if h.syncGroup(ready[i:j], target) {
			again = true
		}
		i = j
	}
	return again
}

// span returns the smallest key range, in History's terms, that holds
// every watcher's range in g.
func span(g []behind) (key, end []byte) {
	key, end = g[0].w.key, g[0].w.end
	if len(g) == 1 {
		return key, end
	}
	fromKey := false
	var last []byte // the greatest end, exclusive
	for _, b := range g {
		w := b.w
		if bytes.Compare(w.key, key) < 0 {
			key = w.key
		}
		switch {
		case w.fromKey:
			fromKey = true
		case w.end == nil: // a single key: up to key+"\x00"
			if e := append(bytes.Clone(w.key), 0); bytes.Compare(e, last) > 0 {
				last = e
			}
		default:
			if bytes.Compare(w.end, last) > 0 {
				last = w.end
			}
		}
	}
	if fromKey {
		return key, []byte{0}
	}
	return key, last
}

// keySet is the union of a group's ranges: single keys by lookup, ranges
// merged into sorted disjoint intervals.
type keySet struct {
	keys map[string]struct{}
	ivs  []interval
}

type interval struct{ start, end []byte } // end nil: no end

func wanted(g []behind) *keySet {
	ks := &keySet{keys: make(map[string]struct{})}
	var ivs []interval
	for _, b := range g {
		w := b.w
		switch {
		case w.fromKey:
			ivs = append(ivs, interval{start: w.key})
		case w.end == nil:
			ks.keys[string(w.key)] = struct{}{}
		default:
			ivs = append(ivs, interval{start: w.key, end: w.end})
		}
	}
	slices.SortFunc(ivs, func(a, b interval) int { return bytes.Compare(a.start, b.start) })
	for _, iv := range ivs {
		n := len(ks.ivs)
		if n > 0 && (ks.ivs[n-1].end == nil || bytes.Compare(iv.start, ks.ivs[n-1].end) <= 0) {
			if last := &ks.ivs[n-1]; last.end != nil && (iv.end == nil || bytes.Compare(iv.end, last.end) > 0) {
				last.end = iv.end
			}
			continue
		}
		ks.ivs = append(ks.ivs, iv)
	}
	return ks
}

func (ks *keySet) has(key []byte) bool {
	if _, ok := ks.keys[string(key)]; ok {
		return true
	}
	i := sort.Search(len(ks.ivs), func(i int) bool { return bytes.Compare(ks.ivs[i].start, key) > 0 }) - 1
	return i >= 0 && (ks.ivs[i].end == nil || bytes.Compare(key, ks.ivs[i].end) < 0)
}

// syncGroup advances the watchers of g, sorted by the revision they need
// next, by what one History read from the first one's revision up to
// target holds: at most MaxRevsPerBatch revisions and about MaxBatchBytes
// of events, cut at a revision boundary. Each watcher gets its own events
// of the read, from its own next revision on, and then needs the revision
// where the read stopped. A watcher whose queue filled meanwhile (a
// stream's, shared with its synced watchers) reads again later.
func (h *Hub) syncGroup(g []behind, target int64) (progressed bool) {
	from := g[0].from
	key, end := span(g)
	// The span can hold keys no watcher of the group wants: they neither
	// count towards the cuts nor stay in memory.
	var want *keySet
	if len(g) > 1 {
		want = wanted(g)
	}
	var (
		evs   []*mvccpb.Event
		next  = target + 1
		revs  int
		last  int64
		size  int
		limit = h.opts.MaxBatchBytes
	)
	err := h.hist.Events(from, key, end, func(ev *mvccpb.Event) bool {
		r := ev.GetKv().GetModRevision()
		if r > target {
			return false
		}
		if r < from || (want != nil && !want.has(ev.Kv.Key)) {
			return true
		}
		if r != last {
			if revs == h.opts.MaxRevsPerBatch || size >= limit {
				next = r
				return false
			}
			revs++
			last = r
		}
		evs = append(evs, ev)
		size += eventBytes(ev)
		return true
	})
	if err != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !errors.Is(err, ErrCompacted) {
			return false // retry on the next tick
		}
		// The watchers that need a compacted revision are canceled; the
		// others read again from their own revisions. The first one is
		// canceled in any case, as it would be alone, so that no group
		// stays stuck on a read that keeps failing.
		c := h.hist.CompactRevision()
		for i, b := range g {
			if b.w.state == stateUnsynced && (b.from < c || i == 0) {
				b.w.compacted = max(c, b.from, 1)
				h.sendCompacted(b.w)
				progressed = true
			}
		}
		return progressed
	}

	// Each watcher's response, made without the hub's lock (Notify is not
	// held up by it): what a watcher matches and how it shapes events
	// never change. Single-key watchers look their key up.
	// Range watchers find theirs through the events sorted by key.
	var (
		byKey map[string][]*mvccpb.Event
		order *keyOrder
	)
	if len(g) > 1 {
		byKey = make(map[string][]*mvccpb.Event)
		for _, ev := range evs {
			byKey[string(ev.Kv.Key)] = append(byKey[string(ev.Kv.Key)], ev)
		}
		for _, b := range g {
			if b.w.end != nil {
				order = newKeyOrder(evs)
				break
			}
		}
	}
	resps := make([]*pb.WatchResponse, len(g))
	sizes := make([]int, len(g))
	for i, b := range g {
		w := b.w
		if next <= b.from {
			continue // the read stopped before its revision
		}
		src := evs
		switch {
		case byKey != nil && w.end == nil:
			src = byKey[string(w.key)]
		case order != nil:
			src = order.in(w)
		}
		var mine []*mvccpb.Event
		for _, ev := range src {
			if ev.Kv.ModRevision < b.from || !w.has(ev.Kv.Key) {
				continue
			}
			if ev = w.shape(ev); ev != nil {
				mine = append(mine, ev)
				sizes[i] += eventBytes(ev)
			}
		}
		if len(mine) > 0 {
			resps[i] = &pb.WatchResponse{
				Header:  &pb.ResponseHeader{Revision: target},
				WatchId: w.id,
				Events:  mine,
			}
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range g {
		w := b.w
		if w.state != stateUnsynced || next <= b.from {
			continue // canceled meanwhile, or the read stopped before its revision
		}
		if resps[i] != nil {
			if !w.put(resps[i]) {
				continue // no room now: read again later
			}
			w.sent = true
			w.noteBatch(sizes[i])
		}
		w.minRev = next
		if w.minRev > h.rev {
			// Caught up with every revision Notify has seen: from now on
			// Notify delivers. Both happen under h.mu, so no revision
			// falls between.
			delete(h.unsynced, w)
			h.addSynced(w)
			continue
		}
		progressed = true
	}
	return progressed
}

// has reports whether key is in w's range.
func (w *Watcher) has(key []byte) bool {
	if w.end == nil {
		return bytes.Equal(key, w.key)
	}
	return w.matches(key)
}
