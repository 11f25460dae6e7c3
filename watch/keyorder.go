package watch

import (
	"bytes"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// keyOrder is a read's or a revision's events sorted by key, each key's
// in revision order, so that a range watcher finds its events by two
// binary searches rather than by testing every event (catch-up reads,
// and Notify for large revisions).
type keyOrder struct {
	evs []*mvccpb.Event
	pos []int32 // positions in evs, sorted by key, then position
}

func newKeyOrder(evs []*mvccpb.Event) *keyOrder {
	o := &keyOrder{evs: evs, pos: make([]int32, len(evs))}
	for i := range o.pos {
		o.pos[i] = int32(i)
	}
	slices.SortStableFunc(o.pos, func(a, b int32) int {
		return bytes.Compare(evs[a].Kv.Key, evs[b].Kv.Key)
	})
	return o
}

// in returns the events in w's range, in the read's (revision) order, and
// for a range that holds most of them, all the events: the caller tests
// each against w's range.
func (o *keyOrder) in(w *Watcher) []*mvccpb.Event {
	at := func(k []byte) int {
		i, _ := slices.BinarySearchFunc(o.pos, k, func(p int32, k []byte) int {
			return bytes.Compare(o.evs[p].Kv.Key, k)
		})
		return i
	}
	lo, hi := at(w.key), len(o.pos)
	if !w.fromKey {
		hi = max(lo, at(w.end))
	}
	if (hi-lo)*8 > len(o.pos) {
		// A wide range: testing each event, as the caller does, costs
		// less than sorting them back into order.
		return o.evs
	}
	mine := slices.Clone(o.pos[lo:hi])
	slices.Sort(mine)
	out := make([]*mvccpb.Event, len(mine))
	for i, p := range mine {
		out[i] = o.evs[p]
	}
	return out
}
