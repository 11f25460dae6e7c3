package chaos

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is what the checks found in one run's history.
type Verdict struct {
	// Linearizability (porcupine).
	Checked      int // operations given to porcupine
	Pruned       int // unknown writes left out: never applied (see Check)
	Linearizable porcupine.CheckResult
	CheckTime    time.Duration
	info         porcupine.LinearizationInfo
	illegal      bool

	// Watch and durability checks.
	WatchEvents int      // events up to the final revision, per watcher
	Lost        []string // acknowledged writes missing from the watch history
	Violations  []string // every safety problem found, including the above
}

// Failed reports whether anything unsafe was found.
func (v *Verdict) Failed() bool { return len(v.Violations) > 0 }

func (v *Verdict) violate(format string, args ...any) {
	v.Violations = append(v.Violations, fmt.Sprintf(format, args...))
}

const maxReported = 20

// Check checks a run's history:
//
//   - every value is seen with a single revision (in answers, reads and
//     watch events), so the model can check revisions too;
//   - linearizability of the operations, per key, with porcupine (Model),
//     within timeout. Unknown writes whose value no watcher and no read
//     ever saw were never applied (the watchers saw every revision up to the
//     end) and are left out: they cannot explain anything. Without watch
//     histories (watches empty: the run ended before the watchers could
//     catch up) every unknown write stays in and the watch checks below
//     are skipped;
//   - every watcher saw every revision in (startRev, finalRev] exactly
//     once, in order, and all of them the same events;
//   - every acknowledged write is in the watch history at the revision it
//     was acknowledged with, and nothing else is (no write nobody made).
func Check(records []Record, watches map[int][]Event, startRev, finalRev int64, timeout time.Duration) *Verdict {
	v := &Verdict{}
	revs := v.revisionTable(records, watches)
	// Without complete watch histories (a run whose cluster did not
	// recover), an unknown write nobody read may still have been applied
	// (and explain, say, a delete that found the key): keep them all.
	complete := len(watches) > 0
	if complete {
		v.checkWatches(records, watches, startRev, finalRev)
	}

	var ops []porcupine.Operation
	for _, r := range records {
		if r.Failed {
			continue
		}
		in := r.In
		switch in.Kind {
		case OpPut, OpCASVal, OpCASRev:
			in.Rev = revs[in.Key][in.Value]
			if complete && r.Out.Unknown && in.Rev == 0 {
				v.Pruned++
				continue
			}
		case OpDelete:
			if !r.Out.Unknown && r.Out.Ok {
				in.Rev = r.Out.Rev
			}
		}
		ops = append(ops, porcupine.Operation{ClientId: r.Proc, Input: in, Call: r.Call, Output: r.Out, Return: r.Return})
	}
	v.Checked = len(ops)
	t0 := time.Now()
	v.Linearizable = porcupine.CheckOperationsTimeout(Model, ops, timeout)
	if v.Linearizable == porcupine.Illegal {
		// Again, with the partial linearizations for the visualisation.
		_, v.info = porcupine.CheckOperationsVerbose(Model, ops, timeout)
		v.illegal = true
		var bad []string
		for _, part := range Model.Partition(ops) {
			if porcupine.CheckOperationsTimeout(Model, part, timeout) == porcupine.Illegal {
				bad = append(bad, part[0].Input.(Input).Key)
			}
		}
		v.violate("history is not linearizable (porcupine): keys %v; see linearizability.html", bad)
	}
	v.CheckTime = time.Since(t0)
	return v
}

// revisionTable maps key -> value -> revision from every observation, and
// reports values seen with two revisions. Values are unique per write, so
// a value names the write that made it.
func (v *Verdict) revisionTable(records []Record, watches map[int][]Event) map[string]map[string]int64 {
	revs := map[string]map[string]int64{}
	where := map[string]string{}
	n := 0
	note := func(key, value string, rev int64, src string) {
		if rev == 0 {
			return
		}
		m := revs[key]
		if m == nil {
			m = map[string]int64{}
			revs[key] = m
		}
		if old, ok := m[value]; ok && old != rev {
			if n++; n <= maxReported {
				v.violate("value %q of %s seen at revision %d (%s) and %d (%s)", value, key, old, where[key+"\x00"+value], rev, src)
			}
			return
		}
		m[value] = rev
		where[key+"\x00"+value] = src
	}
	for _, r := range records {
		if r.Failed || r.Out.Unknown {
			continue
		}
		switch r.In.Kind {
		case OpPut:
			note(r.In.Key, r.In.Value, r.Out.Rev, "put answer")
		case OpCASVal, OpCASRev:
			if r.Out.Ok {
				note(r.In.Key, r.In.Value, r.Out.Rev, "txn answer")
			} else if r.Out.Present {
				note(r.In.Key, r.Out.Value, r.Out.ModRev, "txn read")
			}
		case OpGet:
			if r.Out.Present {
				note(r.In.Key, r.Out.Value, r.Out.ModRev, "read")
			}
		}
	}
	slots := sortedSlots(watches)
	for _, s := range slots {
		for _, e := range watches[s] {
			if !e.Delete {
				note(e.Key, e.Value, e.Rev, fmt.Sprintf("watch on slot %d", s))
			}
		}
	}
	return revs
}

