package lease

import (
	"container/heap"
	"math"
	"slices"
	"time"
)

// This file is the leader-only half of the Lessor: expiry times read from
// the clock, which exist only while the Lessor is promoted. Nothing here
// changes the replicated state; an expiry becomes a LeaseRevoke proposal
// that the server sends through raft, and a checkpoint a LeaseCheckpoint
// proposal.

// tracked is the leader's view of one lease's expiry.
type tracked struct {
	id int64
	// expiry is when the lease expires.
	expiry time.Time
	// due orders the expiry heap: expiry, or, once ExpiredLeases handed
	// the lease out, the time to hand it out again.
	due time.Time
	idx int // in the expiry heap
}

type expiryHeap []*tracked

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expiryHeap) Push(x any) {
	t := x.(*tracked)
	t.idx = len(*h)
	*h = append(*h, t)
}
func (h *expiryHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

// checkpointAt is a scheduled checkpoint. The queue is lazy: an entry
// whose lease is gone is dropped when it comes due.
type checkpointAt struct {
	at time.Time
	id int64
}

type checkpointHeap []checkpointAt

func (h checkpointHeap) Len() int           { return len(h) }
func (h checkpointHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h checkpointHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *checkpointHeap) Push(x any)        { *h = append(*h, x.(checkpointAt)) }
func (h *checkpointHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// primary is the leader-only state; the Lessor holds one only while
// promoted, and drops it whole on Demote.
type primary struct {
	opts        *Options
	track       map[int64]*tracked
	expiries    expiryHeap
	checkpoints checkpointHeap
	// resets are leases renewed while they had a checkpointed remaining
	// TTL: a checkpoint of 0 must be proposed so that a later leader
	// gives them their full TTL, not the stale remainder.
	resets map[int64]struct{}
}

func newPrimary(opts *Options) *primary {
	return &primary{opts: opts, track: make(map[int64]*tracked), resets: make(map[int64]struct{})}
}

// startTTL is the TTL a new leader counts from: the checkpointed remaining
// TTL if there is one, else the full TTL.
func (r record) startTTL() int64 {
	if r.remaining > 0 {
		return r.remaining
	}
	return r.ttl
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// start tracks rec (or re-tracks it) as expiring extend + its start TTL
// from now.
func (p *primary) start(rec record, now time.Time, extend time.Duration) {
	p.set(rec.id, now.Add(extend+seconds(rec.startTTL())))
	p.scheduleCheckpoint(rec, now)
}

func (p *primary) set(id int64, expiry time.Time) {
	if t := p.track[id]; t != nil {
		t.expiry, t.due = expiry, expiry
		heap.Fix(&p.expiries, t.idx)
		return
	}
	t := &tracked{id: id, expiry: expiry, due: expiry}
	p.track[id] = t
	heap.Push(&p.expiries, t)
}

func (p *primary) stop(id int64) {
	if t := p.track[id]; t != nil {
		heap.Remove(&p.expiries, t.idx)
		delete(p.track, id)
	}
	delete(p.resets, id)
}

func (p *primary) checkpointed(rec record, now time.Time) {
	if rec.remaining == 0 {
		delete(p.resets, rec.id)
	}
	p.scheduleCheckpoint(rec, now)
}

func (p *primary) scheduleCheckpoint(rec record, now time.Time) {
	iv := p.opts.CheckpointInterval
	if iv <= 0 || seconds(rec.startTTL()) <= iv {
		return
	}
	heap.Push(&p.checkpoints, checkpointAt{at: now.Add(iv), id: rec.id})
}

// spread moves expiries of piled-up leases later so that, as far as the
// leases that expire at once allow, no one second sees more than 3/4 of
// RevokeRate expiries (etcd does this on Promote, since a new leader
// starts every lease's TTL at the same moment). Inside a pile starting at
// base, the n-th lease past the allowance expires at base +
// n/allowance seconds, unless it expires later anyway.
func (p *primary) spread() {
	rate := p.opts.RevokeRate
	if len(p.track) < rate {
		return
	}
	ts := make([]*tracked, 0, len(p.track))
	for _, t := range p.track {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b *tracked) int {
		if c := a.expiry.Compare(b.expiry); c != 0 {
			return c
		}
		return cmpInt(a.id, b.id)
	})
	allow := max(1, 3*rate/4)
	var base, end time.Time
	n := 0
	for i, t := range ts {
		if i == 0 || t.expiry.After(end) {
			base, end, n = t.expiry, t.expiry.Add(time.Second), 1
			continue
		}
		n++
		if n <= allow {
			continue
		}
		e := base.Add(time.Duration(float64(time.Second) * float64(n) / float64(allow)))
		if e.After(t.expiry) {
			t.expiry, t.due = e, e
			heap.Fix(&p.expiries, t.idx)
		}
		if e.After(end) {
			end = e
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// --- Leader-only methods. ---

// Promote makes the lessor primary, on becoming raft leader: every lease
// expires extend plus its TTL from now, counting from its checkpointed
// remaining TTL where there is one, so that live leases get a fresh
// lease of life instead of expiring at once on a leader that never saw
// their keepalives. Piled-up expiries are then spread (see RevokeRate).
// Promoting a promoted lessor restarts every expiry the same way.
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.promoteLocked(extend)
}

func (l *Lessor) promoteLocked(extend time.Duration) {
	l.p = newPrimary(&l.opts)
	now := l.clock.Now()
	for _, id := range l.sortedIDsLocked() {
		l.p.start(l.leases[id].rec, now, extend)
	}
	l.p.spread()
}

// Demote drops the leader-only state, on losing leadership: no lease
// expires on this member until it is promoted again.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p = nil
}

// IsPrimary reports whether the lessor is promoted.
func (l *Lessor) IsPrimary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p != nil
}

// Renew is a keepalive on the leader: lease id expires its full TTL from
// now, which Renew returns. ErrNotPrimary on a follower (the server
// forwards to the leader), ErrLeaseNotFound if there is no such lease or
// it has already expired (its revoke is on its way through raft; like
// etcd, the server answers only once the revoke is applied, or the leader
// changed). A renewed lease with a checkpointed remaining TTL is offered
// by DueCheckpoints for a reset to 0.
func (l *Lessor) Renew(id int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return -1, ErrNotPrimary
	}
	ls := l.leases[id]
	t := l.p.track[id]
	if ls == nil || t == nil {
		return -1, ErrLeaseNotFound
	}
	now := l.clock.Now()
	if !now.Before(t.expiry) {
		return -1, ErrLeaseNotFound
	}
	l.p.set(id, now.Add(seconds(ls.rec.ttl)))
	if ls.rec.remaining > 0 {
		l.p.resets[id] = struct{}{}
	}
	return ls.rec.ttl, nil
}

// TimeToLive answers LeaseTimeToLive on the leader: the granted TTL, the
// remaining TTL in whole seconds by the leader's clock (truncated toward
// zero, as etcd, so 0 just past expiry and negative after), and with
// withKeys the attached keys in key order. ErrNotPrimary on a follower,
// ErrLeaseNotFound for no such lease.
func (l *Lessor) TimeToLive(id int64, withKeys bool) (granted, remaining int64, keys [][]byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return 0, 0, nil, ErrNotPrimary
	}
	ls := l.leases[id]
	t := l.p.track[id]
	if ls == nil || t == nil {
		return 0, 0, nil, ErrLeaseNotFound
	}
	// Whole seconds toward zero, as etcd's int64(Remaining().Seconds()):
	// 0 through the first second past expiry, while the revoke is on its
	// way, then negative.
	remaining = int64(t.expiry.Sub(l.clock.Now()) / time.Second)
	if withKeys {
		keys = sortedKeys(ls.keys)
	}
	return ls.rec.ttl, remaining, keys, nil
}

