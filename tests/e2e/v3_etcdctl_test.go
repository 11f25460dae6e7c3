package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdctl runs the real etcdctl (built from the version in go.mod)
// against a cluster.
type etcdctl struct {
	t   *testing.T
	bin string
	c   *Cluster
}

// buildEtcdctl builds go.etcd.io/etcd/etcdctl/v3 into dir.
func buildEtcdctl(t *testing.T, dir string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "etcdctl")
	cmd := exec.Command("go", "build", "-o", bin, "go.etcd.io/etcd/etcdctl/v3")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building etcdctl: %v\n%s", err, out)
	}
	return bin
}

// run runs etcdctl with the endpoints of the given members (all if nil)
// and stdin, and returns stdout, stderr and the error of the run.
func (e *etcdctl) run(members []int, stdin string, args ...string) (string, string, error) {
	full := []string{"--endpoints", strings.Join(e.c.V3Endpoints(members...), ","), "--dial-timeout", "5s", "--command-timeout", "15s"}
	full = append(full, args...)
	// bounded: some etcdctl commands (lease keep-alive --once) wait
	// without a timeout of their own
	ctx, cancel := context.WithTimeout(e.c.alive().ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, full...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// must runs etcdctl on every member and fails the test unless it exits 0.
func (e *etcdctl) must(args ...string) string {
	e.t.Helper()
	return e.mustOn(nil, "", args...)
}

func (e *etcdctl) mustOn(members []int, stdin string, args ...string) string {
	e.t.Helper()
	out, errs, err := e.run(members, stdin, args...)
	if err != nil {
		e.t.Fatalf("etcdctl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// expect runs etcdctl and fails the test unless stdout is exactly want.
func (e *etcdctl) expect(want string, args ...string) {
	e.t.Helper()
	if got := e.must(args...); got != want {
		e.t.Errorf("etcdctl %s: output %q, want %q", strings.Join(args, " "), got, want)
	}
}

// TestV3Etcdctl drives a 3-member cluster with the real etcdctl (the
// version in go.mod) and checks its output: put/get/del, txn from stdin,
// watch, leases, member list/add/remove, endpoint status and health,
// compaction, defrag, alarm list, move-leader, and snapshot save followed
// by metcd --restore-from into a new single-member cluster.
func TestV3Etcdctl(t *testing.T) {
	bin := buildEtcdctl(t, t.TempDir())
	c := NewStoppedCluster(t, Options{Size: 3})
	for i, m := range c.Members {
		m.Extra = []string{"--name", "m" + strconv.FormatUint(m.ID, 10)}
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	c.WaitV3Ready(t, 15*time.Second)
	cli := c.V3Client(t)

	t.Run("PutGetDel", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		e.expect("OK\n", "put", "ctl/a", "1")
		e.expect("OK\n", "put", "ctl/b", "2")
		e.expect("OK\n", "put", "ctl/c", "three words")
		e.expect("OK\nctl/a\n1\n", "put", "ctl/a", "one", "--prev-kv")
		e.expect("ctl/a\none\nctl/b\n2\nctl/c\nthree words\n", "get", "ctl/", "--prefix")
		e.expect("ctl/b\n2\n", "get", "ctl/b")
		e.expect("2\n", "get", "ctl/b", "--print-value-only")
		e.expect("ctl/a\none\nctl/b\n2\n", "get", "ctl/a", "ctl/c") // [ctl/a, ctl/c)
		e.expect("ctl/c\nthree words\nctl/b\n2\n", "get", "ctl/", "--prefix", "--sort-by=KEY", "--order=DESCEND", "--limit=2")
		e.expect("", "get", "ctl/missing")

		// JSON output of a get: header and base64 key/value
		var gr struct {
			Header struct {
				ClusterID uint64 `json:"cluster_id"`
				MemberID  uint64 `json:"member_id"`
				Revision  int64  `json:"revision"`
				RaftTerm  uint64 `json:"raft_term"`
			} `json:"header"`
			Kvs []struct {
				Key            []byte `json:"key"`
				Value          []byte `json:"value"`
				CreateRevision int64  `json:"create_revision"`
				ModRevision    int64  `json:"mod_revision"`
				Version        int64  `json:"version"`
			} `json:"kvs"`
			Count int64 `json:"count"`
		}
		out := e.mustOn([]int{1}, "", "get", "ctl/a", "-w", "json")
		if err := json.Unmarshal([]byte(out), &gr); err != nil {
			t.Fatalf("get -w json: %v: %s", err, out)
		}
		g := mustV3Get(t, cli, "ctl/a")
		if gr.Count != 1 || len(gr.Kvs) != 1 || string(gr.Kvs[0].Key) != "ctl/a" || string(gr.Kvs[0].Value) != "one" ||
			gr.Kvs[0].Version != 2 || gr.Kvs[0].ModRevision != g.Kvs[0].ModRevision || gr.Header.MemberID != c.Members[1].ID ||
			gr.Header.Revision != g.Header.Revision || gr.Header.RaftTerm == 0 || gr.Header.ClusterID != g.Header.ClusterId {
			t.Errorf("get -w json = %s, want ctl/a=one version 2 at mod %d, revision %d from member %d", out, g.Kvs[0].ModRevision, g.Header.Revision, c.Members[1].ID)
		}

		e.expect("1\nctl/b\n2\n", "del", "ctl/b", "--prev-kv")
		e.expect("2\n", "del", "ctl/", "--prefix")
		e.expect("0\n", "del", "ctl/a")
		e.expect("", "get", "ctl/", "--prefix")
	})

	t.Run("Txn", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		e.expect("OK\n", "put", "ctl/t", "v1")
		in := "value(\"ctl/t\") = \"v1\"\nversion(\"ctl/t\") = \"1\"\n\nput ctl/t v2\nget ctl/t\n\nput ctl/t vfail\n\n"
		if out := e.mustOn(nil, in, "txn"); out != "SUCCESS\n\nOK\n\nctl/t\nv2\n" {
			t.Errorf("txn (success): output %q", out)
		}
		// same txn again: the compare fails, the failure branch runs
		if out := e.mustOn(nil, in, "txn"); out != "FAILURE\n\nOK\n" {
			t.Errorf("txn (failure): output %q", out)
		}
		e.expect("vfail\n", "get", "ctl/t", "--print-value-only")
		// mod revision compare and a delete in the success branch
		g := mustV3Get(t, cli, "ctl/t")
		in = fmt.Sprintf("mod(\"ctl/t\") = \"%d\"\n\ndel ctl/t\n\n\n", g.Kvs[0].ModRevision)
		if out := e.mustOn(nil, in, "txn"); out != "SUCCESS\n\n1\n" {
			t.Errorf("txn with mod compare and del: output %q", out)
		}
		e.expect("", "get", "ctl/t")
	})

	// As against an etcd with auth disabled: a user name is accepted
	// and ignored, and the auth commands say there is no auth.
	t.Run("AuthDisabled", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		e.expect("OK\n", "--user", "root:secret", "put", "ctl/auth", "v")
		e.expect("v\n", "--user", "root:secret", "get", "ctl/auth", "--print-value-only")
		e.expect("Authentication Status: false\nAuthRevision: 1\n", "auth", "status")
		e.expect("Authentication Disabled\n", "auth", "disable")
		e.expect("", "user", "list")
		e.expect("", "role", "list")
		if _, errs, err := e.run(nil, "", "user", "get", "bob"); err == nil || !strings.Contains(errs, "etcdserver: user name not found") {
			t.Errorf("user get of an unknown user: %v, stderr %q; want etcd's user name not found", err, errs)
		}
		if _, errs, err := e.run(nil, "", "auth", "enable"); err == nil || !strings.Contains(errs, "auth is not supported") {
			t.Errorf("auth enable: %v, stderr %q; want a refusal saying auth is not supported", err, errs)
		}
		e.expect("1\n", "--user", "root:secret", "del", "ctl/auth")
	})

	t.Run("Watch", func(t *testing.T) {
		c := c.For(t)
		rev := mustV3Get(t, cli, "ctl/w").Header.Revision
		cmd := exec.Command(bin, "--endpoints", strings.Join(c.V3Endpoints(2), ","), "watch", "ctl/w", "--prefix", "--rev", strconv.FormatInt(rev+1, 10))
		var mu sync.Mutex
		var out bytes.Buffer
		cmd.Stdout = lockedWriter{&mu, &out}
		cmd.Stderr = lockedWriter{&mu, &out}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Kill()
			cmd.Wait()
		}()
		mustV3Put(t, cli, "ctl/w", "hello")
		mustV3Put(t, cli, "ctl/w/sub", "nested")
		if _, err := cli.Delete(v3ctx(t), "ctl/w"); err != nil {
			t.Fatal(err)
		}
		want := "PUT\nctl/w\nhello\nPUT\nctl/w/sub\nnested\nDELETE\nctl/w\n\n"
		c.Eventually(10*time.Second, "etcdctl watch prints the events", func() error {
			mu.Lock()
			defer mu.Unlock()
			if out.String() != want {
				return fmt.Errorf("output so far %q, want %q", out.String(), want)
			}
			return nil
		})
	})

	t.Run("Lease", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		out := e.must("lease", "grant", "60")
		m := regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\(60s\)\n$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("lease grant 60: output %q", out)
		}
		id := m[1]
		e.expect("OK\n", "put", "ctl/l", "leased", "--lease="+id)
		e.expect(fmt.Sprintf("lease %s keepalived with TTL(60)\n", id), "lease", "keep-alive", "--once", id)
		out = e.must("lease", "timetolive", id, "--keys")
		if !regexp.MustCompile(`^lease ` + id + ` granted with TTL\(60s\), remaining\((5[0-9]|60)s\), attached keys\(\[ctl/l\]\)\n$`).MatchString(out) {
			t.Errorf("lease timetolive --keys: output %q", out)
		}
		out = e.must("lease", "list")
		if !strings.HasPrefix(out, "found ") || !strings.Contains(out, "\n"+id+"\n") {
			t.Errorf("lease list: output %q, want %s listed", out, id)
		}
		e.expect(fmt.Sprintf("lease %s revoked\n", id), "lease", "revoke", id)
		e.expect("", "get", "ctl/l")
		e.expect(fmt.Sprintf("lease %s already expired\n", id), "lease", "timetolive", id)
	})

	t.Run("MemberList", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		var want strings.Builder
		for _, m := range c.Members {
			fmt.Fprintf(&want, "%x, started, m%d, %s, %s, false\n", m.ID, m.ID, m.PeerURL, m.ClientURL)
		}
		if out := e.must("member", "list"); !sameLines(out, want.String()) {
			t.Errorf("member list: output\n%s\nwant (in any order)\n%s", out, want.String())
		}
		out := e.must("member", "list", "-w", "table")
		for _, m := range c.Members {
			if !strings.Contains(out, fmt.Sprintf("m%d", m.ID)) || !strings.Contains(out, m.PeerURL) || !strings.Contains(out, m.ClientURL) {
				t.Errorf("member list -w table lacks member %d (%s, %s):\n%s", m.ID, m.PeerURL, m.ClientURL, out)
			}
		}
		if !strings.Contains(strings.ToUpper(out), "STATUS") {
			t.Errorf("member list -w table: no header:\n%s", out)
		}
		var ml pb.MemberListResponse
		out = e.must("member", "list", "-w", "json")
		if err := json.Unmarshal([]byte(out), &ml); err != nil {
			t.Fatalf("member list -w json: %v: %s", err, out)
		}
		if len(ml.Members) != 3 || ml.Header == nil || ml.Header.ClusterId == 0 {
			t.Errorf("member list -w json: %s", out)
		}
	})

	t.Run("MemberAddRemove", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		st, err := c.Status(0)
		if err != nil {
			t.Fatal(err)
		}
		cid, err := strconv.ParseUint(st.ClusterID, 16, 64)
		if err != nil {
			t.Fatalf("cluster_id %q: %v", st.ClusterID, err)
		}
		peer := freeURL(t)
		out := e.must("member", "add", "m4", "--peer-urls="+peer)
		lines := strings.Split(out, "\n")
		if lines[0] != fmt.Sprintf("Member %16x added to cluster %16x", 4, cid) {
			t.Errorf("member add: first line %q, want %q", lines[0], fmt.Sprintf("Member %16x added to cluster %16x", 4, cid))
		}
		if !strings.Contains(out, `ETCD_NAME="m4"`) || !strings.Contains(out, "m4="+peer) || !strings.Contains(out, `ETCD_INITIAL_CLUSTER_STATE="existing"`) {
			t.Errorf("member add: output %q", out)
		}
		out = e.must("member", "list")
		if !strings.Contains(out, fmt.Sprintf("4, unstarted, , %s, , false\n", peer)) {
			t.Errorf("member list after add: %q, want member 4 unstarted at %s", out, peer)
		}
		e.expect(fmt.Sprintf("Member %16x removed from cluster %16x\n", 4, cid), "member", "remove", "4")
		if out := e.must("member", "list"); strings.Count(out, "\n") != 3 || strings.Contains(out, peer) {
			t.Errorf("member list after remove: %q", out)
		}
		// a learner
		peer5 := freeURL(t)
		out = e.must("member", "add", "m5", "--learner", "--peer-urls="+peer5)
		if !strings.HasPrefix(out, fmt.Sprintf("Member %16x added as learner to cluster %16x\n", 5, cid)) {
			t.Errorf("member add --learner: output %q", out)
		}
		if out, errs, err := e.run(nil, "", "member", "promote", "5"); err == nil || !strings.Contains(errs, "can only promote a learner member which is in sync with leader") {
			t.Errorf("member promote of a learner that never started: %v, stdout %q stderr %q; want etcd's 'not in sync' error", err, out, errs)
		}
		e.expect(fmt.Sprintf("Member %16x removed from cluster %16x\n", 5, cid), "member", "remove", "5")
	})

	t.Run("EndpointStatusHealth", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		li := c.WaitLeader(10 * time.Second)
		cur := mustV3Get(t, cli, "ctl/none").Header.Revision
		for i := range c.Members { // Status answers from each member's own state
			c.WaitCaughtUp(i, li, 10*time.Second)
		}
		out := e.must("endpoint", "status", "-w", "json")
		var sts []struct {
			Endpoint string
			Status   *pb.StatusResponse
		}
		if err := json.Unmarshal([]byte(out), &sts); err != nil {
			t.Fatalf("endpoint status -w json: %v: %s", err, out)
		}
		if len(sts) != 3 {
			t.Fatalf("endpoint status -w json: %d entries, want 3: %s", len(sts), out)
		}
		for i, s := range sts {
			m := c.Members[i]
			if s.Endpoint != m.V3Endpoint() || s.Status == nil || s.Status.Header == nil {
				t.Errorf("entry %d: %+v, want endpoint %s with a status", i, s, m.V3Endpoint())
				continue
			}
			h := s.Status.Header
			if h.MemberId != m.ID || h.ClusterId == 0 || h.Revision != cur || h.RaftTerm == 0 ||
				s.Status.Leader != c.Members[li].ID || s.Status.Version == "" || s.Status.DbSize <= 0 ||
				s.Status.RaftIndex == 0 || s.Status.RaftTerm != h.RaftTerm || s.Status.IsLearner {
				t.Errorf("endpoint status of %s: %+v, want member %d, revision %d, leader %d, a version, db size, raft index and term", s.Endpoint, s.Status, m.ID, cur, c.Members[li].ID)
			}
			// As etcd 3.7.3 reports them: the storage schema is the release's
			// major.minor, and downgrade info is present (not enabled).
			if s.Status.Version != "3.7.3" || s.Status.StorageVersion != "3.7.0" ||
				s.Status.DowngradeInfo == nil || s.Status.DowngradeInfo.Enabled {
				t.Errorf("endpoint status of %s: version %q, storage version %q, downgrade info %v; want 3.7.3, 3.7.0 and present, not enabled",
					s.Endpoint, s.Status.Version, s.Status.StorageVersion, s.Status.DowngradeInfo)
			}
		}
		out = e.must("endpoint", "status")
		for _, m := range c.Members {
			if !strings.Contains(out, m.V3Endpoint()+", "+strconv.FormatUint(m.ID, 16)+", ") {
				t.Errorf("endpoint status: no line for %s (id %x):\n%s", m.V3Endpoint(), m.ID, out)
			}
		}
		out = e.must("endpoint", "health")
		for _, m := range c.Members {
			if !strings.Contains(out, m.V3Endpoint()+" is healthy: successfully committed proposal") {
				t.Errorf("endpoint health: %s not healthy:\n%s", m.V3Endpoint(), out)
			}
		}
		e.expect("", "alarm", "list")
	})

	t.Run("CompactionDefrag", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		r1 := mustV3Put(t, cli, "ctl/cmp", "1").Header.Revision
		r2 := mustV3Put(t, cli, "ctl/cmp", "2").Header.Revision
		mustV3Put(t, cli, "ctl/cmp", "3")
		e.expect(fmt.Sprintf("compacted revision %d\n", r2), "compaction", strconv.FormatInt(r2, 10))
		out, errs, err := e.run(nil, "", "get", "ctl/cmp", "--rev", strconv.FormatInt(r1, 10))
		if err == nil || !strings.Contains(errs, "required revision has been compacted") {
			t.Errorf("get --rev below the compaction: %v stdout %q stderr %q, want etcd's compacted error", err, out, errs)
		}
		e.expect("ctl/cmp\n2\n", "get", "ctl/cmp", "--rev", strconv.FormatInt(r2, 10))
		r4 := mustV3Put(t, cli, "ctl/cmp", "4").Header.Revision
		e.expect(fmt.Sprintf("compacted revision %d\n", r4), "compaction", "--physical", strconv.FormatInt(r4, 10))
		out = e.must("defrag")
		for _, m := range c.Members {
			if !regexp.MustCompile(`(?m)^Finished defragmenting etcd member\[` + regexp.QuoteMeta(m.V3Endpoint()) + `\]\. took `).MatchString(out) {
				t.Errorf("defrag: no line for %s:\n%s", m.V3Endpoint(), out)
			}
		}
		e.expect("4\n", "get", "ctl/cmp", "--print-value-only")
	})

	t.Run("MoveLeader", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		li := c.WaitLeader(10 * time.Second)
		target := (li + 1) % 3
		e.expect(fmt.Sprintf("Leadership transferred from %x to %x\n", c.Members[li].ID, c.Members[target].ID), "move-leader", strconv.FormatUint(c.Members[target].ID, 16))
		if nl := c.WaitLeader(10 * time.Second); nl != target {
			t.Errorf("leader after move-leader: member %d, want %d", c.Members[nl].ID, c.Members[target].ID)
		}
	})

	t.Run("SnapshotRestore", func(t *testing.T) {
		c := c.For(t)
		e := &etcdctl{t: t, bin: bin, c: c}
		var revs []int64
		for i := range 20 {
			revs = append(revs, mustV3Put(t, cli, fmt.Sprintf("snapctl/%02d", i), fmt.Sprintf("value-%d", i)).Header.Revision)
		}
		mustV3Put(t, cli, "snapctl/05", "updated")
		path := filepath.Join(t.TempDir(), "backup.db")
		out := e.mustOn([]int{1}, "", "snapshot", "save", path)
		if !strings.HasPrefix(out, "Snapshot saved at "+path+"\n") {
			t.Errorf("snapshot save: output %q", out)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("snapshot file: %v", err)
		}
		if len(data) == 0 || len(data)%512 != sha256.Size {
			t.Fatalf("snapshot file of %d bytes, want data padded to 512 bytes plus a SHA-256", len(data))
		}
		if sum := sha256.Sum256(data[:len(data)-sha256.Size]); !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
			t.Errorf("snapshot file: the trailer is not the SHA-256 of the data")
		}
		src := mustV3Get(t, cli, "snapctl/", clientv3.WithPrefix())

		// a new single-member cluster from the backup
		r := NewStoppedCluster(t, Options{Size: 1})
		r.Members[0].Extra = []string{"--restore-from", path}
		r.Start(0)
		r.WaitReady(30 * time.Second)
		r.WaitV3Ready(t, 15*time.Second)
		rcli := r.V3Client(t)
		got := mustV3Get(t, rcli, "snapctl/", clientv3.WithPrefix())
		if len(got.Kvs) != 20 {
			t.Fatalf("restored cluster: %d keys under snapctl/, want 20", len(got.Kvs))
		}
		for i, kv := range got.Kvs {
			s := src.Kvs[i]
			if string(kv.Key) != string(s.Key) || string(kv.Value) != string(s.Value) || kv.ModRevision != s.ModRevision || kv.CreateRevision != s.CreateRevision || kv.Version != s.Version {
				t.Errorf("restored %s=%s (create %d mod %d version %d), want %s=%s (create %d mod %d version %d), as etcd's restore keeps revisions",
					kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, s.Key, s.Value, s.CreateRevision, s.ModRevision, s.Version)
			}
		}
		if got.Header.Revision < src.Header.Revision {
			t.Errorf("restored cluster at revision %d, the backup was taken at >= %d", got.Header.Revision, src.Header.Revision)
		}
		if gr := mustV3Get(t, rcli, "snapctl/05", clientv3.WithRev(revs[5])); len(gr.Kvs) != 1 || string(gr.Kvs[0].Value) != "value-5" {
			t.Errorf("restored cluster: snapctl/05 at revision %d = %v, want the history kept (value-5)", revs[5], kvStrings(gr.Kvs))
		}
		if resp, err := r.Get(0, "snapctl/07"); err != nil || resp.Code != http.StatusOK || resp.Body != "value-7" {
			t.Errorf("restored cluster: curl GET snapctl/07 = %v %v, want 200 value-7", resp, err)
		}
		ms := r.v3MemberList(t, 0)
		if len(ms.Members) != 1 || ms.Members[0].ID != 1 || !slices.Equal(ms.Members[0].PeerURLs, []string{r.Members[0].PeerURL}) {
			t.Errorf("restored cluster members: %s, want only member 1 at %s", describeMembers(ms.Members), r.Members[0].PeerURL)
		}
		// it takes writes
		p := mustV3Put(t, rcli, "snapctl/new", "x")
		if p.Header.Revision <= got.Header.Revision {
			t.Errorf("write on the restored cluster at revision %d, want > %d", p.Header.Revision, got.Header.Revision)
		}
	})
}

// lockedWriter serialises writes to a buffer shared with the test.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// sameLines reports whether a and b hold the same lines in any order.
func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	count := map[string]int{}
	for _, l := range la {
		count[l]++
	}
	for _, l := range lb {
		count[l]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
