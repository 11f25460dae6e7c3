package difftest

import (
	"fmt"
	"math/rand/v2"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// Op is one generated request.
type Op struct {
	// Req is one of *pb.RangeRequest, *pb.PutRequest,
	// *pb.DeleteRangeRequest, *pb.TxnRequest or *pb.CompactionRequest.
	Req proto.Message
}

// Kind names the request: "range", "put", "delete", "txn" or "compact"
// ("" for anything else).
func (o Op) Kind() string {
	switch o.Req.(type) {
	case *pb.RangeRequest:
		return "range"
	case *pb.PutRequest:
		return "put"
	case *pb.DeleteRangeRequest:
		return "delete"
	case *pb.TxnRequest:
		return "txn"
	case *pb.CompactionRequest:
		return "compact"
	}
	return ""
}

// String is the kind and the request in protobuf text format.
func (o Op) String() string { return o.Kind() + " " + Text(o.Req) }

// Serializable reports whether etcd serves the request from the local
// state of the member it reaches, without raft (so that a follower may
// answer from an older revision): a range with serializable set, or a
// txn whose ops, in both branches, are all serializable ranges (a txn
// with no op at all included). This is etcd v3.7's rule.
func (o Op) Serializable() bool {
	switch r := o.Req.(type) {
	case *pb.RangeRequest:
		return r.GetSerializable()
	case *pb.TxnRequest:
		for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
			for _, op := range ops {
				if rr := op.GetRequestRange(); rr == nil || !rr.GetSerializable() {
					return false
				}
			}
		}
		return true
	}
	return false
}

// Options configure a Gen.
type Options struct {
	// Leases are lease IDs the caller has granted on every side; puts and
	// lease compares name them. Empty: DefaultLeases.
	Leases []int64
	// NoLease is a lease ID granted on no side (puts naming it fail with
	// ErrLeaseNotFound). 0: DefaultNoLease.
	NoLease int64
}

// DefaultLeases are the leases of Options without Leases.
var DefaultLeases = []int64{0x1000, 0x2000}

// DefaultNoLease is the NoLease of Options without one.
const DefaultNoLease = 0x3000

// Gen makes a seeded random sequence of KV requests over a small key set,
// covering every request field, invalid requests (refused by validation)
// included. It tracks the current and compacted revisions, as reported
// to Observe and ObserveRevision, to aim reads and compactions around
// them. The same seed and the same observations give the same sequence.
//
// Requests that etcd v3.7.3 handles non-deterministically or by crashing
// are not excluded by Next; see PanicsEtcd and Client.PanicsEtcd.
type Gen struct {
	rnd             *rand.Rand
	rev, compactRev int64
	keys            []string
	leases          []int64
	noLease         int64
	// dupFree is set for most top-level txns: dedupTxn drops the writes
	// that would make etcd refuse them as duplicates.
	dupFree bool
}

// NewGen returns a generator seeded with seed, for a store at revision 1
// that was never compacted.
func NewGen(seed uint64, opts Options) *Gen {
	g := &Gen{
		rnd:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		rev:        1,
		compactRev: -1,
		keys:       []string{"a", "a/1", "a/2", "a/3", "b", "b/1", "b/2", "c", "d", "e\x00", "e\x00\x01", "e\xff", "f"},
		leases:     slices.Clone(opts.Leases),
		noLease:    opts.NoLease,
	}
	if len(g.leases) == 0 {
		g.leases = slices.Clone(DefaultLeases)
	}
	if g.noLease == 0 {
		g.noLease = DefaultNoLease
	}
	return g
}

// Rand is the generator's random source. A caller that draws from it
// changes the requests that follow (deterministically).
func (g *Gen) Rand() *rand.Rand { return g.rnd }

// Rev is the highest revision observed (1 at first).
func (g *Gen) Rev() int64 { return g.rev }

// CompactRev is the revision of the last successful compaction observed
// (-1 if none).
func (g *Gen) CompactRev() int64 { return g.compactRev }

