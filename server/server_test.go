package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metcd/metcd/internal/failpoint"
	"github.com/metcd/metcd/internal/freeport"
	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/watch"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"
)

// These tests run whole members in-process, on loopback sockets and temp
// dirs, so the race detector sees the server's goroutines at work.

func freeURL(t *testing.T) string {
	t.Helper()
	// freeport never hands a port out twice; a listener closed here could
	// give the next member the same port (CI once saw "listed twice").
	urls, err := freeport.URLs(1)
	if err != nil {
		t.Fatal(err)
	}
	return urls[0]
}

type testCluster struct {
	t       *testing.T
	urls    []string
	dirs    []string
	members []*Server
	// restoreFrom is every member's --restore-from.
	restoreFrom string
	// configure, if set, changes each member's config before it starts.
	configure func(*Config)
}

func memConfig(t *testing.T, id uint64, urls []string, dir string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.InitialCluster = urls
	cfg.DataDir = dir
	cfg.Engine = EngineOpener{Name: "memory", Open: func(string) (storage.Engine, error) { return memory.New(), nil }}
	if name := testEngine; name != "memory" {
		open, err := engines.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Engine = EngineOpener{Name: name, Open: open}
	}
	cfg.SnapshotCount = 25
	// Short enough for quick elections, long enough that a stall of the
	// race detector on a loaded machine rarely looks like a dead leader
	// (a write then fails with "leader changed" in tests that do not
	// retry).
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.ElectionTimeout = 500 * time.Millisecond
	cfg.RequestTimeout = 3 * time.Second
	cfg.Logger = zaptest.NewLogger(t).Named(fmt.Sprint(id))
	return cfg
}

// testEngine is the engine in-process members use; TestDurableEngines
// reruns the cluster tests on each durable engine.
var testEngine = "memory"

func TestDurableEngines(t *testing.T) {
	for _, name := range []string{"bolt", "leveldb", "pebble"} {
		t.Run(name, func(t *testing.T) {
			testEngine = name
			defer func() { testEngine = "memory" }()
			t.Run("replicate", TestClusterReplicatesAndReadsLinearizably)
			t.Run("restart", TestRestartReplaysSnapshotAndWAL)
			t.Run("join", TestJoinBySnapshotAndRemove)
			t.Run("versions", TestVersionsAfterRestart)
			t.Run("attributes", TestRestartKeepsMemberAttributes)
			t.Run("restore", TestRestoredStateReachesNewMembers)
			t.Run("invalid", TestInvalidEntryRefusedAtApply)
			t.Run("compaction", TestPhysicalCompactionMeetsAnInstall)
			t.Run("peer-url", TestUpdatedPeerURLAfterRestart)
		})
	}
}

func newTestCluster(t *testing.T, n int) *testCluster {
	return startTestCluster(&testCluster{t: t}, n)
}

func startTestCluster(c *testCluster, n int) *testCluster {
	t := c.t
	for i := 0; i < n; i++ {
		c.urls = append(c.urls, freeURL(t))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.members = make([]*Server, n)
	for i := range c.members {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.members {
			if s != nil {
				s.Stop()
			}
		}
	})
	c.waitLeader()
	c.waitFormed()
	return c
}

// waitFormed waits until every member knows every member as started (its
// name published) and is connected to every other: etcd's reconfiguration
// checks refuse membership changes before that, and tests that change the
// membership right after the start expect them to pass.
func (c *testCluster) waitFormed() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		formed := true
		for _, s := range c.members {
			started := 0
			for _, m := range s.Members() {
				if m.Name != "" {
					started++
				}
				if m.ID != s.ID() && s.tr.ActiveSince(m.ID).IsZero() {
					formed = false
				}
			}
			formed = formed && started == len(c.members)
		}
		if formed {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the %d members did not all start and connect within 10s", len(c.members))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) start(i int) {
	c.t.Helper()
	cfg := memConfig(c.t, uint64(i+1), c.urls, c.dirs[i])
	cfg.RestoreFrom = c.restoreFrom
	if c.configure != nil {
		c.configure(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("start member %d: %v", i+1, err)
	}
	c.members[i] = s
}

// startJoining starts member id on peer URL u with --join, after the
// cluster added it; it is stopped when the test ends.
func (c *testCluster) startJoining(id uint64, u string) *Server {
	c.t.Helper()
	cfg := memConfig(c.t, id, append(slices.Clone(c.urls), u), c.t.TempDir())
	cfg.Join = true
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("start member %d with --join on %s: %v", id, u, err)
	}
	c.t.Cleanup(s.Stop)
	return s
}

// startLearner adds a learner through s and starts it.
func (c *testCluster) startLearner(s *Server) *Server {
	c.t.Helper()
	u := freeURL(c.t)
	add, err := s.MemberAdd(ctx(c.t), &pb.MemberAddRequest{PeerURLs: []string{u}, IsLearner: true})
	if err != nil {
		c.t.Fatal(err)
	}
	return c.startJoining(add.Member.ID, u)
}

func (c *testCluster) stop(i int) {
	c.members[i].Stop()
	c.members[i] = nil
}

// leaderAndFollowers returns the running member a leader is known as, and
// the other running members.
func (c *testCluster) leaderAndFollowers() (*Server, []*Server) {
	c.t.Helper()
	lead := c.waitLeader()
	var leader *Server
	var followers []*Server
	for _, s := range c.members {
		switch {
		case s == nil:
		case s.ID() == lead:
			leader = s
		default:
			followers = append(followers, s)
		}
	}
	if leader == nil {
		c.t.Fatalf("leader %d is not running", lead)
	}
	return leader, followers
}

func (c *testCluster) waitLeader() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.members {
			if s != nil && s.Leader() != 0 {
				return s.Leader()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader elected within 10s")
	return 0
}

// putRetry writes a key, retrying writes whose outcome is unknown: one
// proposed just as a leader goes away may be lost with it, and clients are
// expected to retry (the value is the same, so a retry is harmless).
func putRetry(t *testing.T, s *Server, key string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := putKey(s, ctx(t), []byte(key), []byte("v"))
		if err == nil {
			return
		}
		if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrLeaderLost) && !errors.Is(err, ErrNoLeader) || time.Now().After(deadline) {
			t.Fatalf("put %s via member %d: %v", key, s.ID(), err)
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClusterReplicatesAndReadsLinearizably(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := 0; i < 60; i++ {
		w := c.members[i%3]
		k := []byte(fmt.Sprintf("key-%d", i))
		if err := putKey(w, ctx(t), k, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("put %s via member %d: %v", k, w.ID(), err)
		}
		r := c.members[(i+1)%3]
		v, err := getKey(r, ctx(t), k, true)
		if err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("linearizable get %s via member %d: %q %v", k, r.ID(), v, err)
		}
	}
	if err := deleteKey(c.members[0], ctx(t), []byte("key-1")); err != nil {
		t.Fatal(err)
	}
	if err := deleteKey(c.members[1], ctx(t), []byte("key-1")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("second delete: got %v, want ErrKeyNotFound", err)
	}
	if _, err := getKey(c.members[2], ctx(t), []byte("key-1"), true); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get deleted key: got %v", err)
	}
	// 60 writes with SnapshotCount 25: every member has snapshotted.
	for _, s := range c.members {
		if st := s.MemberStatus(); st.SnapshotIndex == 0 || st.Keys != 59 {
			t.Fatalf("member %d status %+v: want a snapshot and 59 keys", s.ID(), st)
		}
	}
}

