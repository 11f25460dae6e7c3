package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// history is a small valid run: two acknowledged puts, an acknowledged
// delete, an unknown put that was applied, one that was not, and a final
// read. The watch history (revisions 2..5) matches.
func history() ([]Record, []Event) {
	recs := []Record{
		{Proc: 0, In: put("k", "a", 0), Out: ok(2), Call: 0, Return: 10},
		{Proc: 1, In: put("k", "b", 0), Out: unknown(), Call: 5, Return: Unfinished},
		{Proc: 2, In: get("k"), Out: read("b", 3), Call: 20, Return: 30},
		{Proc: 0, In: Input{Kind: OpDelete, Key: "k"}, Out: Output{Ok: true, Rev: 4}, Call: 40, Return: 50},
		{Proc: 3, In: put("k", "c", 0), Out: unknown(), Call: 45, Return: Unfinished},
		{Proc: 0, In: put("j", "d", 0), Out: ok(5), Call: 60, Return: 70},
		{Proc: 4, In: get("k"), Out: absent(), Call: 80, Return: 90},
		{Proc: 4, In: get("j"), Out: read("d", 5), Call: 80, Return: 90},
	}
	events := []Event{
		{Rev: 2, Key: "k", Value: "a"},
		{Rev: 3, Key: "k", Value: "b"},
		{Rev: 4, Key: "k", Delete: true},
		{Rev: 5, Key: "j", Value: "d"},
	}
	return recs, events
}

func check(recs []Record, watches map[int][]Event) *Verdict {
	return Check(recs, watches, 1, 5, 10*time.Second)
}

func TestCheckValid(t *testing.T) {
	recs, events := history()
	v := check(recs, map[int][]Event{0: events, 1: events})
	if v.Failed() || v.Linearizable != porcupine.Ok {
		t.Fatalf("valid history: %v %v", v.Linearizable, v.Violations)
	}
	if v.Pruned != 1 || v.Checked != len(recs)-1 {
		t.Fatalf("pruned %d, checked %d: want the never-applied put (c) left out", v.Pruned, v.Checked)
	}
	if v.WatchEvents != 4 {
		t.Fatalf("watch events %d, want 4", v.WatchEvents)
	}
	// Without watch histories nothing is left out.
	v = check(recs, nil)
	if v.Failed() || v.Pruned != 0 || v.Checked != len(recs) {
		t.Fatalf("without watches: %v, pruned %d, checked %d", v.Violations, v.Pruned, v.Checked)
	}
}

func wantViolation(t *testing.T, v *Verdict, substr string) {
	t.Helper()
	for _, s := range v.Violations {
		if strings.Contains(s, substr) {
			return
		}
	}
	t.Fatalf("no violation containing %q in %q", substr, v.Violations)
}

func TestCheckFindsProblems(t *testing.T) {
	t.Run("lost write", func(t *testing.T) {
		recs, events := history()
		events[0].Value = "zz" // revision 2 is not the acknowledged put
		v := check(recs, map[int][]Event{0: events})
		wantViolation(t, v, "lost acknowledged write")
		if len(v.Lost) != 1 {
			t.Fatalf("lost %v, want 1", v.Lost)
		}
		wantViolation(t, v, "no client wrote this value")
	})
	t.Run("gap", func(t *testing.T) {
		recs, events := history()
		v := check(recs, map[int][]Event{0: append(events[:1:1], events[2:]...)})
		wantViolation(t, v, "got revision 4 where 3 was expected")
	})
	t.Run("duplicate", func(t *testing.T) {
		recs, events := history()
		dup := append(append(events[:2:2], events[1]), events[2:]...)
		v := check(recs, map[int][]Event{0: dup})
		wantViolation(t, v, "out of order or repeated")
	})
	t.Run("short", func(t *testing.T) {
		recs, events := history()
		v := check(recs, map[int][]Event{0: events[:3]})
		wantViolation(t, v, "events end at revision 4, want 5")
	})
	t.Run("disagreement", func(t *testing.T) {
		recs, events := history()
		other := append([]Event(nil), events...)
		other[2] = Event{Rev: 4, Key: "j", Delete: true}
		v := check(recs, map[int][]Event{0: events, 1: other})
		wantViolation(t, v, "watchers disagree")
	})
	t.Run("two revisions for a value", func(t *testing.T) {
		recs, events := history()
		recs[2].Out.ModRev = 7
		v := check(recs, map[int][]Event{0: events})
		wantViolation(t, v, `value "b" of k seen at revision`)
	})
	t.Run("stale read", func(t *testing.T) {
		recs, events := history()
		recs = append(recs, Record{Proc: 5, In: get("j"), Out: absent(), Call: 100, Return: 110})
		v := check(recs, map[int][]Event{0: events})
		wantViolation(t, v, "not linearizable")
		if v.Linearizable != porcupine.Illegal {
			t.Fatalf("linearizable = %v, want Illegal", v.Linearizable)
		}
		path := t.TempDir() + "/l.html"
		if err := v.Visualize(path); err != nil {
			t.Fatalf("visualize: %v", err)
		}
	})
	t.Run("definite failure that was applied", func(t *testing.T) {
		recs, events := history()
		// The client was told "no leader" (not applied), yet its value
		// was read: the read has no write to explain it.
		recs[1] = Record{Proc: 1, In: put("k", "b", 0), Out: Output{Err: "etcdserver: no leader"}, Failed: true, Call: 5, Return: 8}
		v := check(recs, map[int][]Event{0: events})
		wantViolation(t, v, "not linearizable")
		wantViolation(t, v, "was refused")
	})
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		kind    OpKind
		err     string
		failed  bool
		unknown bool
	}{
		{OpPut, "etcdserver: no leader", true, false},
		{OpPut, "etcdserver: request timed out", false, true},
		{OpPut, "context deadline exceeded", false, true},
		{OpCASVal, "etcdserver: request timed out, possibly due to previous leader failure", false, true},
		{OpGet, "context deadline exceeded", true, false},
	} {
		rec := Record{In: Input{Kind: tc.kind}, Return: 7}
		classify(&rec, errorString(tc.err))
		if rec.Failed != tc.failed || rec.Out.Unknown != tc.unknown {
			t.Errorf("%s %q: failed %v unknown %v, want %v %v", tc.kind, tc.err, rec.Failed, rec.Out.Unknown, tc.failed, tc.unknown)
		}
		if tc.unknown && rec.Return != Unfinished {
			t.Errorf("%s %q: return %d, want Unfinished", tc.kind, tc.err, rec.Return)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