// Observe records the reference answer to op (etcd's): the header
// revision of a successful response, and a successful compaction.
func (g *Gen) Observe(op Op, resp proto.Message, err error) {
	if err != nil || isNilMsg(resp) {
		return
	}
	if c, ok := op.Req.(*pb.CompactionRequest); ok {
		g.compactRev = c.Revision
	}
	g.ObserveRevision(HeaderRevision(resp))
}

// ObserveRevision records a revision reached outside the generated
// requests (a lease revoke, for instance).
func (g *Gen) ObserveRevision(rev int64) { g.rev = max(g.rev, rev) }

// Next returns the next request: 30% puts, 12% deletes, 28% ranges, 28%
// txns (nested up to depth 2), 2% compactions.
func (g *Gen) Next() Op {
	g.dupFree = g.chance(0.7)
	switch x := g.rnd.IntN(100); {
	case x < 30:
		return Op{g.putReq()}
	case x < 42:
		return Op{g.deleteReq()}
	case x < 70:
		return Op{g.rangeReq()}
	case x < 98:
		return Op{g.txnReq(0)}
	default:
		// From just below the compacted revision to just above the
		// current one.
		base := max(g.compactRev, 0)
		rev := base - 1 + g.rnd.Int64N(g.rev-base+3)
		return Op{&pb.CompactionRequest{Revision: rev}}
	}
}

func (g *Gen) chance(p float64) bool { return g.rnd.Float64() < p }

func (g *Gen) key() []byte {
	switch {
	case g.chance(0.005):
		return nil // refused: empty key
	case g.chance(0.25):
		// A wider key set, so that ranges sort more than 12 pairs (below
		// that Go's sort.Sort is an insertion sort, stable by accident).
		return fmt.Appendf(nil, "w/%02d", g.rnd.IntN(30))
	}
	return []byte(g.keys[g.rnd.IntN(len(g.keys))])
}

func (g *Gen) value() []byte {
	n := g.rnd.IntN(4)
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = "xyz"[g.rnd.IntN(3)]
	}
	return b
}

// interval returns a key and range end: one key, a range (sometimes
// backwards), a prefix, from a key, or everything.
func (g *Gen) interval() ([]byte, []byte) {
	switch x := g.rnd.IntN(10); {
	case x < 4:
		return g.key(), nil
	case x < 6:
		return g.key(), g.key()
	case x < 8:
		p := []string{"a/", "b/", "e\x00", "e", "w/", "w/1"}[g.rnd.IntN(6)]
		end := []byte(p)
		end[len(end)-1]++
		return []byte(p), end
	case x < 9:
		return g.key(), []byte{0}
	default:
		return []byte{0}, []byte{0}
	}
}

// revision is 0 mostly, else around the live revisions, sometimes
// compacted, future or negative.
func (g *Gen) revision() int64 {
	if g.chance(0.6) {
		return 0
	}
	if g.chance(0.05) {
		return -1 - g.rnd.Int64N(2) // current for a range, compacted in a txn once compacted
	}
	lo := max(g.compactRev-2, -2)
	return lo + g.rnd.Int64N(g.rev+3-lo)
}

func (g *Gen) rangeReq() *pb.RangeRequest {
	k, end := g.interval()
	r := &pb.RangeRequest{Key: k, RangeEnd: end, Revision: g.revision()}
	r.Limit = []int64{0, 0, 0, 1, 2, 3, -1}[g.rnd.IntN(7)]
	if g.chance(0.5) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rnd.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.rnd.IntN(5))
		if g.chance(0.02) {
			r.SortTarget = 9
		}
		if g.chance(0.02) {
			r.SortOrder = 4
		}
	}
	r.KeysOnly = g.chance(0.2)
	r.CountOnly = g.chance(0.1)
	filter := func() int64 {
		if g.chance(0.85) {
			return 0
		}
		return g.rnd.Int64N(g.rev + 2)
	}
	r.MinModRevision, r.MaxModRevision = filter(), filter()
	r.MinCreateRevision, r.MaxCreateRevision = filter(), filter()
	r.Serializable = g.chance(0.3)
	return r
}