func TestRestartReplaysSnapshotAndWAL(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := 0; i < 80; i++ {
		if err := putKey(c.members[i%3], ctx(t), []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(1)
	for i := 80; i < 140; i++ {
		putRetry(t, c.members[0], fmt.Sprintf("k%d", i))
	}
	c.start(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := getKey(c.members[1], ctx(t), []byte("k139"), false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not catch up: %v (status %+v)", err, c.members[1].MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 140; i++ {
		if _, err := getKey(c.members[1], ctx(t), []byte(fmt.Sprintf("k%d", i)), false); err != nil {
			t.Fatalf("k%d missing after restart: %v", i, err)
		}
	}
}

// TestVersionsAfterRestart checks that a restarted member counts on from
// the records it had: every member applies each put itself, reading the
// key's current record (on durable engines through a read cache the
// member fills at start, and that then answers for absent keys).
func TestVersionsAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	created := map[string]int64{}
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("k%d", i)
			resp, err := c.members[0].Put(ctx(t), &pb.PutRequest{Key: []byte(k), Value: []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			if round == 0 {
				created[k] = resp.Header.Revision
			}
		}
	}
	if _, err := c.members[0].DeleteRange(ctx(t), &pb.DeleteRangeRequest{Key: []byte("k0")}); err != nil {
		t.Fatal(err)
	}
	c.stop(1)
	c.start(1)
	c.waitLeader()
	// Each put is a txn on the key's version before it, so that a retry of
	// a put whose outcome was unknown (leader changed) cannot apply twice.
	for k, before := range map[string]int64{"k0": 0, "k1": 2, "k19": 2, "new": 0} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := c.members[0].Txn(ctx(t), &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(k), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL,
					TargetUnion: &pb.Compare_Version{Version: before}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("w")}}}},
			})
			if err == nil {
				break
			}
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrLeaderLost) && !errors.Is(err, ErrNoLeader) || time.Now().After(deadline) {
				t.Fatalf("put %s: %v", k, err)
			}
		}
	}
	// The puts were applied on member 1 (as on every member) once they
	// returned; member 2 catches up to that.
	deadline := time.Now().Add(10 * time.Second)
	for c.members[1].store.Applied() < c.members[0].store.Applied() {
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not catch up (status %+v)", c.members[1].MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct {
		key     string
		version int64
		create  int64 // 0: at or after the restart
	}{
		{"k0", 1, 0}, {"k1", 3, created["k1"]}, {"k19", 3, created["k19"]}, {"k7", 2, created["k7"]}, {"new", 1, 0},
	} {
		resp, err := c.members[1].Range(ctx(t), &pb.RangeRequest{Key: []byte(tc.key), Serializable: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Fatalf("%s: %d keys on the restarted member", tc.key, len(resp.Kvs))
		}
		kv := resp.Kvs[0]
		if kv.Version != tc.version || (tc.create != 0 && kv.CreateRevision != tc.create) || (tc.create == 0 && kv.CreateRevision <= created["k19"]) {
			t.Fatalf("%s on the restarted member: version %d, created at %d; want version %d, created at %d (0: after %d)",
				tc.key, kv.Version, kv.CreateRevision, tc.version, tc.create, created["k19"])
		}
	}
}

// closeFailingEngine fails its Close, as an engine that cannot write its
// last files might.
type closeFailingEngine struct{ storage.Engine }

func (e closeFailingEngine) Close() error {
	e.Engine.Close()
	return errors.New("close failed")
}

// TestSnapshotInstallSurvivesOldEngineCloseError: a member whose replaced
// engine fails to close keeps the installed state and goes on applying.
// The install has switched to the new engine by then; treating the error
// as a failed install closed and deleted the engine in use.
func TestSnapshotInstallSurvivesOldEngineCloseError(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := 0; i < 60; i++ {
		if err := putKey(c.members[0], ctx(t), []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	newURL := freeURL(t)
	if err := c.members[0].AddMember(ctx(t), 4, newURL); err != nil {
		t.Fatal(err)
	}
	cfg := memConfig(t, 4, append(append([]string(nil), c.urls...), newURL), t.TempDir())
	cfg.Join = true
	opened := 0
	open := cfg.Engine.Open
	cfg.Engine.Open = func(dir string) (storage.Engine, error) {
		eng, err := open(dir)
		if opened++; opened == 1 && err == nil {
			return closeFailingEngine{eng}, nil // the engine the install replaces
		}
		return eng, err
	}
	s4, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s4.Stop()
	waitKey := func(key string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := getKey(s4, ctx(t), []byte(key), false); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("member 4 does not serve %s: %+v", key, s4.MemberStatus())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitKey("k59")
	if s4.MemberStatus().SnapshotIndex == 0 {
		t.Fatal("member 4 caught up without a snapshot; the test did not exercise an install")
	}
	putRetry(t, c.members[0], "after")
	waitKey("after")
}

func TestJoinBySnapshotAndRemove(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := 0; i < 100; i++ {
		if err := putKey(c.members[0], ctx(t), []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	newURL := freeURL(t)
	if err := c.members[1].AddMember(ctx(t), 4, newURL); err != nil {
		t.Fatal(err)
	}
	if err := c.members[1].AddMember(ctx(t), 4, freeURL(t)); !errors.Is(err, ErrMemberExists) {
		t.Fatalf("adding id 4 twice: got %v", err)
	}
	cfg := memConfig(t, 4, append(append([]string(nil), c.urls...), newURL), t.TempDir())
	cfg.Join = true
	s4, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s4.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := getKey(s4, ctx(t), []byte("k99"), false); err == nil && s4.MemberStatus().SnapshotIndex > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member 4 did not catch up by snapshot: %+v", s4.MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A range answers at the revision the installed state is at, not at
	// the one the member had before the install.
	resp, err := s4.Range(ctx(t), &pb.RangeRequest{Key: []byte("k99"), Serializable: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := c.members[0].Header().Revision; resp.Header.Revision != want || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != want {
		t.Fatalf("member 4 after the install: %v, want header and k99 at revision %d", resp, want)
	}
	if got := len(c.members[0].Members()); got != 4 {
		t.Fatalf("members = %d, want 4", got)
	}

	if err := c.members[0].RemoveMember(ctx(t), 4); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s4.Done():
		if !errors.Is(s4.Err(), ErrRemoved) {
			t.Fatalf("member 4 stopped with %v, want ErrRemoved", s4.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removed member did not stop")
	}
	// A message that still comes from the removed member is refused with
	// etcd's 403, which tells the sender's transport it was removed (not a
	// 500 and a dropped connection).
	if code, body := postRaftMessage(t, c.urls[0], c.members[0].MemberStatus().ClusterID, 4, 1); code != http.StatusForbidden || !strings.Contains(body, "removed member") {
		t.Fatalf("message from the removed member: %d %q, want 403 cannot process message from removed member", code, body)
	}
	if err := c.members[0].AddMember(ctx(t), 4, newURL); !errors.Is(err, ErrIDRemoved) {
		t.Fatalf("re-adding removed id: got %v, want ErrIDRemoved", err)
	}
	if err := putKey(c.members[2], ctx(t), []byte("after"), []byte("x")); err != nil {
		t.Fatalf("write after removal: %v", err)
	}
	// The removed member's data dir is refused.
	if _, err := Open(cfg); err == nil {
		t.Fatal("a removed member restarted on its data dir")
	}
}

// postRaftMessage sends a heartbeat from member from to member to through
// the peer URL's pipeline endpoint, with the headers a member's transport
// sets, and returns the response's status and body.
func postRaftMessage(t *testing.T, peerURL, clusterID string, from, to uint64) (int, string) {
	t.Helper()
	b, err := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(from), To: proto.Uint64(to)})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, peerURL+"/raft", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/protobuf")
	req.Header.Set("X-Server-From", strconv.FormatUint(from, 16))
	req.Header.Set("X-Server-Version", version.Version)
	req.Header.Set("X-Min-Cluster-Version", version.MinClusterVersion)
	req.Header.Set("X-Etcd-Cluster-ID", clusterID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestMinorityAnswersNoLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	if err := putKey(c.members[0], ctx(t), []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.stop(1)
	c.stop(2)
	done := make(chan error, 2)
	go func() { done <- putKey(c.members[0], context.Background(), []byte("b"), []byte("2")) }()
	go func() { _, err := getKey(c.members[0], context.Background(), []byte("a"), true); done <- err }()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrLeaderLost) {
				t.Fatalf("got %v, want ErrNoLeader or ErrLeaderLost", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("minority member hung")
		}
	}
	if v, err := getKey(c.members[0], ctx(t), []byte("a"), false); err != nil || string(v) != "1" {
		t.Fatalf("serializable read in minority: %q %v", v, err)
	}
	// Status says so in etcd's words.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.members[0].Status(ctx(t), &pb.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == 0 {
			if !slices.Equal(st.Errors, []string{"etcdserver: no leader"}) {
				t.Fatalf("Status errors without a leader: %q, want etcd's [etcdserver: no leader]", st.Errors)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the minority member still knows leader %d", st.Leader)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartupRefusesContradictions(t *testing.T) {
	urls := []string{freeURL(t), freeURL(t), freeURL(t)}
	dir := t.TempDir()
	cfg := memConfig(t, 4, urls, dir)
	if _, err := Open(cfg); err == nil {
		t.Fatal("id outside the cluster accepted")
	}
	s, err := Open(memConfig(t, 1, urls[:1], dir))
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s, err = Open(memConfig(t, 1, urls[:1], dir))
	if err != nil {
		t.Fatalf("restart on own dir: %v", err)
	}
	s.Stop()
	for name, cfg := range map[string]Config{
		"other member":  memConfig(t, 2, urls[:2], dir),
		"other cluster": memConfig(t, 1, urls[1:2], dir),
	} {
		if _, err := Open(cfg); err == nil {
			t.Fatalf("%s: data dir accepted", name)
		}
	}
	other := memConfig(t, 1, urls[:1], dir)
	other.Engine.Name = "other"
	if _, err := Open(other); err == nil {
		t.Fatal("data dir of another engine accepted")
	}
}

// An invalid entry that reaches the log (an older or buggy proposer) is
// refused at apply, the same way on every member, and nobody stops.
func TestInvalidEntryRefusedAtApply(t *testing.T) {
	c := newTestCluster(t, 3)
	// Bypass Put's own check to get the entry into the log.
	_, err := c.members[0].proposeInternal(ctx(t), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: nil, Value: []byte("x")}})
	if !errors.Is(err, rpctypes.ErrGRPCEmptyKey) {
		t.Fatalf("empty key at apply: got %v, want ErrGRPCEmptyKey", err)
	}
	// Keys over the limit entries get at apply: bbolt refuses keys over
	// 32 KiB, so an engine commit of one would stop every bolt member,
	// again at each restart. The second is over only as the index stores
	// it (each 0x00 takes two bytes).
	_, err = c.members[0].proposeInternal(ctx(t), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: bytes.Repeat([]byte("k"), 40000), Value: []byte("x")}})
	if !errors.Is(err, mvcc.ErrGRPCKeyTooLarge) {
		t.Fatalf("long key at apply: got %v, want ErrGRPCKeyTooLarge", err)
	}
	_, err = c.members[0].proposeInternal(ctx(t), &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("short"), Value: []byte("x")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: bytes.Repeat([]byte{0}, mvcc.MaxKeyBytes+1), Value: []byte("x")}}},
	}}})
	if !errors.Is(err, mvcc.ErrGRPCKeyTooLarge) {
		t.Fatalf("long key in a txn at apply: got %v, want ErrGRPCKeyTooLarge", err)
	}
	if _, err := getKey(c.members[0], ctx(t), []byte("short"), true); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the refused txn's other put: %v, want not found", err)
	}
	// A key over the limit of new requests but under that of entries
	// being applied, as an older metcd may have committed: applied, so
	// that a member replaying its log does as the others did.
	mid := bytes.Repeat([]byte("m"), mvcc.MaxKeyBytes+1000)
	if _, err := c.members[0].proposeInternal(ctx(t), &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: mid, Value: []byte("x")}}); err != nil {
		t.Fatalf("entry with a %d-byte key: %v, want it applied", len(mid), err)
	}
	if err := mvcc.ValidatePut(&pb.PutRequest{Key: mid, Value: []byte("y")}); !errors.Is(err, mvcc.ErrGRPCKeyTooLarge) {
		t.Fatalf("a new put of a %d-byte key: %v, want ErrGRPCKeyTooLarge", len(mid), err)
	}
	for _, s := range c.members {
		select {
		case <-s.Done():
			t.Fatalf("member %d stopped: %v", s.ID(), s.Err())
		default:
		}
		if err := putKey(s, ctx(t), []byte("after"), []byte("ok")); err != nil {
			t.Fatalf("member %d after the bad entry: %v", s.ID(), err)
		}
	}
}