// ExpiredLeases returns up to limit leases (RevokeRate/2 if limit <= 0)
// past their expiry, earliest first, for the server to propose their
// LeaseRevoke through raft; it is meant to be called every 500ms, which
// makes RevokeRate a per-second rate. A lease handed out is not handed
// out again for ExpiredRetryInterval, in case its revoke was lost (a
// leader change, a dropped proposal). On a follower it returns nil.
func (l *Lessor) ExpiredLeases(limit int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return nil
	}
	if limit <= 0 {
		limit = max(1, l.opts.RevokeRate/2)
	}
	now := l.clock.Now()
	retry := now.Add(l.opts.ExpiredRetryInterval)
	var ids []int64
	for len(ids) < limit && len(l.p.expiries) > 0 {
		t := l.p.expiries[0]
		if now.Before(t.due) {
			break
		}
		ids = append(ids, t.id)
		t.due = retry
		heap.Fix(&l.p.expiries, 0)
	}
	return ids
}

// CheckpointEntry is one lease checkpoint to propose (etcd's
// LeaseCheckpoint message).
type CheckpointEntry struct {
	ID           int64
	RemainingTTL int64
}

// DueCheckpoints returns up to limit (1000 if limit <= 0) checkpoints the
// leader should propose in one LeaseCheckpoint entry: resets to 0 of
// renewed leases first, then the remaining TTL of leases whose checkpoint
// interval has passed (only with Options.CheckpointInterval). On a
// follower it returns nil.
func (l *Lessor) DueCheckpoints(limit int) []CheckpointEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return nil
	}
	if limit <= 0 {
		limit = 1000
	}
	var out []CheckpointEntry
	resets := make([]int64, 0, len(l.p.resets))
	for id := range l.p.resets {
		resets = append(resets, id)
	}
	slices.Sort(resets)
	for _, id := range resets {
		if len(out) == limit {
			return out
		}
		delete(l.p.resets, id)
		out = append(out, CheckpointEntry{ID: id})
	}
	now := l.clock.Now()
	for len(out) < limit && len(l.p.checkpoints) > 0 && !l.p.checkpoints[0].at.After(now) {
		c := heap.Pop(&l.p.checkpoints).(checkpointAt)
		ls, t := l.leases[c.id], l.p.track[c.id]
		if ls == nil || t == nil || !now.Before(t.expiry) {
			continue
		}
		rem := int64(math.Ceil(t.expiry.Sub(now).Seconds()))
		if rem >= ls.rec.ttl {
			// Renewed since it was scheduled: nothing to save yet.
			heap.Push(&l.p.checkpoints, checkpointAt{at: now.Add(l.opts.CheckpointInterval), id: c.id})
			continue
		}
		out = append(out, CheckpointEntry{ID: c.id, RemainingTTL: rem})
	}
	return out
}
