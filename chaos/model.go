package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// OpKind is the kind of a client operation.
type OpKind string

const (
	OpGet    OpKind = "get"     // linearizable Range of one key
	OpPut    OpKind = "put"     // Put of a unique value
	OpDelete OpKind = "delete"  // DeleteRange of one key
	OpCASVal OpKind = "cas-val" // Txn: if value == Expect then put Value else get
	OpCASRev OpKind = "cas-rev" // Txn: if mod_revision == ExpectRev then put Value else get
)

// Input is what a client asked for.
type Input struct {
	Kind  OpKind `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"` // put, cas: the new (unique) value
	// Expect is, for cas-val, the value compared with; for cas-rev, the
	// value the client read with mod revision ExpectRev (values are
	// unique, so mod_revision == ExpectRev exactly when the key holds
	// that value). ExpectRev 0 means "the key is absent".
	Expect    string `json:"expect,omitempty"`
	ExpectRev int64  `json:"expect_rev,omitempty"`
	// Rev is the revision the write created, when known from its answer,
	// from a watch event or from a read that saw its value (filled in
	// before checking); 0 if unknown.
	Rev int64 `json:"rev,omitempty"`
}

// Output is what the client was told.
type Output struct {
	// Unknown: the outcome is unknown (timeout, connection lost, leader
	// lost); the operation may or may not have taken effect, at any time
	// after its invocation.
	Unknown bool   `json:"unknown,omitempty"`
	Err     string `json:"err,omitempty"`
	// Ok: a cas succeeded, a delete deleted the key.
	Ok bool `json:"ok,omitempty"`
	// Present, Value, ModRev: what a get (or a failed cas's get) read.
	Present bool   `json:"present,omitempty"`
	Value   string `json:"value,omitempty"`
	ModRev  int64  `json:"mod_rev,omitempty"`
	// Rev is the response header's revision.
	Rev int64 `json:"rev,omitempty"`
}

// keyState is the model's state of one key: its value (values are unique,
// so the value names the write that made it) and the revision of its last
// change, 0 when unknown.
type keyState struct {
	Present bool
	Value   string
	Rev     int64
}

// newerRev reports whether a write at revision rev may follow state st:
// revisions of one key's changes increase.
func newerRev(st keyState, rev int64) bool {
	return st.Rev == 0 || rev == 0 || rev > st.Rev
}

// readOK reports whether a read of (present, value, modRev) is what state st
// shows.
func readOK(st keyState, present bool, value string, modRev int64) bool {
	if present != st.Present {
		return false
	}
	if !present {
		return true
	}
	return value == st.Value && (st.Rev == 0 || modRev == st.Rev)
}

// afterRead is st with what a read learnt (the revision of the value).
func afterRead(st keyState, present bool, modRev int64) keyState {
	if present && st.Rev == 0 {
		st.Rev = modRev
	}
	return st
}

// Step is the sequential specification of one key.
func step(st keyState, in Input, out Output) (bool, keyState) {
	switch in.Kind {
	case OpGet:
		if !readOK(st, out.Present, out.Value, out.ModRev) {
			return false, st
		}
		return true, afterRead(st, out.Present, out.ModRev)
	case OpPut:
		if !newerRev(st, in.Rev) {
			return false, st
		}
		return true, keyState{Present: true, Value: in.Value, Rev: in.Rev}
	case OpDelete:
		if out.Unknown {
			if !st.Present {
				return true, st
			}
			return true, keyState{Rev: in.Rev}
		}
		if out.Ok != st.Present {
			return false, st
		}
		if !st.Present {
			return true, st
		}
		if !newerRev(st, in.Rev) {
			return false, st
		}
		return true, keyState{Rev: in.Rev}
	case OpCASVal, OpCASRev:
		match := st.Present && st.Value == in.Expect
		if in.Kind == OpCASRev && in.ExpectRev == 0 {
			match = !st.Present
		}
		if out.Unknown {
			if !match {
				return true, st
			}
		} else {
			if out.Ok != match {
				return false, st
			}
			if !match {
				if !readOK(st, out.Present, out.Value, out.ModRev) {
					return false, st
				}
				return true, afterRead(st, out.Present, out.ModRev)
			}
		}
		if !newerRev(st, in.Rev) {
			return false, st
		}
		return true, keyState{Present: true, Value: in.Value, Rev: in.Rev}
	}
	return false, st
}

// Model is the porcupine model of the key-value store, partitioned by key.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return keyState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		return step(state.(keyState), input.(Input), output.(Output))
	},
	Equal: func(a, b interface{}) bool { return a.(keyState) == b.(keyState) },
	DescribeOperation: func(input, output interface{}) string {
		return describe(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string {
		st := state.(keyState)
		if !st.Present {
			if st.Rev != 0 {
				return fmt.Sprintf("(absent, deleted @%d)", st.Rev)
			}
			return "(absent)"
		}
		return fmt.Sprintf("%q @%d", st.Value, st.Rev)
	},
}

func describe(in Input, out Output) string {
	res := ""
	switch {
	case out.Unknown:
		res = "unknown"
		if out.Err != "" {
			res += " (" + out.Err + ")"
		}
	case in.Kind == OpGet || ((in.Kind == OpCASVal || in.Kind == OpCASRev) && !out.Ok):
		if out.Present {
			res = fmt.Sprintf("%q @%d", out.Value, out.ModRev)
		} else {
			res = "absent"
		}
		if in.Kind != OpGet {
			res = "failed, read " + res
		}
	case in.Kind == OpDelete:
		if out.Ok {
			res = fmt.Sprintf("deleted @%d", out.Rev)
		} else {
			res = "not found"
		}
	default:
		res = fmt.Sprintf("ok @%d", out.Rev)
	}
	switch in.Kind {
	case OpGet:
		return fmt.Sprintf("get(%s) -> %s", in.Key, res)
	case OpPut:
		return fmt.Sprintf("put(%s, %q) -> %s", in.Key, in.Value, res)
	case OpDelete:
		return fmt.Sprintf("delete(%s) -> %s", in.Key, res)
	case OpCASVal:
		return fmt.Sprintf("cas(%s, value==%q, %q) -> %s", in.Key, in.Expect, in.Value, res)
	default:
		if in.ExpectRev == 0 {
			return fmt.Sprintf("cas(%s, absent, %q) -> %s", in.Key, in.Value, res)
		}
		return fmt.Sprintf("cas(%s, mod_rev==%d (%q), %q) -> %s", in.Key, in.ExpectRev, in.Expect, in.Value, res)
	}
}