// A damaged snapshot stream is refused before raft sees it; the member
// keeps its state and goes on.
func TestCorruptSnapshotStreamRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	s := c.members[0]
	if err := putKey(s, ctx(t), []byte("mine"), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	view, err := s.store.View()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := view.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	view.Close()
	idx := view.Applied() + 1000
	good := buf.Bytes()
	for name, bad := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"flipped":   append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1),
	} {
		if _, err := s.disk.SaveStateFrom(bytes.NewReader(bad), idx); err != nil {
			t.Fatal(err)
		}
		m := &raftpb.Message{
			Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(1000),
			Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
				Index: proto.Uint64(idx), Term: proto.Uint64(1000), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
			}},
		}
		err := s.Process(ctx(t), m)
		if !errors.Is(err, kvstore.ErrCorruptSnapshot) {
			t.Fatalf("%s stream: Process returned %v, want ErrCorruptSnapshot", name, err)
		}
		if _, err := os.Stat(s.disk.StateFile(idx)); !os.IsNotExist(err) {
			t.Fatalf("%s stream: damaged state file left behind (%v)", name, err)
		}
	}
	if v, err := getKey(s, ctx(t), []byte("mine"), true); err != nil || string(v) != "kept" {
		t.Fatalf("state after refused snapshots: %q %v", v, err)
	}
	if err := putKey(s, ctx(t), []byte("after"), []byte("ok")); err != nil {
		t.Fatalf("member cannot write after refusing snapshots: %v", err)
	}
}

// Peers may reach the transport before the raft node exists (a member
// restarting into a busy cluster); that must not crash the member.
func TestMessagesBeforeRaftStartAreRefused(t *testing.T) {
	s := &Server{nodeReady: make(chan struct{}), removed: map[uint64]bool{}, members: map[uint64]kvstore.Member{}}
	m := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(2), To: proto.Uint64(1)}
	err := s.Process(context.Background(), m)
	if !errors.Is(err, errNotStarted) {
		t.Fatalf("Process before start: %v, want errNotStarted", err)
	}
	// rafthttp answers an error with WriteTo as it says; any other error
	// drops the connection with a logged panic.
	var wr interface{ WriteTo(http.ResponseWriter) }
	if !errors.As(err, &wr) {
		t.Fatalf("Process before start: %T cannot write itself as the response", err)
	}
	rec := httptest.NewRecorder()
	wr.WriteTo(rec)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("refusal before start answers %d, want 503", rec.Code)
	}
	s.ReportUnreachable(2)
	s.ReportSnapshot(2, 0)
	if got := s.Members(); len(got) != 0 {
		t.Fatalf("Members before start: %v", got)
	}
}

func putKey(s *Server, ctx context.Context, k, v []byte) error {
	_, err := s.PutKey(ctx, k, v)
	return err
}

func getKey(s *Server, ctx context.Context, k []byte, lin bool) ([]byte, error) {
	v, _, err := s.GetKey(ctx, k, lin)
	return v, err
}

func deleteKey(s *Server, ctx context.Context, k []byte) error {
	_, err := s.DeleteKey(ctx, k)
	return err
}

// setMinDeferredState sets minDeferredState for one test. Call it before
// newTestCluster: the old value comes back in a cleanup, and cleanups run
// last-registered first, so only after the cluster's members have stopped
// reading it (a deferred restore ran while they were still applying).
func setMinDeferredState(t *testing.T, v uint64) {
	old := minDeferredState
	t.Cleanup(func() { minDeferredState = old })
	minDeferredState = v
}

