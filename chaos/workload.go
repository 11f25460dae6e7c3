package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Unfinished is the Return time of an operation whose outcome is unknown:
// it may take effect at any time after its call (Jepsen's "info").
const Unfinished = math.MaxInt64

// Record is one operation of the history.
type Record struct {
	Worker   int    `json:"worker"`   // the client goroutine, -1 for the final reads
	Proc     int    `json:"proc"`     // porcupine client id: a worker takes a new one after an unknown outcome
	Endpoint string `json:"endpoint"` // the member it talked to, "*" for a client on every endpoint
	In       Input  `json:"in"`
	Out      Output `json:"out"`
	Call     int64  `json:"call"`   // ns since the start of the run
	Return   int64  `json:"return"` // ns since the start; Unfinished if unknown
	// Failed: a definite failure (the server guarantees that nothing was
	// written, or a read that returned nothing). Not checked.
	Failed bool `json:"failed,omitempty"`
}

// History collects records from concurrent clients.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Record
	procs int
}

// NewHistory starts the history's clock.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the time since the start, in ns (monotonic).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

func (h *History) newProc() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.procs
	h.procs++
	return p
}

func (h *History) add(r Record) {
	h.mu.Lock()
	h.ops = append(h.ops, r)
	h.mu.Unlock()
}

// Records returns a copy of the history.
func (h *History) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.ops...)
}

// Keys returns the workload's keys.
func Keys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%d", prefix, i)
	}
	return keys
}

// newClient opens a clientv3 client on the given endpoints that does not
// log.
func newClient(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
	})
}

// worker issues random operations on a small key set and records them.
type worker struct {
	id        int
	endpoint  string
	cli       *clientv3.Client
	rng       *rand.Rand
	h         *History
	keys      []string
	think     time.Duration
	opTimeout time.Duration
	seq       int
	proc      int
	last      map[string]Output // the last value this worker read per key
	// serializable makes reads serializable: a self-test of the checker
	// (stale reads from a partitioned member must be caught).
	serializable bool
	stats        *statsCounter
}

func (w *worker) run(ctx context.Context) {
	w.proc = w.h.newProc()
	w.last = map[string]Output{}
	for ctx.Err() == nil {
		r := w.once(ctx)
		pause := time.Duration(0)
		if w.think > 0 {
			pause = time.Duration(w.rng.Int63n(int64(2 * w.think)))
		}
		if r.Failed || r.Out.Unknown {
			// Do not spin on a member that is down.
			pause += 50*time.Millisecond + time.Duration(w.rng.Int63n(int64(150*time.Millisecond)))
		}
		sleepCtx(ctx, pause)
	}
}

func (w *worker) nextValue() string {
	w.seq++
	return fmt.Sprintf("w%d-%d", w.id, w.seq)
}

// once runs one random operation and records it.
func (w *worker) once(ctx context.Context) Record {
	key := w.keys[w.rng.Intn(len(w.keys))]
	in := Input{Key: key}
	switch x := w.rng.Intn(100); {
	case x < 35:
		in.Kind = OpGet
	case x < 60:
		in.Kind, in.Value = OpPut, w.nextValue()
	case x < 70:
		in.Kind = OpDelete
	default:
		in.Value = w.nextValue()
		last, ok := w.last[key]
		switch {
		case !ok || !last.Present:
			in.Kind, in.ExpectRev = OpCASRev, 0
		case x < 85:
			in.Kind, in.Expect = OpCASVal, last.Value
		default:
			in.Kind, in.Expect, in.ExpectRev = OpCASRev, last.Value, last.ModRev
		}
	}
	rec := Record{Worker: w.id, Proc: w.proc, Endpoint: w.endpoint, In: in}
	// Operations in flight at the end of the run are cut short by ctx:
	// their outcome is unknown, which is what they are recorded as.
	octx, cancel := context.WithTimeout(ctx, w.opTimeout)
	rec.Call = w.h.Now()
	out, err := do(octx, w.cli, in, w.serializable)
	rec.Return = w.h.Now()
	cancel()
	rec.Out = out
	classify(&rec, err)
	if !rec.Failed && !rec.Out.Unknown {
		switch {
		case in.Kind == OpGet, (in.Kind == OpCASVal || in.Kind == OpCASRev) && !out.Ok:
			w.last[key] = out
		case in.Kind == OpPut, (in.Kind == OpCASVal || in.Kind == OpCASRev) && out.Ok:
			w.last[key] = Output{Present: true, Value: in.Value, ModRev: out.Rev}
		case in.Kind == OpDelete:
			w.last[key] = Output{}
		}
	}
	if rec.Out.Unknown {
		w.proc = w.h.newProc()
	}
	w.h.add(rec)
	w.stats.count(rec)
	return rec
}

