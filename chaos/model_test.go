package chaos

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds a porcupine operation for the model tests.
func op(call, ret int64, in Input, out Output) porcupine.Operation {
	return porcupine.Operation{Input: in, Output: out, Call: call, Return: ret}
}

func put(k, v string, rev int64) Input { return Input{Kind: OpPut, Key: k, Value: v, Rev: rev} }
func get(k string) Input               { return Input{Kind: OpGet, Key: k} }
func ok(rev int64) Output              { return Output{Rev: rev} }
func read(v string, modRev int64) Output {
	return Output{Present: true, Value: v, ModRev: modRev, Rev: modRev}
}
func absent() Output  { return Output{} }
func unknown() Output { return Output{Unknown: true} }

func TestModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			op(0, 1, get("a"), absent()),
			op(2, 3, put("a", "x", 2), ok(2)),
			op(4, 5, get("a"), read("x", 2)),
			op(6, 7, Input{Kind: OpDelete, Key: "a", Rev: 3}, Output{Ok: true, Rev: 3}),
			op(8, 9, get("a"), absent()),
			op(10, 11, Input{Kind: OpDelete, Key: "a"}, Output{Rev: 3}),
		}, porcupine.Ok},
		{"stale read", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, 3, put("a", "y", 3), ok(3)),
			op(4, 5, get("a"), read("x", 2)),
		}, porcupine.Illegal},
		{"lost write", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(4, 5, get("a"), absent()),
		}, porcupine.Illegal},
		{"concurrent write may be seen either way", []porcupine.Operation{
			op(0, 10, put("a", "x", 2), ok(2)),
			op(1, 2, get("a"), absent()),
			op(3, 4, get("a"), read("x", 2)),
		}, porcupine.Ok},
		{"no going back", []porcupine.Operation{
			op(0, 10, put("a", "x", 2), ok(2)),
			op(1, 2, get("a"), read("x", 2)),
			op(3, 4, get("a"), absent()),
		}, porcupine.Illegal},
		{"unknown write seen later", []porcupine.Operation{
			op(0, Unfinished, put("a", "x", 2), unknown()),
			op(5, 6, get("a"), absent()),
			op(7, 8, get("a"), read("x", 2)),
		}, porcupine.Ok},
		{"unknown write not seen", []porcupine.Operation{
			op(0, Unfinished, put("a", "x", 0), unknown()),
			op(5, 6, get("a"), absent()),
		}, porcupine.Ok},
		{"read before the write began", []porcupine.Operation{
			op(0, 1, get("a"), read("x", 2)),
			op(2, Unfinished, put("a", "x", 2), unknown()),
		}, porcupine.Illegal},
		{"revisions go up", []porcupine.Operation{
			op(0, 1, put("a", "x", 5), ok(5)),
			op(2, 3, put("a", "y", 4), ok(4)),
		}, porcupine.Illegal},
		{"read with the wrong mod revision", []porcupine.Operation{
			op(0, 1, put("a", "x", 5), ok(5)),
			op(2, 3, get("a"), read("x", 6)),
		}, porcupine.Illegal},
		{"cas by value", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, 3, Input{Kind: OpCASVal, Key: "a", Expect: "x", Value: "y", Rev: 3}, Output{Ok: true, Rev: 3}),
			op(4, 5, Input{Kind: OpCASVal, Key: "a", Expect: "x", Value: "z"}, Output{Present: true, Value: "y", ModRev: 3, Rev: 3}),
			op(6, 7, get("a"), read("y", 3)),
		}, porcupine.Ok},
		{"cas that should have failed", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, 3, Input{Kind: OpCASVal, Key: "a", Expect: "w", Value: "y", Rev: 3}, Output{Ok: true, Rev: 3}),
		}, porcupine.Illegal},
		{"cas that should have succeeded", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, 3, Input{Kind: OpCASRev, Key: "a", Expect: "x", ExpectRev: 2, Value: "y"}, Output{Present: true, Value: "x", ModRev: 2, Rev: 2}),
		}, porcupine.Illegal},
		{"create if absent", []porcupine.Operation{
			op(0, 1, Input{Kind: OpCASRev, Key: "a", Value: "x", Rev: 2}, Output{Ok: true, Rev: 2}),
			op(2, 3, Input{Kind: OpCASRev, Key: "a", Value: "y"}, Output{Present: true, Value: "x", ModRev: 2, Rev: 2}),
		}, porcupine.Ok},
		{"unknown cas applies only if it matched", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, Unfinished, Input{Kind: OpCASVal, Key: "a", Expect: "w", Value: "y", Rev: 3}, unknown()),
			op(4, 5, get("a"), read("y", 3)),
		}, porcupine.Illegal},
		{"unknown delete", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, Unfinished, Input{Kind: OpDelete, Key: "a"}, unknown()),
			op(4, 5, get("a"), read("x", 2)),
			op(6, 7, get("a"), absent()),
		}, porcupine.Ok},
		{"keys are independent", []porcupine.Operation{
			op(0, 1, put("a", "x", 2), ok(2)),
			op(2, 3, put("b", "y", 3), ok(3)),
			op(4, 5, get("a"), read("x", 2)),
			op(4, 5, get("b"), read("y", 3)),
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(Model, tc.ops, 10*time.Second); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		in   Input
		out  Output
		want string
	}{
		{get("a"), read("x", 2), `get(a) -> "x" @2`},
		{put("a", "x", 0), unknown(), `put(a, "x") -> unknown`},
		{Input{Kind: OpCASRev, Key: "a", Value: "y"}, Output{Ok: true, Rev: 4}, `cas(a, absent, "y") -> ok @4`},
		{Input{Kind: OpCASVal, Key: "a", Expect: "x", Value: "y"}, absent(), `cas(a, value=="x", "y") -> failed, read absent`},
	} {
		if got := describe(tc.in, tc.out); got != tc.want {
			t.Errorf("describe = %s, want %s", got, tc.want)
		}
	}
}