// TestMemoryStateFileDeferred: a memory member whose state file is large
// next to the entries since it compacts raft's log in memory at every
// snapshot count but does not rewrite the state file, and a restart
// rebuilds every write from the older state file and the WAL after it.
func TestMemoryStateFileDeferred(t *testing.T) {
	if testEngine != "memory" {
		t.Skip("memory engine only")
	}
	setMinDeferredState(t, 1) // defer from the first state file on
	c := newTestCluster(t, 3)
	big := bytes.Repeat([]byte("x"), 4096)
	for i := 0; i < 100; i++ {
		if err := putKey(c.members[i%3], ctx(t), []byte(fmt.Sprintf("big%03d", i)), big); err != nil {
			t.Fatal(err)
		}
	}
	// Small entries: 200 of them add up to far less than the state file.
	for i := 0; i < 200; i++ {
		if err := putKey(c.members[i%3], ctx(t), []byte(fmt.Sprintf("small%03d", i)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	victim := 1
	deadline := time.Now().Add(10 * time.Second)
	for c.members[victim].MemberStatus().SnapshotIndex < 275 {
		if time.Now().After(deadline) {
			t.Fatalf("member %d: raft log not compacted to 275 after 300 writes: %+v", victim+1, c.members[victim].MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The state file of the last snapshot count of the big writes (about
	// index 100, plus the few membership entries) may be written; none of
	// the small writes' snapshot counts may write one.
	newest, n := stateFiles(t, c.dirs[victim])
	if n == 0 || newest > 140 {
		t.Fatalf("member %d: newest state file at index %d (%d files), raft snapshot at %d: want one written, none past the big writes",
			victim+1, newest, n, c.members[victim].MemberStatus().SnapshotIndex)
	}
	t.Logf("member %d: state file at %d, raft log compacted to %d", victim+1, newest, c.members[victim].MemberStatus().SnapshotIndex)

	c.stop(victim)
	c.start(victim)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if v, err := getKey(c.members[victim], ctx(t), []byte("small199"), false); err == nil && string(v) == "199" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member did not rebuild its state: %+v", c.members[victim].MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 100; i++ {
		if v, err := getKey(c.members[victim], ctx(t), []byte(fmt.Sprintf("big%03d", i)), false); err != nil || !bytes.Equal(v, big) {
			t.Fatalf("big%03d after restart: %d bytes, %v", i, len(v), err)
		}
	}
	for i := 0; i < 200; i++ {
		if v, err := getKey(c.members[victim], ctx(t), []byte(fmt.Sprintf("small%03d", i)), false); err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("small%03d after restart: %q, %v", i, v, err)
		}
	}
	// The restarted member knows its state file's size: replaying the
	// small writes and two snapshot counts more of them write no new one.
	for i := 0; i < 60; i++ {
		if err := putKey(c.members[i%3], ctx(t), []byte(fmt.Sprintf("after%03d", i)), []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for st := c.members[victim].MemberStatus(); st.SnapshotIndex < st.AppliedIndex-25 || st.AppliedIndex < 360; st = c.members[victim].MemberStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("member %d: raft log not compacted after the restart: %+v", victim+1, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, _ := stateFiles(t, c.dirs[victim]); got != newest {
		t.Fatalf("member %d: state file at index %d after the restart, want still the one at %d (raft snapshot at %d)",
			victim+1, got, newest, c.members[victim].MemberStatus().SnapshotIndex)
	}
}

// stateFiles returns the index of the newest state file in a member's data
// dir and how many there are.
func stateFiles(t *testing.T, dataDir string) (newest uint64, n int) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dataDir, "member", "snap", "*.snap.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		i, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), ".snap.db"), 16, 64)
		if err != nil {
			t.Fatalf("state file %s: %v", name, err)
		}
		newest = max(newest, i)
	}
	return newest, len(names)
}

// TestMemoryStateFileRetried: a state file that could not be written (a
// full disk) is written again a snapshot count later, not only after
// another state's worth of log.
func TestMemoryStateFileRetried(t *testing.T) {
	if testEngine != "memory" {
		t.Skip("memory engine only")
	}
	setMinDeferredState(t, 1)
	c := newTestCluster(t, 3)
	victim := c.members[1]
	big := bytes.Repeat([]byte("x"), 4096)
	write := func(prefix string, n int, v []byte) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := putKey(c.members[i%3], ctx(t), []byte(fmt.Sprintf("%s%03d", prefix, i)), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	// waitCompacted waits until the victim's raft log is compacted past
	// everything but the last snapshot count's worth of entries. A member
	// considers a snapshot only when it applies an entry, and skips it
	// while the previous one is still being written; so while waiting, a
	// tiny write every 100 ms makes it look again.
	waitCompacted := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := 1; ; i++ {
			st := victim.MemberStatus()
			if st.AppliedIndex-st.SnapshotIndex < 25 && st.AppliedIndex > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("raft log not compacted: %+v", st)
			}
			time.Sleep(20 * time.Millisecond)
			if i%5 == 0 {
				if err := putKey(c.members[0], ctx(t), []byte("nudge"), []byte("n")); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	newestState := func() uint64 {
		t.Helper()
		newest, _ := stateFiles(t, c.dirs[1])
		return newest
	}

	write("big", 100, big)
	waitCompacted()
	size := victim.stateSize.Load()
	if size <= 0 {
		t.Fatalf("no state file after 100 writes of 4 KiB")
	}
	// While the disk refuses state files, write a little more than the
	// state's size in entries: a state file falls due and fails.
	restore, err := failpoint.Enable(failpoint.StateSave + "=error")
	if err != nil {
		t.Fatal(err)
	}
	before := newestState()
	write("more", int(size/4096)+40, big)
	waitCompacted()
	// A state file started before the disk recovers must fail too: one
	// that checked the disk only after would succeed at an index the
	// failures had reached, and the retry below would go untested.
	for deadline := time.Now().Add(10 * time.Second); victim.snapshotting.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a snapshot is still being written after 10 s")
		}
	}
	restore()
	if got := newestState(); got != before {
		t.Fatalf("state file %d written while they failed (newest before: %d)", got, before)
	}
	failedAt := victim.MemberStatus().AppliedIndex
	// Small writes add up to little; two snapshot counts of them.
	write("small", 60, []byte("s"))
	waitCompacted()
	if got := newestState(); got <= failedAt {
		t.Fatalf("newest state file at index %d, want one after the failures (applied %d when they stopped)", got, failedAt)
	}
}

// TestDuplicatePeerURLRefusedAtApply: an add whose peer URL a member already
// has is refused when it is applied, not only before it is proposed (a
// member that had not applied an earlier add passes that first check).
func TestDuplicatePeerURLRefusedAtApply(t *testing.T) {
	c := newTestCluster(t, 3)
	// Propose on the leader, which waits for its raft to count each conf
	// change as applied before proposing the next (consensus.Node), so raft
	// takes every one. A follower's answer can come before the leader's raft
	// counts it, and raft then turns the next conf change into an empty
	// entry, which leaves the request to time out.
	p := c.members[c.waitLeader()-1]
	newURL := freeURL(t)
	if err := p.AddMember(ctx(t), 4, newURL); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id  uint64
		url string
	}{
		{4, newURL},    // the same add again, as a stale member would propose it
		{5, newURL},    // another id on member 4's URL
		{6, c.urls[1]}, // a running member's URL
	} {
		mctx, err := json.Marshal(kvstore.Member{ID: tc.id, PeerURL: tc.url})
		if err != nil {
			t.Fatal(err)
		}
		err = p.proposeConfChange(ctx(t), &raftpb.ConfChange{
			Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(tc.id), Context: mctx,
		})
		if !errors.Is(err, ErrPeerURLExists) {
			t.Fatalf("add of id %d at %s: got %v, want ErrPeerURLExists", tc.id, tc.url, err)
		}
	}
	// The proposer applied every one of them before it answered.
	if got := len(p.Members()); got != 4 {
		t.Fatalf("the leader knows %d members, want 4", got)
	}
}

// TestRemoveKeepsAQuorum checks that removals after which raft could not
// make progress are refused, before proposing and, for the last voter,
// at apply (raft panics on a configuration without voters), and that
// the member stays up and restarts past such a refused entry.
func TestRemoveKeepsAQuorum(t *testing.T) {
	t.Run("OnlyMember", func(t *testing.T) {
		c := newTestCluster(t, 1)
		s := c.members[0]
		if err := s.RemoveMember(ctx(t), 1); !errors.Is(err, ErrNotEnoughStartedMembers) {
			t.Fatalf("removing the only member: got %v, want ErrNotEnoughStartedMembers", err)
		}
		// Past the proposal check (as two removals at once would get), the
		// committed entry is refused at apply.
		err := s.proposeConfChange(ctx(t), &raftpb.ConfChange{
			Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(1),
		})
		if !errors.Is(err, ErrNotEnoughStartedMembers) {
			t.Fatalf("committed removal of the last voter: got %v, want ErrNotEnoughStartedMembers", err)
		}
		if err := putKey(s, ctx(t), []byte("a"), []byte("1")); err != nil {
			t.Fatalf("write after the refused removal: %v", err)
		}
		// The refused entry is in the WAL; replaying it must refuse it again.
		c.stop(0)
		c.start(0)
		c.waitLeader()
		s = c.members[0]
		if v, err := getKey(s, ctx(t), []byte("a"), true); err != nil || string(v) != "1" {
			t.Fatalf("after restart: %q %v", v, err)
		}
		if err := putKey(s, ctx(t), []byte("b"), []byte("2")); err != nil {
			t.Fatalf("write after restart: %v", err)
		}
		if got := len(s.Members()); got != 1 {
			t.Fatalf("members after restart = %d, want 1", got)
		}
	})

	t.Run("PeerDown", func(t *testing.T) {
		c := newTestCluster(t, 3)
		// Ask the leader, and stop a follower, so that no election makes
		// the outcome of the allowed removal unknown.
		li := c.waitLeader()
		p := c.members[li-1]
		down, other := li%3+1, (li+1)%3+1 // the two followers' ids
		deadline := time.Now().Add(10 * time.Second)
		for started := 0; started < 3; {
			started = 0
			for _, m := range p.Members() {
				if m.Name != "" {
					started++
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("members did not all publish their names: %+v", p.Members())
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.stop(int(down - 1))
		for !p.tr.ActiveSince(down).IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("the leader still sees member %d connected 10s after it stopped", down)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// With one follower down, removing the other would leave the
		// leader and the stopped member: no working quorum.
		if err := p.RemoveMember(ctx(t), other); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("removing running member %d while member %d is down: got %v, want ErrUnhealthy", other, down, err)
		}
		// Removing the member that is down is what an operator does instead.
		if err := p.RemoveMember(ctx(t), down); err != nil {
			t.Fatalf("removing member %d, which is down: %v", down, err)
		}
		if got := len(p.Members()); got != 2 {
			t.Fatalf("members = %d, want 2", got)
		}
		if err := putKey(c.members[other-1], ctx(t), []byte("after"), []byte("x")); err != nil {
			t.Fatalf("write after the removal: %v", err)
		}
	})
}

// TestAddKeepsAQuorum checks etcd's strict reconfiguration check on
// additions: no member is added while a voter is down (the new member
// would count toward the quorum before it runs), no voter is added that
// would leave the started voters short of a quorum, and a peer URL is the
// same whatever the case of its scheme and host.
func TestAddKeepsAQuorum(t *testing.T) {
	t.Run("PeerDown", func(t *testing.T) {
		c := newTestCluster(t, 3)
		li := c.waitLeader()
		p := c.members[li-1]
		down := li%3 + 1
		c.stop(int(down - 1))
		deadline := time.Now().Add(10 * time.Second)
		for !p.tr.ActiveSince(down).IsZero() {
			if time.Now().After(deadline) {
				t.Fatalf("the leader still sees member %d connected 10s after it stopped", down)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Two of three run; with a fourth voter, three of four would be
		// needed.
		if _, err := p.addMember(ctx(t), 0, freeURL(t), false); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("adding a voter while member %d is down: got %v, want ErrUnhealthy", down, err)
		}
		if _, err := p.addMember(ctx(t), 0, freeURL(t), true); !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("adding a learner while member %d is down: got %v, want ErrUnhealthy (as etcd)", down, err)
		}
		if got := len(p.Members()); got != 3 {
			t.Fatalf("members = %d, want 3", got)
		}
		if err := putKey(p, ctx(t), []byte("after"), []byte("x")); err != nil {
			t.Fatalf("write after the refused additions: %v", err)
		}
	})

	t.Run("UnstartedVoters", func(t *testing.T) {
		c := newTestCluster(t, 3)
		li := c.waitLeader()
		p := c.members[li-1]
		// Three started voters stay a quorum of four and of five.
		for _, want := range []uint64{4, 5} {
			if id, err := p.addMember(ctx(t), 0, freeURL(t), false); err != nil || id != want {
				t.Fatalf("adding unstarted voter %d: id %d, %v", want, id, err)
			}
		}
		// Not of six.
		if _, err := p.addMember(ctx(t), 0, freeURL(t), false); !errors.Is(err, ErrNotEnoughStartedMembers) {
			t.Fatalf("adding a sixth voter with three started: got %v, want ErrNotEnoughStartedMembers", err)
		}
		if err := putKey(p, ctx(t), []byte("after"), []byte("x")); err != nil {
			t.Fatalf("write with 3 of 5 voters running: %v", err)
		}
	})

	t.Run("PeerURLCase", func(t *testing.T) {
		c := newTestCluster(t, 1)
		c.waitLeader()
		s := c.members[0]
		upper := "HTTP://" + strings.ToUpper(strings.TrimPrefix(c.urls[0], "http://"))
		if _, err := s.addMember(ctx(t), 0, upper, true); !errors.Is(err, ErrPeerURLExists) {
			t.Fatalf("adding %s (member 1's URL, in capitals): got %v, want ErrPeerURLExists", upper, err)
		}
	})
}

// TestCorruptAlarmRefusesWrites checks etcd's behaviour under a CORRUPT
// alarm: requests that change the key space or the leases through raft
// are refused with etcd's "corrupt cluster" (DataLoss), reads still
// answer, and disarming the alarm lets writes through again.
func TestCorruptAlarmRefusesWrites(t *testing.T) {
	c := newTestCluster(t, 1)
	s := c.members[0]
	if err := putKey(s, ctx(t), []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	alarm := func(action pb.AlarmRequest_AlarmAction) {
		t.Helper()
		if _, err := s.Alarm(ctx(t), &pb.AlarmRequest{Action: action, MemberID: 1, Alarm: pb.AlarmType_CORRUPT}); err != nil {
			t.Fatalf("alarm %v: %v", action, err)
		}
	}
	alarm(pb.AlarmRequest_ACTIVATE)
	if got := s.MemberStatus().Alarms; !slices.Equal(got, []string{"CORRUPT"}) {
		t.Fatalf("status alarms %v, want [CORRUPT]", got)
	}
	// As etcd: raising it again answers the alarm that is raised.
	again, err := s.Alarm(ctx(t), &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: 1, Alarm: pb.AlarmType_CORRUPT})
	if err != nil || len(again.Alarms) != 1 || again.Alarms[0].Alarm != pb.AlarmType_CORRUPT || again.Alarms[0].MemberID != 1 {
		t.Fatalf("raising a raised alarm: %v %v, want it listed", again, err)
	}
	if st, err := s.Status(ctx(t), &pb.StatusRequest{}); err != nil || len(st.Errors) != 1 ||
		st.Errors[0] != (&pb.AlarmMember{MemberID: 1, Alarm: pb.AlarmType_CORRUPT}).String() {
		t.Fatalf("Status errors %q (%v), want the alarm as etcd writes it", st.GetErrors(), err)
	}
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t"), Value: []byte("v")}}}
	for name, f := range map[string]func() error{
		"put": func() error {
			_, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("a"), Value: []byte("2")})
			return err
		},
		"delete": func() error { _, err := s.DeleteRange(ctx(t), &pb.DeleteRangeRequest{Key: []byte("a")}); return err },
		"txn":    func() error { _, err := s.Txn(ctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{put}}); return err },
		"compact": func() error {
			_, err := s.Compact(ctx(t), &pb.CompactionRequest{Revision: 1})
			return err
		},
		"lease grant":  func() error { _, err := s.LeaseGrant(ctx(t), &pb.LeaseGrantRequest{TTL: 10}); return err },
		"lease revoke": func() error { _, err := s.LeaseRevoke(ctx(t), &pb.LeaseRevokeRequest{ID: 5}); return err },
	} {
		if err := f(); !errors.Is(err, rpctypes.ErrGRPCCorrupt) {
			t.Errorf("%s under a CORRUPT alarm: got %v, want %v", name, err, rpctypes.ErrGRPCCorrupt)
		}
	}
	if v, err := getKey(s, ctx(t), []byte("a"), true); err != nil || string(v) != "1" {
		t.Fatalf("read under a CORRUPT alarm: %q %v, want the value before the alarm", v, err)
	}
	alarm(pb.AlarmRequest_DEACTIVATE)
	if got := s.MemberStatus().Alarms; len(got) != 0 {
		t.Fatalf("status alarms after disarming: %v", got)
	}
	if err := putKey(s, ctx(t), []byte("a"), []byte("3")); err != nil {
		t.Fatalf("put after disarming: %v", err)
	}
}

// TestNoSpaceDisarmSeenByEveryMember: once a disarm of the NOSPACE alarm is
// acknowledged, a write through any member goes in, as in etcd, even
// through a member that has not applied the disarm yet. The refusal under
// the alarm is decided at apply, in log order, not from the alarms a
// member has applied so far (which lag the leader's by a round trip).
func TestNoSpaceDisarmSeenByEveryMember(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, followers := c.leaderAndFollowers()
	lead := leader.ID()
	alarm := func(action pb.AlarmRequest_AlarmAction) {
		t.Helper()
		if _, err := leader.Alarm(ctx(t), &pb.AlarmRequest{Action: action, MemberID: lead, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			t.Fatalf("alarm %v: %v", action, err)
		}
	}
	for round := range 20 {
		alarm(pb.AlarmRequest_ACTIVATE)
		for _, f := range followers {
			_, err := f.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("under")})
			if !errors.Is(err, rpctypes.ErrGRPCNoSpace) {
				t.Fatalf("round %d: put via member %d under the alarm: got %v, want %v", round, f.ID(), err, rpctypes.ErrGRPCNoSpace)
			}
		}
		alarm(pb.AlarmRequest_DEACTIVATE)
		for _, f := range followers {
			if _, err := f.Put(ctx(t), &pb.PutRequest{Key: []byte("k"), Value: []byte("after")}); err != nil {
				t.Fatalf("round %d: put via member %d right after the disarm was acknowledged: %v", round, f.ID(), err)
			}
		}
	}
}

// TestMembershipChangesSeenByEveryMember: a membership change acknowledged
// by one member is seen by the next call on any other, as in etcd, whose
// checks of such a call are made in log order. A member checks a call
// against the membership it has applied, which lags the leader's by a
// round trip, so without catching up first it refused to remove a member
// just added elsewhere ("member not found") or to re-add a peer URL just
// removed elsewhere.
func TestMembershipChangesSeenByEveryMember(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, f := c.leaderAndFollowers()
	for round := range 10 {
		u := freeURL(t)
		add, err := leader.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{u}, IsLearner: true})
		if err != nil {
			t.Fatalf("round %d: add a learner via the leader: %v", round, err)
		}
		if _, err := f[0].MemberRemove(ctx(t), &pb.MemberRemoveRequest{ID: add.Member.ID}); err != nil {
			t.Fatalf("round %d: remove learner %d via member %d right after its add was acknowledged: %v", round, add.Member.ID, f[0].ID(), err)
		}
		again, err := f[1].MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{u}, IsLearner: true})
		if err != nil {
			t.Fatalf("round %d: re-add %s via member %d right after its removal was acknowledged: %v", round, u, f[1].ID(), err)
		}
		if again.Member.ID <= add.Member.ID {
			t.Fatalf("round %d: re-added member got id %d, not above the removed %d", round, again.Member.ID, add.Member.ID)
		}
		if _, err := leader.MemberRemove(ctx(t), &pb.MemberRemoveRequest{ID: again.Member.ID}); err != nil {
			t.Fatalf("round %d: remove learner %d via the leader: %v", round, again.Member.ID, err)
		}
	}
	for _, s := range c.members {
		resp, err := s.MemberList(ctx(t), &pb.MemberListRequest{Linearizable: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Members) != 3 {
			t.Fatalf("member %d lists %d members, want the 3 voters", s.ID(), len(resp.Members))
		}
	}
}