func sortedSlots(watches map[int][]Event) []int {
	slots := make([]int, 0, len(watches))
	for s := range watches {
		slots = append(slots, s)
	}
	sort.Ints(slots)
	return slots
}

func (v *Verdict) checkWatches(records []Record, watches map[int][]Event, startRev, finalRev int64) {
	slots := sortedSlots(watches)
	var ref []Event
	refSlot := -1
	for _, s := range slots {
		evs := watches[s]
		// In order, each revision once.
		var upto []Event
		bad := 0
		for k, e := range evs {
			if k > 0 && e.Rev <= evs[k-1].Rev {
				if bad++; bad <= 5 {
					v.violate("watcher on slot %d: event %v after %v (out of order or repeated)", s, e, evs[k-1])
				}
			}
			if e.Rev <= finalRev {
				upto = append(upto, e)
			}
		}
		// Every revision of (startRev, finalRev], each once: the workload is
		// the only writer and each of its writes changes one key.
		want := startRev + 1
		contiguous := true
		for _, e := range upto {
			if e.Rev != want {
				v.violate("watcher on slot %d: got revision %d where %d was expected", s, e.Rev, want)
				contiguous = false
				break
			}
			want++
		}
		if contiguous && want != finalRev+1 {
			v.violate("watcher on slot %d: events end at revision %d, want %d", s, want-1, finalRev)
		}
		if ref == nil {
			ref, refSlot = upto, s
			v.WatchEvents = len(upto)
			continue
		}
		for k := 0; k < min(len(ref), len(upto)); k++ {
			if ref[k] != upto[k] {
				v.violate("watchers disagree: slot %d saw %v, slot %d saw %v", refSlot, ref[k], s, upto[k])
				break
			}
		}
	}
	if refSlot < 0 {
		return
	}

	// Acknowledged writes are in the history, at their revision.
	byRev := map[int64]Event{}
	for _, s := range slots {
		for _, e := range watches[s] {
			if _, ok := byRev[e.Rev]; !ok {
				byRev[e.Rev] = e
			}
		}
	}
	lost := func(r Record, want Event) {
		got, ok := byRev[want.Rev]
		desc := fmt.Sprintf("%s acknowledged at revision %d by %s, but the watch history has ", describe(r.In, r.Out), want.Rev, r.Endpoint)
		if ok {
			desc += got.String()
		} else {
			desc += "no such revision"
		}
		v.Lost = append(v.Lost, desc)
		if len(v.Lost) <= maxReported {
			v.violate("lost acknowledged write: %s", desc)
		}
	}
	attempted := map[string]string{} // value -> key
	failed := map[string]Record{}    // value -> write that definitely failed
	for _, r := range records {
		if r.In.Kind == OpPut || r.In.Kind == OpCASVal || r.In.Kind == OpCASRev {
			attempted[r.In.Value] = r.In.Key
			if r.Failed {
				failed[r.In.Value] = r
			}
		}
		if r.Failed || r.Out.Unknown || r.Out.Rev > finalRev {
			continue
		}
		var want Event
		switch {
		case r.In.Kind == OpPut, (r.In.Kind == OpCASVal || r.In.Kind == OpCASRev) && r.Out.Ok:
			want = Event{Rev: r.Out.Rev, Key: r.In.Key, Value: r.In.Value}
		case r.In.Kind == OpDelete && r.Out.Ok:
			want = Event{Rev: r.Out.Rev, Key: r.In.Key, Delete: true}
		default:
			continue
		}
		if byRev[want.Rev] != want {
			lost(r, want)
		}
	}
	// Nothing nobody wrote; no value twice.
	seen := map[string]int64{}
	for _, rev := range sortedRevs(byRev) {
		e := byRev[rev]
		if e.Delete {
			continue
		}
		if k, ok := attempted[e.Value]; !ok || k != e.Key {
			v.violate("watch event %v: no client wrote this value to this key", e)
		}
		if r, ok := failed[e.Value]; ok {
			v.violate("%s of %q to %s was refused (%q: not applied), yet the watch history has it at revision %d", r.In.Kind, r.In.Value, r.In.Key, r.Out.Err, e.Rev)
		}
		if old, ok := seen[e.Value]; ok {
			v.violate("value %q written twice, at revisions %d and %d", e.Value, old, e.Rev)
		}
		seen[e.Value] = e.Rev
	}
}

func sortedRevs(m map[int64]Event) []int64 {
	out := make([]int64, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Visualize writes porcupine's HTML visualisation of the last Check of a
// non-linearizable history to path.
func (v *Verdict) Visualize(path string) error {
	if !v.illegal {
		return nil
	}
	return porcupine.VisualizePath(Model, v.info, path)
}