// do runs one operation.
func do(ctx context.Context, cli *clientv3.Client, in Input, serializable bool) (Output, error) {
	var out Output
	switch in.Kind {
	case OpGet:
		var opts []clientv3.OpOption
		if serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
		resp, err := cli.Get(ctx, in.Key, opts...)
		if err != nil {
			return out, err
		}
		out.Rev = resp.Header.Revision
		if len(resp.Kvs) > 0 {
			out.Present, out.Value, out.ModRev = true, string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
		}
	case OpPut:
		resp, err := cli.Put(ctx, in.Key, in.Value)
		if err != nil {
			return out, err
		}
		out.Rev = resp.Header.Revision
	case OpDelete:
		resp, err := cli.Delete(ctx, in.Key)
		if err != nil {
			return out, err
		}
		out.Rev, out.Ok = resp.Header.Revision, resp.Deleted > 0
	case OpCASVal, OpCASRev:
		cmp := clientv3.Compare(clientv3.Value(in.Key), "=", in.Expect)
		if in.Kind == OpCASRev {
			cmp = clientv3.Compare(clientv3.ModRevision(in.Key), "=", in.ExpectRev)
		}
		resp, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(in.Key, in.Value)).Else(clientv3.OpGet(in.Key)).Commit()
		if err != nil {
			return out, err
		}
		out.Rev, out.Ok = resp.Header.Revision, resp.Succeeded
		if !resp.Succeeded {
			if len(resp.Responses) != 1 || resp.Responses[0].GetResponseRange() == nil {
				return out, fmt.Errorf("txn: unexpected else responses %v", resp.Responses)
			}
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				out.Present, out.Value, out.ModRev = true, string(kvs[0].Value), kvs[0].ModRevision
			}
		}
	default:
		return out, fmt.Errorf("unknown op %q", in.Kind)
	}
	return out, nil
}

// definiteErrors are the errors with which metcd promises that a write was
// not applied: "no leader" is returned only before the proposal reached
// raft (no leader known within the wait, or raft dropped the proposal
// locally); the others are refusals before proposing.
var definiteErrors = []error{
	rpctypes.ErrNoLeader,
	rpctypes.ErrRequestTooLarge,
	rpctypes.ErrNoSpace,
	rpctypes.ErrTooManyOps,
	rpctypes.ErrDuplicateKey,
}

// classify sets rec's outcome from err: nil is a definite answer; a read
// that failed is dropped (Failed); a write that failed is Failed when the
// error guarantees nothing was written, and Unknown (never returned)
// otherwise: timeouts, leader lost, connection lost mid-request, member
// stopped, anything else.
func classify(rec *Record, err error) {
	if err == nil {
		return
	}
	rec.Out.Err = err.Error()
	if rec.In.Kind == OpGet {
		rec.Failed = true
		return
	}
	if notSent(err) {
		rec.Failed = true
		return
	}
	for _, d := range definiteErrors {
		if errors.Is(err, d) || rpctypes.ErrorDesc(err) == d.Error() {
			rec.Failed = true
			return
		}
	}
	rec.Out = Output{Unknown: true, Err: err.Error()}
	rec.Return = Unfinished
}

// notSent reports whether gRPC failed the call before sending it: no
// connection to the member could be made (the picker fails the RPC with
// the dial error; a call on an established connection that breaks fails
// differently).
func notSent(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.Contains(msg, "Error while dialing") || strings.Contains(msg, "there is no connection available") ||
		strings.Contains(msg, "there is no address available")
}

// Stats counts operations by outcome.
type Stats struct {
	Total  int            `json:"total"`
	OK     int            `json:"ok"`
	Failed int            `json:"failed"`  // definite failures (and failed reads)
	Unkn   int            `json:"unknown"` // unknown outcomes
	ByKind map[OpKind]int `json:"by_kind"`
	Errors map[string]int `json:"errors"` // error texts (cut at 80 bytes) and how often
}

// statsCounter counts for concurrent clients.
type statsCounter struct {
	mu sync.Mutex
	s  Stats
}

func (c *statsCounter) count(r Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.s
	if s.ByKind == nil {
		s.ByKind = map[OpKind]int{}
		s.Errors = map[string]int{}
	}
	s.Total++
	s.ByKind[r.In.Kind]++
	switch {
	case r.Out.Unknown:
		s.Unkn++
	case r.Failed:
		s.Failed++
	default:
		s.OK++
	}
	if r.Out.Err != "" {
		e := r.Out.Err
		if len(e) > 80 {
			e = e[:80]
		}
		s.Errors[e]++
	}
}

// finalReads reads every key (linearizably, through cli) until each has
// one successful read, and records the reads in the history: they pin down
// what every acknowledged write left behind.
func finalReads(ctx context.Context, cli *clientv3.Client, h *History, keys []string) error {
	proc := h.newProc()
	for _, k := range keys {
		for attempt := 0; ; attempt++ {
			in := Input{Kind: OpGet, Key: k}
			rec := Record{Worker: -1, Proc: proc, Endpoint: "*", In: in}
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			rec.Call = h.Now()
			out, err := do(octx, cli, in, false)
			rec.Return = h.Now()
			cancel()
			if err == nil {
				rec.Out = out
				h.add(rec)
				break
			}
			if attempt >= 20 || ctx.Err() != nil {
				return fmt.Errorf("final read of %s: %w", k, err)
			}
			sleepCtx(ctx, 500*time.Millisecond)
		}
	}
	return nil
}
