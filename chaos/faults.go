package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// FaultKind names a fault the harness injects.
type FaultKind string

const (
	// Processes.
	FaultKill         FaultKind = "kill"          // SIGKILL a random member, restart it
	FaultKillLeader   FaultKind = "kill-leader"   // SIGKILL the leader, restart it
	FaultKillMajority FaultKind = "kill-majority" // SIGKILL a majority at once, restart them
	FaultKillAll      FaultKind = "kill-all"      // SIGKILL every member at once, restart them
	FaultPause        FaultKind = "pause"         // SIGSTOP a member (the leader half the time), then SIGCONT
	// Network (the peer proxies).
	FaultIsolateLeader FaultKind = "isolate-leader" // cut the leader from every other member (connections refused)
	FaultSplit         FaultKind = "split"          // random minority | majority partition (refused or blackholed)
	FaultBlackhole     FaultKind = "blackhole"      // one member's links hold every byte (packets silently dropped)
	FaultDrop          FaultKind = "drop"           // one member's links reset connections at random (lossy)
	FaultDelay         FaultKind = "delay"          // latency with jitter on one member's links or on all links
	// Cluster operations.
	FaultMoveLeader FaultKind = "move-leader" // Maintenance.MoveLeader to a random follower
	FaultRemoveAdd  FaultKind = "remove-add"  // MemberRemove a follower, MemberAdd its URL back under a new id, start it fresh
)

// AllFaults lists every fault kind.
var AllFaults = []FaultKind{
	FaultKill, FaultKillLeader, FaultKillMajority, FaultKillAll, FaultPause,
	FaultIsolateLeader, FaultSplit, FaultBlackhole, FaultDrop, FaultDelay,
	FaultMoveLeader, FaultRemoveAdd,
}

// ParseFaults parses a comma-separated list of fault kinds ("all" or ""
// for every kind).
func ParseFaults(s string) ([]FaultKind, error) {
	if s == "" || s == "all" {
		return slices.Clone(AllFaults), nil
	}
	var out []FaultKind
	for _, f := range strings.Split(s, ",") {
		k := FaultKind(strings.TrimSpace(f))
		if !slices.Contains(AllFaults, k) {
			return nil, fmt.Errorf("unknown fault %q (known: %v)", k, AllFaults)
		}
		out = append(out, k)
	}
	return out, nil
}

// FaultRecord is one injected fault, for the report.
type FaultRecord struct {
	Kind  FaultKind     `json:"kind"`
	Desc  string        `json:"desc"`
	Start time.Duration `json:"start"` // since the start of the run
	Heal  time.Duration `json:"heal"`
	Ready time.Duration `json:"ready"` // when the cluster was healthy again
	Err   string        `json:"err,omitempty"`
}

// injector injects faults into a cluster.
type injector struct {
	c     *Cluster
	rng   *rand.Rand
	admin *clientv3.Client // on every endpoint
	logf  func(string, ...any)
}

// leaderOrRandom returns the agreed leader's slot, or a random slot if
// there is none right now.
func (f *injector) leaderOrRandom(ctx context.Context) int {
	if li, err := f.c.WaitLeader(ctx, 5*time.Second); err == nil {
		return li
	}
	return f.rng.Intn(len(f.c.Slots))
}

func (f *injector) others(except ...int) []int {
	var out []int
	for i := range f.c.Slots {
		if !slices.Contains(except, i) {
			out = append(out, i)
		}
	}
	return out
}

func (f *injector) ids(slots []int) []uint64 {
	ids := make([]uint64, len(slots))
	for k, i := range slots {
		ids[k] = f.c.ID(i)
	}
	return ids
}

