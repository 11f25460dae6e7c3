// Command metcd-chaos runs a metcd cluster of real processes behind
// fault-injecting peer proxies, drives a random key-value workload through
// clientv3 while it kills, pauses, partitions, slows down and reconfigures
// the members, and checks the history: linearizability (porcupine), no
// lost acknowledged write, complete and identical watch histories, equal
// HashKV on every member. See docs/reliability.md.
//
//	go run ./cmd/metcd-chaos --duration 5m --engine pebble --seed 1
//
// It exits with status 1 if a run found a problem, printing the seed to
// replay and the folder with the history and porcupine's visualisation.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/metcd/metcd/chaos"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		o      chaos.Options
		faults string
		runs   int
		quiet  bool
	)
	flag.Int64Var(&o.Seed, "seed", 0, "seed of the fault schedule and the workload (0: from the clock; printed)")
	flag.DurationVar(&o.Duration, "duration", 5*time.Minute, "how long to inject faults (each listed kind is injected at least once)")
	flag.StringVar(&o.Engine, "engine", "pebble", "storage engine of every member: pebble, bolt, leveldb, memory")
	flag.IntVar(&o.Size, "members", 3, "cluster size (3 or 5)")
	flag.StringVar(&faults, "faults", "all", "comma-separated fault kinds to inject, or all: "+fmt.Sprint(chaos.AllFaults))
	flag.IntVar(&o.ClientsPerMember, "clients", 2, "clients connected to a single member, per member")
	flag.IntVar(&o.SharedClients, "shared-clients", 2, "clients connected to every member (-1: none)")
	flag.IntVar(&o.Keys, "keys", 8, "number of keys")
	flag.DurationVar(&o.Think, "think", 10*time.Millisecond, "mean pause between a client's operations")
	flag.DurationVar(&o.OpTimeout, "op-timeout", 3*time.Second, "deadline of one operation (past it, a write's outcome is unknown)")
	flag.DurationVar(&o.HoldMin, "hold-min", 1500*time.Millisecond, "shortest duration of a fault")
	flag.DurationVar(&o.HoldMax, "hold-max", 4*time.Second, "longest duration of a fault")
	flag.DurationVar(&o.CheckTimeout, "check-timeout", 5*time.Minute, "porcupine's time limit")
	flag.DurationVar(&o.RecoveryTimeout, "recovery-timeout", 90*time.Second, "how long the cluster may take to be healthy after a fault is healed")
	flag.DurationVar(&o.CompactEvery, "compact-every", time.Second, "how often to compact the history to the oldest revision every watcher has received (negative: never)")
	flag.IntVar(&o.SnapshotCount, "snapshot-count", 300, "--snapshot-count of the members")
	flag.IntVar(&o.HeartbeatMs, "heartbeat-interval", 50, "--heartbeat-interval of the members (ms)")
	flag.IntVar(&o.ElectionMs, "election-timeout", 500, "--election-timeout of the members (ms)")
	flag.Func("member-args", "more flags for every member, space-separated (e.g. \"--read-cache-keys 100\")", func(v string) error {
		o.MemberArgs = strings.Fields(v)
		return nil
	})
	flag.StringVar(&o.Binary, "bin", "", "metcd binary (default: go build ./cmd/metcd of this module)")
	flag.StringVar(&o.OutDir, "out", "", "folder for the histories of failing runs (default $TMPDIR/metcd-chaos)")
	flag.BoolVar(&o.KeepDir, "keep", false, "keep data dirs and logs of passing runs too")
	flag.BoolVar(&o.UnsafeSerializableReads, "unsafe-serializable-reads", false, "self-test of the checker: clients read serializably (stale reads), which must be reported as violations")
	flag.IntVar(&runs, "runs", 1, "runs, with seeds seed, seed+1, ...")
	flag.BoolVar(&quiet, "q", false, "print only the summary")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "metcd-chaos: unexpected arguments %v\n", flag.Args())
		return 2
	}
	var err error
	if o.Faults, err = chaos.ParseFaults(faults); err != nil {
		fmt.Fprintln(os.Stderr, "metcd-chaos:", err)
		return 2
	}
	if o.Seed == 0 {
		o.Seed = time.Now().UnixNano() % 1_000_000
	}
	lg := log.New(os.Stderr, "", 0)
	if !quiet {
		o.Logf = lg.Printf
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.Binary == "" {
		dir, err := os.MkdirTemp("", "metcd-chaos-bin-")
		if err != nil {
			lg.Println("metcd-chaos:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if o.Binary, err = chaos.BuildBinary(dir); err != nil {
			lg.Println("metcd-chaos:", err)
			return 1
		}
	}
	failed := 0
	for i := range runs {
		ro := o
		ro.Seed = o.Seed + int64(i)
		lg.Printf("metcd-chaos: run %d/%d: %s", i+1, runs, ro.ReplayCommand())
		res, err := chaos.Run(ctx, ro)
		if err != nil {
			lg.Printf("metcd-chaos: run with seed %d could not be carried out: %v", ro.Seed, err)
			return 1
		}
		fmt.Println(res.Summary())
		if !quiet {
			printBreakdown(res)
		}
		if err := res.Error(); err != nil {
			fmt.Println(err)
			failed++
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// printBreakdown prints the operations by kind and the errors the clients
// saw, most frequent first.
func printBreakdown(res *chaos.Result) {
	fmt.Print("operations:")
	kinds := make([]string, 0, len(res.Ops.ByKind))
	for k := range res.Ops.ByKind {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Printf(" %s %d", k, res.Ops.ByKind[chaos.OpKind(k)])
	}
	fmt.Println()
	type errCount struct {
		err string
		n   int
	}
	var errs []errCount
	for e, n := range res.Ops.Errors {
		errs = append(errs, errCount{e, n})
	}
	sort.Slice(errs, func(i, j int) bool {
		return errs[i].n > errs[j].n || errs[i].n == errs[j].n && errs[i].err < errs[j].err
	})
	for i, e := range errs {
		if i == 15 {
			break
		}
		fmt.Printf("  %6d  %s\n", e.n, e.err)
	}
}