// TestRestartKeepsMemberAttributes restarts members before any snapshot,
// so that they replay the conf changes that added everyone from the WAL.
// On a durable engine those entries are already applied; the replay must
// not replace the records the engine holds (names and client URLs
// published since) with the bare ones the changes carry, or the other
// members count as never started and membership changes are refused.
func TestRestartKeepsMemberAttributes(t *testing.T) {
	c := newTestCluster(t, 3)
	for i := range 3 {
		c.stop(i)
		c.start(i)
		c.waitLeader()
		s := c.members[i]
		leader, _ := c.leaderAndFollowers()
		commit := leader.MemberStatus().CommitIndex
		// Judge once the member has replayed its log, and has its own
		// name (published again if it had lost it).
		deadline := time.Now().Add(10 * time.Second)
		for (s.MemberStatus().AppliedIndex < commit || !hasName(s, s.ID())) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		for _, m := range s.Members() {
			if want := fmt.Sprintf("metcd-%d", m.ID); m.Name != want {
				t.Fatalf("after restarting member %d it lists member %d with name %q, want %q: %+v", s.ID(), m.ID, m.Name, want, s.Members())
			}
		}
	}
	c.waitFormed()
	leader, _ := c.leaderAndFollowers()
	if _, err := leader.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{freeURL(t)}, IsLearner: true}); err != nil {
		t.Fatalf("add a learner after a rolling restart: %v", err)
	}
}

