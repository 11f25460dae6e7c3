package e2e

// Disk faults: a member whose writes fail (injected through the
// METCD_FAILPOINTS failpoints of internal/failpoint) or whose data dir is
// on a full file system must stop with a message saying why, never
// acknowledge a write it did not make durable, and leave the others
// serving. The helpers here (environment for a member, acknowledged-write
// bookkeeping, HashKV comparison, copying a data dir) are also used by
// corrupt_test.go.

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// faultElection makes elections quick, so the tests spend little time
// without a leader.
var faultElection = []string{"--heartbeat-interval", "50", "--election-timeout", "500"}

// startWithEnv starts member i as Start does (the flags of its first
// start, computed now if it never ran), with env added to the process
// environment. Restart and Start later run it without env.
func startWithEnv(c *Cluster, i int, env ...string) {
	c.t.Helper()
	c.Members[i].Env = env
	defer func() { c.Members[i].Env = nil }()
	c.Start(i)
}

// faultClient is a clientv3 client on the given members, closed in
// t.Cleanup.
func faultClient(t testing.TB, c *Cluster, idx ...int) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, i := range idx {
		eps = append(eps, fmt.Sprintf("127.0.0.1:%d", c.Members[i].ClientPort))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", eps, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// faultHashKVEqual waits until every given member answers HashKV at the
// revision member ref is at now, and fails the test unless all hashes are
// equal. It returns that revision.
func faultHashKVEqual(t *testing.T, c *Cluster, ref int, idx ...int) int64 {
	t.Helper()
	refCli := faultClient(t, c, ref)
	var rev int64
	c.Eventually(20*time.Second, "a linearizable read for the current revision", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := refCli.Get(ctx, "fault/hash-probe")
		if err != nil {
			return err
		}
		rev = r.Header.Revision
		return nil
	})
	hashes := map[uint64]uint32{}
	for _, i := range idx {
		m := c.Members[i]
		cli := faultClient(t, c, i)
		ep := fmt.Sprintf("127.0.0.1:%d", m.ClientPort)
		c.Eventually(30*time.Second, fmt.Sprintf("HashKV(%d) on member %d", rev, m.ID), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h, err := cli.HashKV(ctx, ep, rev)
			if err != nil {
				return err
			}
			if h.HashRevision != rev {
				return fmt.Errorf("hash revision %d", h.HashRevision)
			}
			hashes[m.ID] = h.Hash
			return nil
		})
	}
	var first uint32
	for n, i := range idx {
		h := hashes[c.Members[i].ID]
		if n == 0 {
			first = h
		} else if h != first {
			t.Fatalf("HashKV at revision %d differs between members: %v (member id: hash)", rev, hashes)
		}
	}
	t.Logf("HashKV at revision %d equal on members %v: %x", rev, c.ids(idx), first)
	return rev
}

// ackLog records writes: those a member acknowledged (204) and every one
// attempted, so that a test can check that nothing acknowledged is lost and
// that writes with an unknown outcome are either absent or whole.
type ackLog struct {
	mu        sync.Mutex
	acked     map[string]string
	attempted map[string]string
	byMember  map[int]map[string]string // acknowledged, by the member that answered
	failed    map[int]int               // writes not acknowledged, by member
}

func newAckLog() *ackLog {
	return &ackLog{acked: map[string]string{}, attempted: map[string]string{}, byMember: map[int]map[string]string{}, failed: map[int]int{}}
}

