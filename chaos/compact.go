package chaos

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// compactor compacts the history every so often to the oldest revision
// every watcher has received, as operators (and Kubernetes) compact behind
// the current revision while watches run. A watcher resumes from the
// revision after the last one it received, so it never needs a compacted
// one; the compactions land right behind the writes, often in the raft
// batch of the writes they compact. Every other compaction is physical.
type compactor struct {
	cli      *clientv3.Client
	watchers []*Watcher
	every    time.Duration
	timeout  time.Duration
}

// run compacts until ctx ends and returns how many compactions succeeded
// and the revision of the last. Failures (no leader during a fault, a
// revision compacted already) are expected and ignored: the checks at the
// end find any harm a compaction did.
func (cp *compactor) run(ctx context.Context) (n int, last int64) {
	t := time.NewTicker(cp.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return n, last
		case <-t.C:
		}
		rev := int64(-1)
		for _, w := range cp.watchers {
			if s := w.Seen(); rev < 0 || s < rev {
				rev = s
			}
		}
		if rev <= last {
			continue
		}
		var opts []clientv3.CompactOption
		if n%2 == 1 {
			opts = append(opts, clientv3.WithCompactPhysical())
		}
		cctx, cancel := context.WithTimeout(ctx, cp.timeout)
		_, err := cp.cli.Compact(cctx, rev, opts...)
		cancel()
		if err == nil {
			n, last = n+1, rev
		}
	}
}