func hasName(s *Server, id uint64) bool {
	for _, m := range s.Members() {
		if m.ID == id {
			return m.Name != ""
		}
	}
	return false
}

// compactRound puts c/a and c/b at once through s and, 200µs later,
// compacts to the revision the second of them gets, so that the three
// often apply in one batch (on followers above all). It reports whether
// the compaction went through (it is a future revision if it came first).
func compactRound(t *testing.T, s *Server, round int) bool {
	t.Helper()
	rev := s.Header().GetRevision()
	var wg sync.WaitGroup
	for _, k := range []string{"c/a", "c/b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte(k), Value: []byte(fmt.Sprint(round))}); err != nil {
				t.Errorf("round %d: put %s: %v", round, k, err)
			}
		}()
	}
	time.Sleep(200 * time.Microsecond)
	_, err := s.Compact(ctx(t), &pb.CompactionRequest{Revision: rev + 2})
	if err != nil && !errors.Is(err, mvcc.ErrFutureRev) {
		t.Fatalf("round %d: compact to %d: %v", round, rev+2, err)
	}
	wg.Wait()
	return err == nil
}

// TestCompactionInTheBatchOfItsWrites: a compaction applied in the same
// batch as the writes it compacts, while a watcher watches them, must not
// stop the member (it did: the events of those writes were read after
// the batch had raised the compaction revision), and the watcher gets
// every event, as etcd delivers them to a watcher that is caught up.
func TestCompactionInTheBatchOfItsWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	s := c.members[c.waitLeader()-1]
	// A watcher on every member: followers apply what one append brought,
	// so their batches hold more entries.
	for _, m := range c.members {
		if m == s {
			continue
		}
		ow, err := m.Watch(&pb.WatchCreateRequest{Key: []byte("c/"), RangeEnd: []byte("c0")})
		if err != nil {
			t.Fatal(err)
		}
		defer ow.Cancel()
	}
	w, err := s.Watch(&pb.WatchCreateRequest{Key: []byte("c/"), RangeEnd: []byte("c0")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	compacted := 0
	for i := 0; i < 60; i++ {
		if compactRound(t, s, i) {
			compacted++
		}
		if t.Failed() {
			t.FailNow()
		}
		// Every put of the iteration reaches the watcher.
		for got := 0; got < 2; {
			select {
			case resp := <-w.C():
				if resp.Canceled {
					t.Fatalf("iteration %d: watcher canceled (compact revision %d)", i, resp.CompactRevision)
				}
				got += len(resp.Events)
			case <-time.After(10 * time.Second):
				t.Fatalf("iteration %d: %d of the 2 events in 10s", i, got)
			}
		}
	}
	t.Logf("%d of 60 compactions went through", compacted)
	for _, m := range c.members {
		if err := putKey(m, ctx(t), []byte("after"), []byte("x")); err != nil {
			t.Fatalf("member %d stopped: %v", m.ID(), err)
		}
	}
}

// TestWatcherCreatedWhileACompactionApplies: a watcher created from "now"
// while a batch that holds writes and a compaction of them applies, on a
// member that had no watcher, starts from the hub's revision, below the
// compaction. It must get the batch's events, not be canceled as
// compacted (it was: the batch read no events, having seen no watcher,
// and the watcher was sent to catch up from the compacted history). etcd
// never cancels a watcher from the current revision.
func TestWatcherCreatedWhileACompactionApplies(t *testing.T) {
	var mu sync.Mutex
	type made struct {
		w   *watch.Watcher
		rev int64 // the compaction's
	}
	var watchers []made
	testHookBeforeCompaction = func(s *Server, rev int64) {
		w, err := s.Watch(&pb.WatchCreateRequest{Key: []byte("c/"), RangeEnd: []byte("c0")})
		if err != nil {
			t.Errorf("watch: %v", err)
			return
		}
		mu.Lock()
		watchers = append(watchers, made{w, rev})
		mu.Unlock()
	}
	t.Cleanup(func() { testHookBeforeCompaction = nil }) // after the members stop
	c := newTestCluster(t, 3)
	s := c.members[c.waitLeader()-1]
	atRisk := 0 // watchers starting below the compaction of their batch
	for i := 0; i < 400 && atRisk < 5; i++ {
		compactRound(t, s, i)
		// Every member has applied the round: a put through each answers
		// after its own apply.
		for _, m := range c.members {
			if _, err := m.Range(ctx(t), &pb.RangeRequest{Key: []byte("c/a")}); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		for _, m := range watchers {
			if m.w.CreatedRev()+1 < m.rev {
				// It starts below the compaction: its first response
				// must be the batch's events.
				atRisk++
				select {
				case r := <-m.w.C():
					if r.Canceled || len(r.Events) == 0 {
						mu.Unlock()
						t.Fatalf("round %d: a watcher made at revision %d while a compaction to %d applied got %v, want the batch's events", i, m.w.CreatedRev(), m.rev, r)
					}
				case <-time.After(5 * time.Second):
					mu.Unlock()
					t.Fatalf("round %d: a watcher made at revision %d while a compaction to %d applied got nothing in 5s", i, m.w.CreatedRev(), m.rev)
				}
			}
			m.w.Cancel()
		}
		watchers = watchers[:0]
		mu.Unlock()
	}
	t.Logf("%d watchers started below the compaction of their batch", atRisk)
	if atRisk == 0 {
		t.Fatal("no round put writes and their compaction in one batch; the case was not exercised")
	}
}

// TestHandOffLeadership checks that a leader about to stop hands
// leadership to another voter, and that a follower does nothing.
func TestHandOffLeadership(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, followers := c.leaderAndFollowers()
	followers[0].HandOffLeadership(ctx(t))
	if l := c.waitLeader(); l != leader.ID() {
		t.Fatalf("a follower's hand-off changed the leader from %d to %d", leader.ID(), l)
	}
	term := leader.MemberStatus().Term
	leader.HandOffLeadership(ctx(t))
	if leader.isLeader() {
		t.Fatalf("member %d still leads after handing off", leader.ID())
	}
	for _, f := range followers {
		// The one that did not take over learns of it by the new
		// leader's first message.
		deadline := time.Now().Add(5 * time.Second)
		for l := f.Leader(); l == leader.ID() || l == 0; l = f.Leader() {
			if time.Now().After(deadline) {
				t.Fatalf("member %d sees leader %d after the hand-off, want one of the others", f.ID(), l)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if st := f.MemberStatus(); st.Term <= term {
			t.Fatalf("member %d at term %d after the hand-off, want above %d", f.ID(), st.Term, term)
		}
	}
}

// TestWritesThroughLeaderTransfers writes through the leader while it
// hands leadership over. raft drops proposals during a transfer; they are
// not in the log, so the member proposes them again to the next leader
// rather than answering "no leader" with a leader in place.
func TestWritesThroughLeaderTransfers(t *testing.T) {
	c := newTestCluster(t, 3)
	var noLeader, other, ok atomic.Int64
	for round := range 5 {
		leader, followers := c.leaderAndFollowers()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					err := putKey(leader, ctx(t), []byte(fmt.Sprintf("t/%d/%d/%d", round, g, i)), []byte("v"))
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrNoLeader):
						noLeader.Add(1)
					default:
						other.Add(1) // the outcome of a write pending at the change is unknown
					}
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := leader.MoveLeader(ctx(t), &pb.MoveLeaderRequest{TargetID: followers[0].ID()}); err != nil {
			t.Fatalf("round %d: move leader: %v", round, err)
		}
		time.Sleep(50 * time.Millisecond)
		close(stop)
		wg.Wait()
	}
	t.Logf("%d writes succeeded, %d failed with an unknown outcome", ok.Load(), other.Load())
	if n := noLeader.Load(); n != 0 {
		t.Fatalf("%d writes answered no leader during leader transfers", n)
	}
}

// TestReplaceMemberOnItsAddress removes a member and brings a new one up
// on the same peer URL under the next id, with the --cluster list an
// operator has: the old list plus that URL again.
func TestReplaceMemberOnItsAddress(t *testing.T) {
	c := newTestCluster(t, 3)
	if err := putKey(c.members[0], ctx(t), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	leader, followers := c.leaderAndFollowers()
	gone := followers[0].ID()
	u := c.urls[gone-1]
	c.stop(int(gone - 1))
	if err := leader.RemoveMember(ctx(t), gone); err != nil {
		t.Fatal(err)
	}
	if err := leader.AddMember(ctx(t), 4, u); err != nil {
		t.Fatal(err)
	}
	s4 := c.startJoining(4, u)
	waitKey(t, s4, "k")
	cfg := memConfig(t, 4, append(slices.Clone(c.urls), u), t.TempDir())
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("a new cluster's list with a URL twice: %v, want listed twice", err)
	}
}

// TestPhysicalCompactionMeetsAnInstall: physical compaction lets go of the
// engine between its batches, so a member stopped in the middle of one
// stops, and a snapshot installed in the middle of one replaces the engine
// under it: the run ends without touching the old engine again, and the
// compaction is finished on the new one.
func TestPhysicalCompactionMeetsAnInstall(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	c := &testCluster{t: t, configure: func(cfg *Config) {
		// About 600 batches with a pause each: seconds of compaction.
		cfg.CompactionBatchLimit = 1
		cfg.CompactionSleepInterval = 5 * time.Millisecond
		cfg.Logger = zap.New(zapcore.NewTee(cfg.Logger.Core(), core)).Named(fmt.Sprint(cfg.ID))
	}}
	startTestCluster(c, 3)
	leader, _ := c.leaderAndFollowers()
	for i := 0; i < 300; i++ {
		if err := putKey(leader, ctx(t), []byte(fmt.Sprintf("k%d", i%10)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	rev := leader.Header().GetRevision()
	if _, err := leader.Compact(ctx(t), &pb.CompactionRequest{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	fi := slices.IndexFunc(c.members, func(s *Server) bool { return s != leader })
	f := c.members[fi]
	for deadline := time.Now().Add(10 * time.Second); f.mv.CompactRev() != rev; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("member %d did not apply the compaction at %d", f.ID(), rev)
		}
	}
	if f.mv.PhysicalRev() >= rev {
		t.Fatalf("member %d finished the compaction before it was stopped; the test did not exercise a stop mid-compaction", f.ID())
	}
	c.stop(fi)
	// Move the leader's raft log past the stopped member, so it restarts
	// into a snapshot install while it finishes the compaction.
	for i := 0; i < 60; i++ {
		if err := putKey(leader, ctx(t), []byte(fmt.Sprintf("after%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.start(fi)
	f = c.members[fi]
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := getKey(f, ctx(t), []byte("after59"), false)
		if err == nil && f.mv.PhysicalRev() == rev && leader.mv.PhysicalRev() == rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d: get after59: %v; physical compaction at %d (leader %d), want %d", f.ID(), err, f.mv.PhysicalRev(), leader.mv.PhysicalRev(), rev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := logs.FilterMessage("physical compaction left for the installed snapshot's engine").Len(); n == 0 {
		t.Fatal("no snapshot install met a compaction; the test did not exercise one")
	}
	if _, err := f.Range(ctx(t), &pb.RangeRequest{Key: []byte("k1"), Revision: rev - 1, Serializable: true}); !errors.Is(err, mvcc.ErrCompacted) {
		t.Fatalf("read below the compaction on member %d: %v, want ErrCompacted", f.ID(), err)
	}
	want, err := leader.HashKV(ctx(t), &pb.HashKVRequest{Revision: rev + 60})
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.HashKV(ctx(t), &pb.HashKVRequest{Revision: rev + 60})
	if err != nil || got.Hash != want.Hash {
		t.Fatalf("member %d HashKV at %d: %v %v, leader's %d", f.ID(), rev+60, got.GetHash(), err, want.Hash)
	}
}

// TestLearnerAndMemberIDEdges: a learner refuses membership changes on
// every API (the curl API reached the server directly); a promotion sent
// to a follower answers with a list that shows it; a taken peer URL is
// named before the learner limit, and a lagging voter as not in sync
// before it is named not a learner, in etcd's order; and an id past the
// largest one can no longer wrap to 0 (a curl add at the largest uint64
// made every later gRPC add fail).
func TestLearnerAndMemberIDEdges(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, f := c.leaderAndFollowers()
	l := c.startLearner(leader)
	if _, err := leader.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{c.urls[0]}, IsLearner: true}); !errors.Is(err, ErrPeerURLExists) {
		t.Fatalf("second learner on member 1's URL: %v, want ErrPeerURLExists", err)
	}
	for deadline := time.Now().Add(10 * time.Second); !l.IsLearner() || !hasName(leader, l.ID()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("learner %d did not start", l.ID())
		}
	}
	if err := l.AddMember(ctx(t), 9, freeURL(t)); !errors.Is(err, rpctypes.ErrGRPCNotSupportedForLearner) {
		t.Fatalf("add through the learner: %v, want ErrGRPCNotSupportedForLearner", err)
	}
	if err := l.RemoveMember(ctx(t), 3); !errors.Is(err, rpctypes.ErrGRPCNotSupportedForLearner) {
		t.Fatalf("remove through the learner: %v, want ErrGRPCNotSupportedForLearner", err)
	}
	resp, err := promoteWhenReady(t, f[0], l.ID())
	if err != nil {
		t.Fatalf("promote %d through follower %d: %v", l.ID(), f[0].ID(), err)
	}
	if len(resp.Members) != 4 {
		t.Fatalf("promote answered %d members, want 4", len(resp.Members))
	}
	for _, m := range resp.Members {
		if m.IsLearner {
			t.Fatalf("promote through a follower answered member %d as a learner: %v", m.ID, resp.Members)
		}
	}

	if _, err := leader.MemberPromote(ctx(t), &pb.MemberPromoteRequest{ID: l.ID()}); !errors.Is(err, rpctypes.ErrGRPCMemberNotLearner) {
		t.Fatalf("promote the promoted member %d again: %v, want ErrGRPCMemberNotLearner", l.ID(), err)
	}
	if err := leader.AddMember(ctx(t), math.MaxUint64, freeURL(t)); err != nil {
		t.Fatal(err)
	}
	// As etcd: a voter that never started is not in sync before it is not
	// a learner.
	if _, err := leader.MemberPromote(ctx(t), &pb.MemberPromoteRequest{ID: math.MaxUint64}); !errors.Is(err, rpctypes.ErrGRPCLearnerNotReady) {
		t.Fatalf("promote a voter that never started: %v, want ErrGRPCLearnerNotReady", err)
	}
	if err := leader.RemoveMember(ctx(t), math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{freeURL(t)}, IsLearner: true}); !errors.Is(err, ErrNoMemberID) {
		t.Fatalf("add with no id left: %v, want ErrNoMemberID", err)
	}
	for _, m := range leader.Members() {
		if m.ID == 0 {
			t.Fatalf("member 0 added: %+v", leader.Members())
		}
	}
}

// TestUpdatedPeerURLAfterRestart: a founding member whose peer URL a
// member update changed restarts with its --cluster list unchanged (the
// list names the cluster) and listens on the new URL, where the others
// send; it listened on the old one, so a snapshot the leader sent it never
// arrived and it stayed behind for good. The member applied the update
// before it stopped; on the memory engine it is then only in the WAL. Its
// old port, taken meanwhile, does not stop it.
func TestUpdatedPeerURLAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, _ := c.leaderAndFollowers()
	vi := slices.IndexFunc(c.members, func(s *Server) bool { return s != leader })
	victim := c.members[vi].ID()
	newURL := freeURL(t)
	if _, err := leader.MemberUpdate(ctx(t), &pb.MemberUpdateRequest{ID: victim, PeerURLs: []string{newURL}}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		i := slices.IndexFunc(c.members[vi].Members(), func(m Member) bool { return m.ID == victim })
		if c.members[vi].Members()[i].PeerURL == newURL {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d did not apply its own update", victim)
		}
	}
	c.stop(vi)
	// Something else takes the old address: the member listens elsewhere.
	oldLn, err := net.Listen("tcp", strings.TrimPrefix(c.urls[vi], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldLn.Close()
	// Past the leader's log, so the member needs a snapshot.
	for i := 0; i < 60; i++ {
		if err := putKey(leader, ctx(t), []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	c.start(vi)
	s := c.members[vi]
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := getKey(s, ctx(t), []byte("k59"), false); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d, restarted after its peer URL moved to %s, did not catch up: %+v", victim, newURL, s.MemberStatus())
		}
	}
	if s.MemberStatus().SnapshotIndex == 0 {
		t.Fatal("the member caught up without a snapshot; the test did not exercise one")
	}
}

// TestPromoteThroughLeaderLoss: a promotion sent to a follower just as the
// leader stops is tried again through the next leader, as etcd does; it
// failed at once with "no leader" (the forward to the stopped leader).
func TestPromoteThroughLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, f := c.leaderAndFollowers()
	l := c.startLearner(leader)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := leader.node.Status()
		if pr, ok := st.Progress[l.ID()]; ok && pr.Match >= st.Progress[leader.ID()].Match && hasName(leader, l.ID()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("learner %d did not catch up", l.ID())
		}
	}
	c.stop(slices.Index(c.members, leader))
	// A voter is no learner, whatever became of a try through the lost
	// leader (a try that never reached one promoted nothing).
	if _, err := promoteWhenReady(t, f[0], f[1].ID()); !errors.Is(err, rpctypes.ErrGRPCMemberNotLearner) {
		t.Fatalf("promote voter %d through follower %d as the leader stopped: %v, want ErrGRPCMemberNotLearner", f[1].ID(), f[0].ID(), err)
	}
	resp, err := promoteWhenReady(t, f[0], l.ID())
	if err != nil {
		t.Fatalf("promote %d through follower %d as the leader stopped: %v", l.ID(), f[0].ID(), err)
	}
	for _, m := range resp.Members {
		if m.ID == l.ID() && m.IsLearner {
			t.Fatalf("member %d still a learner after its promotion: %v", l.ID(), resp.Members)
		}
	}
}

// TestPhysicalCompactionWaitEndsAtAnInstall: a Compact with physical set
// waits for the physical compaction; when a snapshot install ends the run,
// an installed engine already compacted that far ends the wait (it waited
// until the client's deadline: nothing else would run). The install is
// made here as the apply loop makes it, on an idle one-member cluster.
func TestPhysicalCompactionWaitEndsAtAnInstall(t *testing.T) {
	c := &testCluster{t: t, configure: func(cfg *Config) {
		cfg.CompactionBatchLimit = 1
		cfg.CompactionSleepInterval = 200 * time.Millisecond
	}}
	startTestCluster(c, 1)
	s := c.members[0]
	for i := 0; i < 100; i++ {
		if err := putKey(s, ctx(t), []byte(fmt.Sprintf("k%d", i%5)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	rev := s.Header().GetRevision()
	done := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := s.Compact(cctx, &pb.CompactionRequest{Revision: rev, Physical: true})
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); s.mv.CompactRev() != rev; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("compaction at %d not applied", rev)
		}
	}
	// A snapshot of the same state, compacted physically: what a leader
	// that finished its run would send.
	v, err := s.store.View()
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	_, err = v.WriteTo(&snap)
	v.Close()
	if err != nil {
		t.Fatal(err)
	}
	other, err := kvstore.Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	eng := memory.New()
	if _, _, err := other.Restore(&snap, eng); err != nil {
		t.Fatal(err)
	}
	omv, err := mvcc.Open(eng, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := omv.PhysicalCompact(eng, rev, 0, nil); err != nil {
		t.Fatal(err)
	}
	ov, err := other.View()
	if err != nil {
		t.Fatal(err)
	}
	snap.Reset()
	_, err = ov.WriteTo(&snap)
	ov.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s.mv.PhysicalRev() >= rev {
		t.Fatal("the member's own run finished before the install; the test did not exercise one")
	}
	_, old, err := s.store.Restore(&snap, memory.New())
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	if err := s.reloadState(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Compact(physical) at %d after the install: %v (installed engine compacted to %d)", rev, err, s.mv.PhysicalRev())
	}
}

// promoteWhenReady asks s to promote id until the answer is other than
// "not in sync with leader" (a new leader knows a learner's progress only
// after its first append to it), for up to 15 s.
func promoteWhenReady(t *testing.T, s *Server, id uint64) (*pb.MemberPromoteResponse, error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := s.MemberPromote(ctx(t), &pb.MemberPromoteRequest{ID: id})
		if !errors.Is(err, rpctypes.ErrGRPCLearnerNotReady) || time.Now().After(deadline) {
			return resp, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchInApply makes, through testHookBeforeNotify, a watcher for req
// inside the apply loop, in the first batch handed to the hub after arm
// is called; fill fills its queue with progress responses. Set it before
// the member starts.
type watchInApply struct {
	mu     sync.Mutex
	armed  bool
	made   *watch.Watcher
	filled int
}

func newWatchInApply(t *testing.T, req *pb.WatchCreateRequest, fill bool) *watchInApply {
	a := &watchInApply{}
	testHookBeforeNotify = func(s *Server) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !a.armed {
			return
		}
		a.armed = false
		w, err := s.Watch(req)
		if err != nil {
			t.Errorf("watch: %v", err)
			return
		}
		for fill && w.RequestProgress() {
			a.filled++
		}
		a.made = w
	}
	t.Cleanup(func() { testHookBeforeNotify = nil }) // after the member stops
	return a
}

func (a *watchInApply) arm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = true
}

// watcher returns the watcher made, or nil, and the responses queued in it.
func (a *watchInApply) watcher() (*watch.Watcher, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.made, a.filled
}

// A watcher asking for prev_kv made while a batch applies, after its
// events were read without PrevKv (no such watcher existed then), gets
// them with PrevKv: the apply loop reads them again once committed.
func TestPrevKVWatcherMadeDuringApply(t *testing.T) {
	hook := newWatchInApply(t, &pb.WatchCreateRequest{Key: []byte("p"), PrevKv: true}, false)
	c := newTestCluster(t, 1)
	s := c.members[0]
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("p"), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	// A watcher without prev_kv, so that the apply loop reads events.
	plain, err := s.Watch(&pb.WatchCreateRequest{Key: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Cancel()
	hook.arm()
	resp, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("p"), Value: []byte("v2")})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := hook.watcher()
	if w == nil {
		t.Fatal("the hook made no watcher")
	}
	defer w.Cancel()
	select {
	case r := <-w.C():
		if len(r.Events) != 1 || r.Events[0].Kv.ModRevision != resp.Header.Revision || r.Events[0].PrevKv == nil ||
			string(r.Events[0].PrevKv.Value) != "v1" {
			t.Fatalf("prev_kv watcher made during the apply got %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("prev_kv watcher made during the apply got nothing")
	}
	select {
	case r := <-plain.C():
		if len(r.Events) != 1 || r.Events[0].PrevKv != nil {
			t.Fatalf("plain watcher got %v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("plain watcher got nothing")
	}
}

// A watcher made while a batch applies with no watcher at all, whose
// events were therefore not read, stays synced: a compaction right after
// does not cancel it, as etcd does not cancel a watcher made with
// start_revision 0. The hook fills the watcher's channel with progress
// responses, so that a watcher sent to catch-up instead (as before
// 633e9bb) would be skipped there as full, and could not finish catching
// up before the compaction; the batch writes another key, so a synced one
// is sent nothing and stays synced.
func TestWatcherMadeDuringUnwatchedApply(t *testing.T) {
	hook := newWatchInApply(t, &pb.WatchCreateRequest{Key: []byte("p")}, true)
	c := newTestCluster(t, 1)
	s := c.members[0]
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("p"), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	hook.arm()
	// No watcher when this batch starts; the hook makes one on "p".
	if _, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("q"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	w, n := hook.watcher()
	if w == nil || n == 0 {
		t.Fatalf("the hook made no watcher, or filled nothing (%d)", n)
	}
	defer w.Cancel()
	r, err := s.Put(ctx(t), &pb.PutRequest{Key: []byte("q"), Value: []byte("y")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compact(ctx(t), &pb.CompactionRequest{Revision: r.Header.Revision}); err != nil {
		t.Fatal(err)
	}
	recv := func() *pb.WatchResponse {
		select {
		case resp, ok := <-w.C():
			if !ok || resp.Canceled || resp.CompactRevision != 0 {
				t.Fatalf("watcher made during the apply canceled after the compaction: %v (open %v)", resp, ok)
			}
			return resp
		case <-time.After(5 * time.Second):
			t.Fatal("watcher made during the apply got nothing")
			return nil
		}
	}
	for range n {
		if resp := recv(); len(resp.Events) != 0 {
			t.Fatalf("watcher made during the apply got events for another key: %v", resp.Events)
		}
	}
	r, err = s.Put(ctx(t), &pb.PutRequest{Key: []byte("p"), Value: []byte("v2")})
	if err != nil {
		t.Fatal(err)
	}
	if resp := recv(); len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != r.Header.Revision || string(resp.Events[0].Kv.Value) != "v2" {
		t.Fatalf("watcher made during the apply got %v, want p=v2 at %d", resp.Events, r.Header.Revision)
	}
}