func (g *Gen) lease() int64 {
	switch x := g.rnd.IntN(20); {
	case x < 14:
		return 0
	case x < 19:
		return g.leases[x%len(g.leases)]
	default:
		return g.noLease
	}
}

func (g *Gen) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), Lease: g.lease(), PrevKv: g.chance(0.3)}
	if g.chance(0.1) {
		p.IgnoreValue = true
		if g.chance(0.8) {
			p.Value = nil
		}
	}
	if g.chance(0.1) {
		p.IgnoreLease = true
		if g.chance(0.8) {
			p.Lease = 0
		}
	}
	return p
}

func (g *Gen) deleteReq() *pb.DeleteRangeRequest {
	k, end := g.interval()
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: end, PrevKv: g.chance(0.4)}
}

func (g *Gen) compare() *pb.Compare {
	c := &pb.Compare{
		Key:    g.key(),
		Target: pb.Compare_CompareTarget(g.rnd.IntN(5)),
		Result: pb.Compare_CompareResult(g.rnd.IntN(4)),
	}
	if g.chance(0.2) {
		_, c.RangeEnd = g.interval()
	}
	target := c.Target
	if g.chance(0.1) {
		target = pb.Compare_CompareTarget(g.rnd.IntN(5)) // maybe mismatched
	}
	n := g.rnd.Int64N(g.rev + 2)
	switch {
	case g.chance(0.05):
		// no target union
	case target == pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case target == pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: n % 4}
	case target == pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	case target == pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case target == pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: g.lease()}
	}
	return c
}

func (g *Gen) txnReq(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for range g.rnd.IntN(3) {
		t.Compare = append(t.Compare, g.compare())
	}
	ops := func() []*pb.RequestOp {
		var ops []*pb.RequestOp
		for range g.rnd.IntN(4) {
			switch x := g.rnd.IntN(10); {
			case x < 3:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}})
			case x < 6:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}})
			case x < 8:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq()}})
			case x < 9 && depth < 2:
				ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}})
			default:
				if g.chance(0.05) {
					ops = append(ops, &pb.RequestOp{}) // refused: empty op
				}
			}
		}
		return ops
	}
	t.Success, t.Failure = ops(), ops()
	if depth > 0 && g.chance(0.3) {
		// The same key put in both branches: allowed.
		p := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: g.key(), Value: g.value()}}}
		t.Success = append(t.Success, p)
		t.Failure = append(t.Failure, proto.Clone(p).(*pb.RequestOp))
	}
	if depth == 0 && g.dupFree {
		dedupTxn(t)
	}
	return t
}

// dedupTxn drops the puts and deletes that would make etcd refuse the
// txn as a duplicate, most of the time: puts of a key already written and
// deletes touching a written key, over the whole tree.
func dedupTxn(t *pb.TxnRequest) {
	seen := map[string]bool{}
	var walk func(ops []*pb.RequestOp) []*pb.RequestOp
	walk = func(ops []*pb.RequestOp) []*pb.RequestOp {
		out := ops[:0]
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				if seen[string(v.RequestPut.Key)] {
					continue
				}
				seen[string(v.RequestPut.Key)] = true
			case *pb.RequestOp_RequestDeleteRange:
				if len(v.RequestDeleteRange.RangeEnd) != 0 {
					continue
				}
				if seen[string(v.RequestDeleteRange.Key)] {
					continue
				}
				seen[string(v.RequestDeleteRange.Key)] = true
			case *pb.RequestOp_RequestTxn:
				v.RequestTxn.Success = walk(v.RequestTxn.Success)
				v.RequestTxn.Failure = walk(v.RequestTxn.Failure)
			}
			out = append(out, op)
		}
		return out
	}
	t.Success = walk(t.Success)
	t.Failure = walk(t.Failure)
}