// put writes key=val through member i and records the outcome; it reports
// whether the write was acknowledged.
func (a *ackLog) put(c *Cluster, i int, key, val string) bool {
	a.mu.Lock()
	a.attempted[key] = val
	a.mu.Unlock()
	r, err := c.Put(i, key, []byte(val))
	if err != nil || r.Code != http.StatusNoContent {
		a.mu.Lock()
		a.failed[i]++
		a.mu.Unlock()
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked[key] = val
	if a.byMember[i] == nil {
		a.byMember[i] = map[string]string{}
	}
	a.byMember[i][key] = val
	return true
}

// mustPut is put that fails the test unless the write is acknowledged.
func (a *ackLog) mustPut(t *testing.T, c *Cluster, i int, key, val string) {
	t.Helper()
	if !a.put(c, i, key, val) {
		r, err := c.Get(i, key)
		t.Fatalf("PUT %q through member %d was not acknowledged (GET now: %v %v)", key, c.Members[i].ID, r, err)
	}
}

// snapshot returns copies of the acknowledged and the unknown writes, and
// the writes member i acknowledged.
func (a *ackLog) snapshot(i int) (acked, unknown, byMember map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acked, unknown, byMember = map[string]string{}, map[string]string{}, map[string]string{}
	for k, v := range a.acked {
		acked[k] = v
	}
	for k, v := range a.attempted {
		if _, ok := a.acked[k]; !ok {
			unknown[k] = v
		}
	}
	for k, v := range a.byMember[i] {
		byMember[k] = v
	}
	return acked, unknown, byMember
}

// ackedBytes is the size of the acknowledged values.
func (a *ackLog) ackedBytes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, v := range a.acked {
		n += int64(len(v))
	}
	return n
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// checkUnknown fails the test unless each write whose outcome the client
// did not learn reads back (linearizably, through member i) as absent or
// with its value.
func checkUnknown(t *testing.T, c *Cluster, i int, unknown map[string]string) {
	t.Helper()
	applied := 0
	for k, v := range unknown {
		r, err := c.Get(i, k)
		if err != nil || !(r.Code == http.StatusNotFound || (r.Code == http.StatusOK && r.Body == v)) {
			t.Errorf("write %q with unknown outcome: GET on member %d = %v %v, want 404 or 200 with its value", k, c.Members[i].ID, r, err)
		}
		if err == nil && r.Code == http.StatusOK {
			applied++
		}
	}
	t.Logf("%d writes with unknown outcome: %d applied after all, %d not", len(unknown), applied, len(unknown)-applied)
}

// writers runs one writer per given member, each putting its own keys
// (prefix/w<id>/<n>) in a loop until stop is called.
type writers struct {
	stopc chan struct{}
	wg    sync.WaitGroup
}

func startWriters(c *Cluster, log *ackLog, prefix string, valueSize int, idx ...int) *writers {
	w := &writers{stopc: make(chan struct{})}
	for _, i := range idx {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			for n := 0; ; n++ {
				select {
				case <-w.stopc:
					return
				default:
				}
				key := fmt.Sprintf("%s/w%d/%05d", prefix, c.Members[i].ID, n)
				if !log.put(c, i, key, faultValue(rng, key, valueSize)) {
					select {
					case <-w.stopc:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
	}
	return w
}

func (w *writers) stop() {
	close(w.stopc)
	w.wg.Wait()
}

// faultValue is key, then random letters up to size bytes.
func faultValue(rng *rand.Rand, key string, size int) string {
	b := make([]byte, max(size, len(key)+1))
	n := copy(b, key+"=")
	for i := n; i < len(b); i++ {
		b[i] = 'a' + byte(rng.Intn(26))
	}
	return string(b)
}

// waitExitFailed waits for member i to exit by itself and fails the test
// unless it exits non-zero. It returns the member's log.
func waitExitFailed(t *testing.T, c *Cluster, i int, d time.Duration, why string) string {
	t.Helper()
	code, err := c.WaitExit(i, d)
	if err != nil {
		t.Fatalf("%s: %v", why, err)
	}
	if code == 0 {
		t.Fatalf("%s: member %d exited with code 0, want non-zero", why, c.Members[i].ID)
	}
	t.Logf("member %d exited with code %d", c.Members[i].ID, code)
	return c.Log(i)
}

// logHas fails the test unless member i's log (output of its last start)
// contains every one of wants.
func logHas(t *testing.T, c *Cluster, i int, wants ...string) {
	t.Helper()
	log := lastStart(c.Log(i))
	for _, w := range wants {
		if !strings.Contains(log, w) {
			t.Errorf("member %d's log does not say %q; its tail:\n%s", c.Members[i].ID, w, strings.Join(tailLines(log, 25), "\n"))
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "metcd: ") || strings.HasPrefix(l, "panic: ") {
			t.Logf("member %d said: %s", c.Members[i].ID, l)
		}
	}
}

// lastStart cuts a member log to the output of its last start.
func lastStart(log string) string {
	if i := strings.LastIndex(log, "=== e2e: start #"); i >= 0 {
		return log[i:]
	}
	return log
}

// TestDiskFaultFailpoint arms a write failpoint on one member of three
// (each member's failpoint fires only once its trigger file exists, so the
// role is chosen after the election): the WAL append (wal-save) or the
// engine commit (engine-commit), on a follower and on the leader. The
// member must stop with a non-zero exit and say why; writes keep
// succeeding through the other two; no acknowledged write is lost; and
// restarted without the failpoint the member catches up to the same
// HashKV.
func TestDiskFaultFailpoint(t *testing.T) {
	for _, tc := range []struct {
		point, role string
		// stopped is what the member logs when it stops.
		stopped string
	}{
		{"wal-save", "follower", "raft loop stopped: cannot persist"},
		{"wal-save", "leader", "raft loop stopped: cannot persist"},
		{"engine-commit", "follower", "apply failed; stopping member"},
		{"engine-commit", "leader", "apply failed; stopping member"},
	} {
		t.Run(tc.point+"/"+tc.role, func(t *testing.T) {
			c := NewStoppedCluster(t, Options{Size: 3, Extra: faultElection})
			trigger := make([]string, 3)
			for i := range c.Members {
				trigger[i] = filepath.Join(c.Dir, fmt.Sprintf("failpoint-member-%d", c.Members[i].ID))
				startWithEnv(c, i, fmt.Sprintf("METCD_FAILPOINTS=%s=file(%s)error", tc.point, trigger[i]))
			}
			c.WaitReady(30 * time.Second)
			log := newAckLog()
			for k := range 20 {
				log.mustPut(t, c, k%3, fmt.Sprintf("fp/before/%02d", k), fmt.Sprintf("v%d", k))
			}

			li := c.WaitLeader(10 * time.Second)
			victim := li
			if tc.role == "follower" {
				victim = others(3, li)[0]
			}
			surv := others(3, victim)
			vid := c.Members[victim].ID
			t.Logf("arming %s on member %d (%s)", tc.point, vid, tc.role)

			w := startWriters(c, log, "fp/during", 100, 0, 1, 2)
			c.Eventually(20*time.Second, "writers get going", func() error {
				if n := log.count(); n < 50 {
					return fmt.Errorf("%d writes acknowledged", n)
				}
				return nil
			})
			if err := os.WriteFile(trigger[victim], nil, 0o644); err != nil {
				t.Fatal(err)
			}
			waitExitFailed(t, c, victim, 30*time.Second, "member whose "+tc.point+" fails")
			logHas(t, c, victim,
				"failpoint "+tc.point+": injected I/O error (ENOSPC)",
				tc.stopped,
				"metcd: member stopped:")

			// The other two go on: a leader among them, and writes through
			// both are acknowledged.
			if tc.role == "leader" {
				c.WaitNewLeader(20*time.Second, victim, surv...)
			} else {
				c.WaitLeader(20*time.Second, surv...)
			}
			for k := range 20 {
				log.mustPut(t, c, surv[k%2], fmt.Sprintf("fp/after/%02d", k), fmt.Sprintf("a%d", k))
			}
			w.stop()
			acked, unknown, _ := log.snapshot(victim)
			log.mu.Lock()
			t.Logf("%d writes acknowledged, %d with unknown outcome; writes not acknowledged through members %d, %d, %d: %d, %d, %d",
				len(acked), len(unknown), c.Members[0].ID, c.Members[1].ID, c.Members[2].ID, log.failed[0], log.failed[1], log.failed[2])
			log.mu.Unlock()
			checkAll(t, c, surv[0], acked)
			checkUnknown(t, c, surv[1], unknown)

			// Without the failpoint the member comes back, catches up and
			// holds the same key space.
			os.Remove(trigger[victim])
			c.Restart(victim)
			nl := c.WaitLeader(30 * time.Second)
			c.WaitCaughtUp(victim, nl, 30*time.Second)
			c.Eventually(30*time.Second, "restarted member has every acknowledged write", func() error {
				return serializableHasAll(c, victim, acked)
			})
			faultHashKVEqual(t, c, nl, 0, 1, 2)
			log.mustPut(t, c, victim, "fp/back", "yes")
			c.MustGet(surv[0], "fp/back", "yes")
		})
	}
}

// TestDiskFaultSnapshotSave arms state-save (the memory engine's state
// stream) and snap-save (the raft snapshot file) on one member, from its
// start: its snapshots fail. That is not fatal, since the WAL still holds
// everything: the member logs each failure, keeps serving, and does not
// compact its log. Killed and restarted without the failpoints it rebuilds
// its state from the WAL alone and takes snapshots again.
func TestDiskFaultSnapshotSave(t *testing.T) {
	for _, tc := range []struct{ point, engine string }{
		{"state-save", "memory"},
		{"snap-save", "pebble"},
	} {
		t.Run(tc.point+"/"+tc.engine, func(t *testing.T) {
			c := NewStoppedCluster(t, Options{Size: 3, Extra: append([]string{"--snapshot-count", "20", "--engine", tc.engine}, faultElection...)})
			victim := 2
			for i := range c.Members {
				if i == victim {
					startWithEnv(c, i, "METCD_FAILPOINTS="+tc.point+"=error")
				} else {
					c.Start(i)
				}
			}
			c.WaitReady(30 * time.Second)
			log := newAckLog()
			for k := range 80 {
				log.mustPut(t, c, k%3, fmt.Sprintf("ss/%03d", k), snapValue(k))
			}
			li := c.WaitLeader(10 * time.Second)
			for i := range c.Members {
				c.WaitCaughtUp(i, li, 10*time.Second)
			}
			for _, i := range others(3, victim) {
				waitSnapshot(t, c, i, 10*time.Second)
			}
			// Nothing reached the disk. (With snap-save, raft's in-memory
			// log still records each snapshot, so /admin/status shows a
			// snapshot_index that is not on disk.)
			snaps, _ := filepath.Glob(filepath.Join(c.Members[victim].DataDir, "member", "snap", "*.snap*"))
			if len(snaps) != 0 {
				t.Errorf("member %d wrote snapshot files with every snapshot save failing: %v", c.Members[victim].ID, snaps)
			}
			if s, err := c.Status(victim); err == nil {
				t.Logf("member %d with failing snapshots: snapshot_index %d, applied_index %d", c.Members[victim].ID, s.SnapshotIndex, s.AppliedIndex)
			}
			logHas(t, c, victim, "snapshot failed", "failpoint "+tc.point+": injected I/O error (ENOSPC)")

			acked, _, _ := log.snapshot(victim)
			c.Kill(victim)
			c.Restart(victim)
			c.Eventually(30*time.Second, "restarted member rebuilt every acknowledged write", func() error {
				return serializableHasAll(c, victim, acked)
			})
			for k := 80; k < 130; k++ {
				log.mustPut(t, c, k%3, fmt.Sprintf("ss/%03d", k), snapValue(k))
			}
			waitSnapshot(t, c, victim, 20*time.Second)
			faultHashKVEqual(t, c, li, 0, 1, 2)
		})
	}
}

// mountTmpfs mounts a tmpfs of the given size (mount(8) syntax) on dir, or
// skips the test when this process may not mount. The returned function
// unmounts it.
func mountTmpfs(t *testing.T, dir, size string) func() error {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs for a full-disk test (needs root or CAP_SYS_ADMIN): %v: %s; TestDiskFaultFailpoint covers failing writes", err, strings.TrimSpace(string(out)))
	}
	mounted := true
	return func() error {
		if !mounted {
			return nil
		}
		out, err := exec.Command("umount", dir).CombinedOutput()
		if err != nil {
			// A process still holds a file: detach it anyway.
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				return fmt.Errorf("umount %s: %v: %s; umount -l: %v: %s", dir, err, out, err2, out2)
			}
		}
		mounted = false
		return nil
	}
}

// copyDir copies the tree under src to dst (which must not exist), keeping
// file modes. It leaves out the WAL's preallocated spare segments
// (member/wal/*.tmp, 64 MB of zeros each), which the WAL makes again.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if filepath.Base(filepath.Dir(p)) == "wal" && strings.HasSuffix(p, ".tmp") {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// TestDiskFull runs one member of three with its data dir on a small tmpfs
// and writes until that file system is full. For the durable engines the
// engine's files fill the disk (the WAL's 64 MB segments are preallocated,
// the current one and, in the background, the next: the tmpfs leaves
// ~16 MB after both); for the memory engine only the WAL grows, and it
// runs out when it needs a segment the disk has no room for. The member
// must stop with a non-zero exit and a log saying the disk is full, never
// acknowledge a write it could not keep, and the other two keep serving.
// Then its data dir is copied to a bigger disk: restarted alone it holds
// every write it acknowledged, and with the others back it catches up to
// the same HashKV.
//
// A member that is still running after the cluster has written several
// times what its disk can hold has hung (as pebble did when a memtable
// flush failed before a WAL write did, stalling every commit, before
// storage/pebble made such a background error fatal): the test fails.
//
// It needs to mount a tmpfs (root or CAP_SYS_ADMIN) and skips otherwise.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		engine    string
		size      string
		valueSize int
		// giveUp: bytes acknowledged by the cluster after which a member
		// still running has not stopped (several times what it can hold).
		giveUp  int64
		wantLog string
	}{
		{"pebble", "144m", 256 << 10, 64 << 20, "no space left on device"},
		{"bolt", "144m", 256 << 10, 64 << 20, "no space left on device"},
		{"leveldb", "144m", 256 << 10, 64 << 20, "no space left on device"},
		{"memory", "100m", 1000 << 10, 256 << 20, "consensus: save to WAL: no space left on device"},
	} {
		t.Run(tc.engine, func(t *testing.T) {
			c := NewStoppedCluster(t, Options{Size: 3, Extra: append([]string{"--engine", tc.engine}, faultElection...)})
			victim := 2
			vm := c.Members[victim]
			umount := mountTmpfs(t, vm.DataDir, tc.size)
			t.Cleanup(func() {
				c.killQuiet(vm)
				if err := umount(); err != nil {
					t.Error(err)
				}
			})
			for i := range c.Members {
				c.Start(i)
			}
			li := c.WaitReady(30 * time.Second)
			if li == victim {
				// The full disk is a follower's: move leadership away.
				cli := faultClient(t, c, li)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.MoveLeader(ctx, c.Members[0].ID)
				cancel()
				if err != nil {
					t.Fatalf("MoveLeader to member 1: %v", err)
				}
				c.WaitNewLeader(20*time.Second, victim)
			}
			healthy := others(3, victim)
			log := newAckLog()
			for k := range 10 {
				log.mustPut(t, c, k%3, fmt.Sprintf("full/before/%02d", k), fmt.Sprintf("v%d", k))
			}

			// One writer through the member on the full disk (it must never
			// acknowledge a write it could not keep), one through a healthy
			// one; every write lands on the full disk too.
			w := startWriters(c, log, "full/big", tc.valueSize, victim, healthy[0])
			hung := false
			Eventually(t, 5*time.Minute, fmt.Sprintf("member %d stops on a full disk, or the cluster writes %d MB", vm.ID, tc.giveUp>>20), func() error {
				c.checkAlive(healthy)
				if !vm.Running() {
					return nil
				}
				if b := log.ackedBytes(); b < tc.giveUp {
					return fmt.Errorf("member %d still running; %d MB acknowledged", vm.ID, b>>20)
				}
				hung = true
				return nil
			})
			out, _ := exec.Command("df", "-h", vm.DataDir).CombinedOutput()
			if hung {
				lines := tailLines(lastStart(c.Log(victim)), 3)
				t.Errorf("member %d (%s) on a full disk neither stopped nor failed after the cluster acknowledged %d MB: it hangs (writes through it time out); last log lines:\n%s\n%s",
					vm.ID, tc.engine, log.ackedBytes()>>20, strings.Join(lines, "\n"), out)
				c.Kill(victim)
			} else {
				waitExitFailed(t, c, victim, 10*time.Second, "member on a full disk")
				logHas(t, c, victim, tc.wantLog)
				t.Logf("member %d stopped on a full disk:\n%s", vm.ID, out)
			}

			// The others keep serving.
			c.WaitLeader(20*time.Second, healthy...)
			for k := range 10 {
				log.mustPut(t, c, healthy[k%2], fmt.Sprintf("full/after/%02d", k), fmt.Sprintf("a%d", k))
			}
			w.stop()
			acked, unknown, byVictim := log.snapshot(victim)
			t.Logf("%d writes acknowledged (%d by member %d), %d with unknown outcome", len(acked), len(byVictim), vm.ID, len(unknown))
			if len(byVictim) == 0 {
				t.Errorf("member %d acknowledged no write before its disk was full", vm.ID)
			}
			checkAll(t, c, healthy[0], acked)
			checkUnknown(t, c, healthy[1], unknown)

			// Move the data dir to a bigger disk, as an operator would.
			moved := vm.DataDir + ".moved"
			if err := copyDir(vm.DataDir, moved); err != nil {
				t.Fatalf("copying the data dir off the full disk: %v", err)
			}
			if err := umount(); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(vm.DataDir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(moved, vm.DataDir); err != nil {
				t.Fatal(err)
			}

			// Alone (no quorum, so nothing new reaches it), it has every
			// write it acknowledged.
			for _, i := range healthy {
				c.StopClean(i)
			}
			c.Restart(victim)
			c.Eventually(30*time.Second, fmt.Sprintf("member %d restarted alone has every write it acknowledged", vm.ID), func() error {
				return serializableHasAll(c, victim, byVictim)
			})
			for _, i := range healthy {
				c.Restart(i)
			}
			li = c.WaitReady(30 * time.Second)
			c.WaitCaughtUp(victim, li, 30*time.Second)
			c.Eventually(30*time.Second, "every acknowledged write on the moved member", func() error {
				return serializableHasAll(c, victim, acked)
			})
			checkAll(t, c, victim, acked)
			faultHashKVEqual(t, c, li, 0, 1, 2)
		})
	}
}
