// Package chaos runs a metcd cluster of real processes under faults and
// checks that it stays correct: linearizable, durable for everything it
// acknowledged, with complete and identical watch histories and identical
// key spaces on every member. cmd/metcd-chaos runs it from the command
// line; TestChaosShort is its CI form. docs/reliability.md describes each
// fault and the results of long runs.
//
// # Pieces
//
//   - proxy.go: Network and Proxy. Every member listens for peers on a
//     private port (--listen-peer-addr) while --cluster lists the proxies;
//     the proxy of slot i forwards to member i. Members all dial from
//     127.0.0.1, so a connection is attributed to its sender by the
//     X-Server-From header (the sender's member id in hex) that rafthttp
//     sets on every stream, pipeline and snapshot request; the proxy
//     parses requests until one carries it and then copies raw bytes. A
//     link (a pair of slots, both directions) can refuse (reset), blackhole
//     (hold bytes until healed), delay (with jitter) or drop (reset at
//     random) its connections.
//   - cluster.go: Cluster and Slot: building the binary, processes
//     (start, SIGKILL, SIGSTOP/SIGCONT), status, health, and replacing a
//     member (MemberRemove, then MemberAdd of the same peer URL under the
//     new id the cluster assigns, started with --join on an empty data dir).
//   - workload.go: clientv3 clients doing random Get (linearizable), Put,
//     Delete and compare-and-swap Txn (by value or by mod revision, with a
//     Get in the else branch) on a few keys, with unique values; every
//     operation is recorded with its call and return times. Errors that
//     guarantee nothing was written (no leader, request refused before it
//     was sent) are definite failures; every other error of a write is an
//     unknown outcome (return time Unfinished, as Jepsen's "info").
//   - watch.go: one watcher per member on the key prefix, from the start.
//   - compact.go: a compactor that compacts the history every second to
//     the oldest revision every watcher has received (every other one
//     physical), so compactions run through every fault right behind the
//     writes, and no watcher needs a compacted revision to resume.
//   - model.go: the porcupine model, per key, which also checks
//     revisions (a value's mod revision, and that a key's revisions grow).
//   - faults.go: the fault kinds and how each is injected and healed.
//   - check.go: the checks of a finished run.
//   - run.go: Run, which puts it together, and the Result.
package chaos
