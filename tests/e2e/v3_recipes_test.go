package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// recipesSetup starts a 3-member cluster and returns a client of each
// member and two leases of 60 s.
func recipesSetup(t *testing.T) (*Cluster, context.Context, []*clientv3.Client, clientv3.LeaseID, clientv3.LeaseID) {
	c := NewV3Cluster(t, Options{Size: 3})
	ctx := v3ctx(t)
	clis := []*clientv3.Client{c.V3Client(t, 0), c.V3Client(t, 1), c.V3Client(t, 2)}
	var leases []clientv3.LeaseID
	for range 2 {
		g, err := clis[0].Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, g.ID)
	}
	return c, ctx, clis, leases[0], leases[1]
}

// TestV3Lock drives etcd's Lock service (v3lockpb), which clients in other
// languages use (jetcd's lock client, etcd's /v3/lock gateway), across the
// members of a cluster: a second Lock waits for the first hold's Unlock
// through another member; a hold ends with its lease; a waiter that gives
// up leaves no key; the service's keys are those of clientv3's
// concurrency.Mutex, so both kinds of client exclude each other.
func TestV3Lock(t *testing.T) {
	c, ctx, clis, la, lb := recipesSetup(t)
	locks := make([]v3lockpb.LockClient, len(clis))
	for i, cli := range clis {
		locks[i] = v3lockpb.NewLockClient(cli.ActiveConnection())
	}

	first, err := locks[0].Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(la)})
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if !strings.HasPrefix(string(first.Key), "lk/") || first.Header.GetRevision() == 0 {
		t.Fatalf("Lock: key %q header %v, want a key under lk/", first.Key, first.Header)
	}
	if g := mustV3Get(t, clis[1], string(first.Key)); len(g.Kvs) != 1 || g.Kvs[0].Lease != int64(la) {
		t.Fatalf("hold key %q: %v, want it attached to lease %x", first.Key, g.Kvs, la)
	}

	// A client-side mutex on the same name sees the lock taken.
	sess, err := concurrency.NewSession(clis[2], concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := concurrency.NewMutex(sess, "lk").TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("concurrency.Mutex.TryLock while the service holds lk: %v, want ErrLocked", err)
	}

	type result struct {
		resp *v3lockpb.LockResponse
		err  error
	}
	second := make(chan result, 1)
	go func() {
		r, err := locks[1].Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(lb)})
		second <- result{r, err}
	}()
	select {
	case r := <-second:
		t.Fatalf("second Lock returned while the first holds lk: %v %v", r.resp, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	un, err := locks[2].Unlock(ctx, &v3lockpb.UnlockRequest{Key: first.Key})
	if err != nil {
		t.Fatalf("Unlock through another member: %v", err)
	}
	var r result
	select {
	case r = <-second:
	case <-time.After(20 * time.Second):
		t.Fatal("second Lock still waiting 20 s after the Unlock")
	}
	if r.err != nil || string(r.resp.Key) == string(first.Key) || r.resp.Header.GetRevision() < un.Header.GetRevision() {
		t.Fatalf("second Lock: %v %v, want a new key at or after the unlock's revision %d", r.resp, r.err, un.Header.GetRevision())
	}

	// A waiter that gives up leaves no key behind.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = locks[0].Lock(wctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: int64(la)})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Lock given up after 300 ms: %v, want DeadlineExceeded", err)
	}
	c.Eventually(10*time.Second, "only the holder's key under lk/", func() error {
		g := mustV3Get(t, clis[0], "lk/", clientv3.WithPrefix())
		if len(g.Kvs) != 1 || string(g.Kvs[0].Key) != string(r.resp.Key) {
			return errors.New(strings.Join(kvKeys(g.Kvs), " "))
		}
		return nil
	})

	// The hold ends with its lease: the client-side mutex gets in.
	if _, err := clis[0].Revoke(ctx, lb); err != nil {
		t.Fatal(err)
	}
	m := concurrency.NewMutex(sess, "lk")
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("concurrency.Mutex.TryLock after the holder's lease was revoked: %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// A lease that does not exist is etcd's error, with its code.
	_, err = locks[0].Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk2"), Lease: 0x7eadbeef})
	if status.Code(err) != codes.NotFound || !isV3Err(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("Lock on an unknown lease: %v, want NotFound %q", err, rpctypes.ErrLeaseNotFound)
	}

	// etcd's gateway paths.
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	in, _ := json.Marshal(map[string]any{"name": b64("glk"), "lease": int64(la)})
	resp, err := c.Do(1, http.MethodPost, "/v3/lock/lock", in)
	var out struct {
		Key string `json:"key"`
	}
	if err != nil || resp.Code != http.StatusOK || json.Unmarshal([]byte(resp.Body), &out) != nil {
		t.Fatalf("POST /v3/lock/lock: %v %v", resp, err)
	}
	key, err := base64.StdEncoding.DecodeString(out.Key)
	if err != nil || !strings.HasPrefix(string(key), "glk/") {
		t.Fatalf("POST /v3/lock/lock: key %q (%v), want one under glk/", key, err)
	}
	in, _ = json.Marshal(map[string]any{"key": out.Key})
	if resp, err := c.Do(2, http.MethodPost, "/v3/lock/unlock", in); err != nil || resp.Code != http.StatusOK {
		t.Fatalf("POST /v3/lock/unlock: %v %v", resp, err)
	}
	if g := mustV3Get(t, clis[0], "glk/", clientv3.WithPrefix()); len(g.Kvs) != 0 {
		t.Fatalf("keys under glk/ after the gateway's unlock: %v", kvKeys(g.Kvs))
	}
}

// TestV3Election drives etcd's Election service (v3electionpb) across the
// members: campaign, leader, observe, proclaim, resign, a second
// campaigner taking over, etcd's errors, and clientv3's
// concurrency.Election reading the same election.
func TestV3Election(t *testing.T) {
	c, ctx, clis, la, lb := recipesSetup(t)
	els := make([]v3electionpb.ElectionClient, len(clis))
	for i, cli := range clis {
		els[i] = v3electionpb.NewElectionClient(cli.ActiveConnection())
	}
	name := []byte("el")

	if _, err := els[1].Leader(ctx, &v3electionpb.LeaderRequest{Name: name}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), concurrency.ErrElectionNoLeader.Error()) {
		t.Fatalf("Leader of an election nobody runs in: %v, want NotFound %q", err, concurrency.ErrElectionNoLeader)
	}

	// An observer from before the first campaign sees every leader value.
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs, err := els[2].Observe(octx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	observed := make(chan string, 16)
	go func() {
		defer close(observed)
		for {
			r, err := obs.Recv()
			if err != nil {
				return
			}
			observed <- string(r.Kv.Value)
		}
	}()
	expectObserved := func(want string) {
		t.Helper()
		select {
		case v, ok := <-observed:
			if !ok || v != want {
				t.Fatalf("observed %q (open %v), want %q", v, ok, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("observer got nothing in 20 s, want %q", want)
		}
	}

	ca, err := els[0].Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(la), Value: []byte("a")})
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	lead := ca.Leader
	if string(lead.Name) != "el" || !strings.HasPrefix(string(lead.Key), "el/") || lead.Lease != int64(la) || lead.Rev == 0 {
		t.Fatalf("Campaign: leader key %v", lead)
	}
	expectObserved("a")
	if l, err := els[1].Leader(ctx, &v3electionpb.LeaderRequest{Name: name}); err != nil || string(l.Kv.Value) != "a" || string(l.Kv.Key) != string(lead.Key) {
		t.Fatalf("Leader: %v %v, want a at %q", l, err, lead.Key)
	}

	type result struct {
		resp *v3electionpb.CampaignResponse
		err  error
	}
	second := make(chan result, 1)
	go func() {
		r, err := els[1].Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(lb), Value: []byte("b")})
		second <- result{r, err}
	}()

	if _, err := els[2].Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: lead, Value: []byte("a2")}); err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	expectObserved("a2")
	stale := &v3electionpb.LeaderKey{Name: lead.Name, Key: lead.Key, Rev: lead.Rev + 1000, Lease: lead.Lease}
	if _, err := els[0].Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: stale, Value: []byte("x")}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), concurrency.ErrElectionNotLeader.Error()) {
		t.Fatalf("Proclaim with a leader key of another revision: %v, want FailedPrecondition %q", err, concurrency.ErrElectionNotLeader)
	}
	if _, err := els[0].Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Proclaim without a leader key: %v, want InvalidArgument", err)
	}
	select {
	case r := <-second:
		t.Fatalf("second Campaign returned while the first leads: %v %v", r.resp, r.err)
	default:
	}

	if _, err := els[1].Resign(ctx, &v3electionpb.ResignRequest{Leader: lead}); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	var r result
	select {
	case r = <-second:
	case <-time.After(20 * time.Second):
		t.Fatal("second Campaign still waiting 20 s after the leader resigned")
	}
	if r.err != nil || r.resp.Leader.Lease != int64(lb) {
		t.Fatalf("second Campaign: %v %v", r.resp, r.err)
	}
	expectObserved("b")
	// Resigning a leadership already given up is not an error.
	if _, err := els[0].Resign(ctx, &v3electionpb.ResignRequest{Leader: lead}); err != nil {
		t.Fatalf("second Resign of the old leader key: %v", err)
	}

	// clientv3's own election recipe reads the same election.
	sess, err := concurrency.NewSession(clis[0], concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if l, err := concurrency.NewElection(sess, "el").Leader(ctx); err != nil || string(l.Kvs[0].Value) != "b" {
		t.Fatalf("concurrency.Election.Leader: %v %v, want b", l, err)
	}

	// The leadership ends with its lease; the observer sees the next one.
	ce := concurrency.NewElection(sess, "el")
	done := make(chan error, 1)
	go func() { done <- ce.Campaign(ctx, "c") }()
	if _, err := clis[1].Revoke(ctx, lb); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("concurrency.Election.Campaign after the leader's lease was revoked: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("concurrency.Election.Campaign still waiting 20 s after the leader's lease was revoked")
	}
	expectObserved("c")

	// etcd's gateway path.
	in, _ := json.Marshal(map[string]any{"name": base64.StdEncoding.EncodeToString(name)})
	resp, err := c.Do(1, http.MethodPost, "/v3/election/leader", in)
	var out struct {
		KV struct {
			Value string `json:"value"`
		} `json:"kv"`
	}
	if err != nil || resp.Code != http.StatusOK || json.Unmarshal([]byte(resp.Body), &out) != nil || out.KV.Value != base64.StdEncoding.EncodeToString([]byte("c")) {
		t.Fatalf("POST /v3/election/leader: %v %v, want the value c", resp, err)
	}
}