// inject starts a fault and returns its description and the function
// that heals it.
func (f *injector) inject(ctx context.Context, kind FaultKind) (string, func() error, error) {
	c := f.c
	n := len(c.Slots)
	restart := func(slots []int) func() error {
		return func() error {
			for _, i := range slots {
				if err := c.Start(i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	kill := func(slots []int) error { return c.KillAll(slots) }
	switch kind {
	case FaultKill, FaultKillLeader:
		i := f.rng.Intn(n)
		if kind == FaultKillLeader {
			i = f.leaderOrRandom(ctx)
		}
		desc := fmt.Sprintf("SIGKILL member %d (slot %d)", c.ID(i), i)
		return desc, restart([]int{i}), kill([]int{i})
	case FaultKillMajority:
		slots := f.rng.Perm(n)[:n/2+1]
		desc := fmt.Sprintf("SIGKILL members %v", f.ids(slots))
		return desc, restart(slots), kill(slots)
	case FaultKillAll:
		slots := f.rng.Perm(n)
		desc := fmt.Sprintf("SIGKILL all members %v", f.ids(slots))
		return desc, restart(slots), kill(slots)
	case FaultPause:
		i := f.rng.Intn(n)
		what := "member"
		if f.rng.Intn(2) == 0 {
			i, what = f.leaderOrRandom(ctx), "leader"
		}
		c.Pause(i)
		return fmt.Sprintf("SIGSTOP %s %d (slot %d)", what, c.ID(i), i), func() error { c.Resume(i); return nil }, nil
	case FaultIsolateLeader:
		i := f.leaderOrRandom(ctx)
		c.Net.Partition(LinkRule{Mode: LinkRefuse}, []int{i}, f.others(i))
		return fmt.Sprintf("isolate leader %d (slot %d), connections refused", c.ID(i), i), f.heal, nil
	case FaultSplit:
		perm := f.rng.Perm(n)
		minority, majority := perm[:(n-1)/2], perm[(n-1)/2:]
		mode := LinkRefuse
		if f.rng.Intn(2) == 0 {
			mode = LinkBlackhole
		}
		c.Net.Partition(LinkRule{Mode: mode}, minority, majority)
		return fmt.Sprintf("partition %v | %v (%s)", f.ids(minority), f.ids(majority), mode), f.heal, nil
	case FaultBlackhole:
		i := f.rng.Intn(n)
		if f.rng.Intn(2) == 0 {
			i = f.leaderOrRandom(ctx)
		}
		c.Net.Partition(LinkRule{Mode: LinkBlackhole}, []int{i}, f.others(i))
		return fmt.Sprintf("blackhole member %d (slot %d)", c.ID(i), i), f.heal, nil
	case FaultDrop:
		i := f.rng.Intn(n)
		rate := 0.2 + 0.4*f.rng.Float64()
		for _, j := range f.others(i) {
			c.Net.SetLink(i, j, LinkRule{DropRate: rate})
		}
		return fmt.Sprintf("lossy links of member %d (slot %d), reset rate %.2f per %v", c.ID(i), i, rate, dropInterval), f.heal, nil
	case FaultDelay:
		delay := time.Duration(20+f.rng.Intn(230)) * time.Millisecond
		jitter := time.Duration(f.rng.Intn(60)) * time.Millisecond
		rule := LinkRule{Delay: delay, Jitter: jitter}
		if f.rng.Intn(3) == 0 {
			for a := range n {
				for b := a + 1; b < n; b++ {
					c.Net.SetLink(a, b, rule)
				}
			}
			return fmt.Sprintf("delay %v+%v on every link", delay, jitter), f.heal, nil
		}
		i := f.rng.Intn(n)
		for _, j := range f.others(i) {
			c.Net.SetLink(i, j, rule)
		}
		return fmt.Sprintf("delay %v+%v on the links of member %d (slot %d)", delay, jitter, c.ID(i), i), f.heal, nil
	case FaultMoveLeader:
		li, err := c.WaitLeader(ctx, 10*time.Second)
		if err != nil {
			return "move-leader: no leader", noop, err
		}
		others := f.others(li)
		to := others[f.rng.Intn(len(others))]
		desc := fmt.Sprintf("move leader %d -> %d", c.ID(li), c.ID(to))
		cli, err := newClient([]string{c.Slots[li].Endpoint})
		if err != nil {
			return desc, noop, err
		}
		defer cli.Close()
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = cli.MoveLeader(mctx, c.ID(to))
		if err != nil {
			// A leader change under way can make it fail; that is not a
			// safety problem, only noted.
			return desc + " (failed: " + err.Error() + ")", noop, nil
		}
		return desc, noop, nil
	case FaultRemoveAdd:
		li, err := c.WaitLeader(ctx, 10*time.Second)
		if err != nil {
			return "remove-add: no leader", noop, err
		}
		others := f.others(li)
		i := others[f.rng.Intn(len(others))]
		old := c.ID(i)
		id, err := c.ReplaceMember(ctx, f.admin, i)
		desc := fmt.Sprintf("remove member %d (slot %d), add %s back as member %d, start it with --join", old, i, c.Slots[i].PeerURL, id)
		return desc, noop, err
	}
	return "", noop, fmt.Errorf("unknown fault %q", kind)
}

func (f *injector) heal() error {
	f.c.Net.Heal()
	return nil
}

func noop() error { return nil }

// quick reports whether a fault is over as soon as it is injected (there
// is nothing to hold).
func quick(k FaultKind) bool { return k == FaultMoveLeader || k == FaultRemoveAdd }
