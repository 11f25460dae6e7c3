package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"

	"github.com/metcd/metcd/server"
)

// fakeBackend stands in for the server below the API: a map, and errors on
// demand, so each HTTP mapping can be checked on its own.
type fakeBackend struct {
	mu      sync.Mutex
	kv      map[string]string
	err     error
	lastLin bool
	added   map[uint64]string
	rev     int64
	// removeErr, if set, is what RemoveMember of a known member returns.
	removeErr error
	leader    uint64   // MemberStatus's leader (1 unless a test clears it)
	alarms    []string // MemberStatus's raised alarm types
	learner   bool     // whether member 1, this one, is a learner
	// readErr, if set, is what ReadCheck returns for a linearizable
	// (true) or serializable (false) read.
	readErr map[bool]error
}

func newFake() *fakeBackend {
	return &fakeBackend{kv: map[string]string{}, added: map[uint64]string{}, leader: 1}
}

func (f *fakeBackend) PutKey(_ context.Context, k, v []byte) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.kv[string(k)] = string(v)
	f.rev++
	return f.rev, nil
}

func (f *fakeBackend) DeleteKey(_ context.Context, k []byte) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	if _, ok := f.kv[string(k)]; !ok {
		return f.rev, server.ErrKeyNotFound
	}
	delete(f.kv, string(k))
	f.rev++
	return f.rev, nil
}

func (f *fakeBackend) ReadCheck(_ context.Context, lin bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLin = lin
	return f.readErr[lin]
}

func (f *fakeBackend) GetKey(_ context.Context, k []byte, lin bool) ([]byte, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastLin = lin
	if f.err != nil {
		return nil, 0, f.err
	}
	v, ok := f.kv[string(k)]
	if !ok {
		return nil, f.rev, server.ErrKeyNotFound
	}
	return []byte(v), f.rev, nil
}

func (f *fakeBackend) AddMember(_ context.Context, id uint64, u string) error {
	if err := server.ValidatePeerURL(u); err != nil {
		return err
	}
	f.added[id] = u
	return nil
}

func (f *fakeBackend) RemoveMember(_ context.Context, id uint64) error {
	if _, ok := f.added[id]; !ok {
		return server.ErrMemberNotFound
	}
	return f.removeErr
}

func (f *fakeBackend) Members() []server.Member {
	return []server.Member{{ID: 1, IsLearner: f.learner}, {ID: 2}}
}
func (f *fakeBackend) MemberStatus() server.Status {
	return server.Status{MemberID: 1, LeaderID: f.leader, Alarms: f.alarms}
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b), rec.Result().Header
}

func TestKeysAndConsistency(t *testing.T) {
	f := newFake()
	h := NewHandler(f, Options{MaxRequestBytes: 16})
	if code, _, _ := do(t, h, "PUT", "/config/db/host", "10.0.0.5"); code != http.StatusNoContent {
		t.Fatalf("PUT: %d", code)
	}
	if f.kv["config/db/host"] != "10.0.0.5" {
		t.Fatalf("stored %v", f.kv)
	}
	if code, body, _ := do(t, h, "GET", "/config/db/host", ""); code != 200 || body != "10.0.0.5" || !f.lastLin {
		t.Fatalf("GET: %d %q linearizable=%v", code, body, f.lastLin)
	}
	if code, _, _ := do(t, h, "GET", "/config/db/host?consistency=serializable", ""); code != 200 || f.lastLin {
		t.Fatalf("serializable GET: %d linearizable=%v", code, f.lastLin)
	}
	if code, _, _ := do(t, h, "PUT", "/a%2Fb%20c", "x"); code != http.StatusNoContent || f.kv["a/b c"] != "x" {
		t.Fatalf("escaped key: %d %v", code, f.kv)
	}
	if code, body, _ := do(t, h, "HEAD", "/config/db/host", ""); code != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", code, body)
	}
	if code, _, _ := do(t, h, "DELETE", "/config/db/host", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _, _ := do(t, h, "DELETE", "/config/db/host", ""); code != http.StatusNotFound {
		t.Fatalf("second DELETE: %d", code)
	}
}

func TestBadInput(t *testing.T) {
	h := NewHandler(newFake(), Options{MaxRequestBytes: 32})
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/", "x", 400},
		{"GET", "/", "", 400},
		{"PUT", "/" + strings.Repeat("k", MaxKeyBytes+1), "x", 400},
		{"PUT", "/k", strings.Repeat("v", 33), 413},
		{"PUT", "/k", strings.Repeat("v", 32), 204},
		{"PATCH", "/k", "", 405},
		{"GET", "/k?consistency=bogus", "", 400},
		{"POST", "/abc", "http://127.0.0.1:1", 400},
		{"POST", "/0", "http://127.0.0.1:1", 400},
		{"POST", "/4", "not a url", 400},
		{"POST", "/4", "", 400},
		{"POST", "/4", "http://127.0.0.1:4000", 204},
		{"DELETE", "/admin/members/9", "", 404},
		{"DELETE", "/admin/members/x", "", 400},
		{"PUT", "/admin/status", "x", 405},
		{"PUT", "/v3/kv/put", "x", 404},
	} {
		code, body, hdr := do(t, h, tc.method, tc.path, tc.body)
		if code != tc.want {
			t.Errorf("%s %.40s: got %d (%s), want %d", tc.method, tc.path, code, strings.TrimSpace(body), tc.want)
		}
		if code >= 400 && code != 405 && (body == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain")) {
			t.Errorf("%s %.40s: error without a text message: %q %q", tc.method, tc.path, hdr.Get("Content-Type"), body)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err     error
		code    int
		outcome string
	}{
		{server.ErrNoLeader, 503, ""},
		{server.ErrLeaderLost, 503, "unknown"},
		{server.ErrTimeout, 504, "unknown"},
		{server.ErrReadTimeout, 504, ""},
		{server.ErrStopped, 503, ""},
		{rpctypes.ErrGRPCCorrupt, 500, ""},
		{fmt.Errorf("disk on fire"), 500, ""},
	} {
		f := newFake()
		f.err = tc.err
		h := NewHandler(f, Options{})
		code, body, hdr := do(t, h, "PUT", "/k", "v")
		if code != tc.code || hdr.Get("X-Metcd-Outcome") != tc.outcome || body == "" {
			t.Errorf("%v: got %d outcome=%q body=%q, want %d outcome=%q", tc.err, code, hdr.Get("X-Metcd-Outcome"), body, tc.code, tc.outcome)
		}
	}
}

// TestRemoveRefusals checks the statuses of removals the server refuses
// to protect the quorum (see README, "Failure behaviour").
func TestRemoveRefusals(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{fmt.Errorf("%w: 0 of the 0 voting members left would have started", server.ErrNotEnoughStartedMembers), 409, "not enough started members"},
		{fmt.Errorf("%w: 1 of the 2 voting members left are connected to member 1", server.ErrUnhealthy), 503, "unhealthy cluster"},
		{nil, 204, ""},
	} {
		f := newFake()
		f.added[3] = "http://127.0.0.1:3"
		f.removeErr = tc.err
		code, body, _ := do(t, NewHandler(f, Options{}), "DELETE", "/admin/members/3", "")
		if code != tc.code || !strings.Contains(body, tc.msg) {
			t.Errorf("removal failing with %v: got %d %q, want %d with %q", tc.err, code, body, tc.code, tc.msg)
		}
	}
}

// TestHealth checks /health as etcd answers it: unhealthy with an alarm
// raised (unless ?exclude= names its type), without a leader, or when a
// read fails; ?serializable=true skips the leader and reads locally.
func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		leader  uint64
		alarms  []string
		readErr map[bool]error
		query   string
		code    int
		body    string
		lin     bool // the read the check made
	}{
		{1, nil, nil, "", 200, `{"health":"true","reason":""}`, true},
		{0, nil, nil, "", 503, `{"health":"false","reason":"RAFT NO LEADER"}`, false},
		{0, nil, nil, "?serializable=true", 200, `{"health":"true","reason":""}`, false},
		{1, nil, map[bool]error{true: server.ErrReadTimeout}, "", 503, `{"health":"false","reason":"RANGE ERROR:` + server.ErrReadTimeout.Error(), true},
		{0, nil, map[bool]error{true: server.ErrReadTimeout}, "?serializable=true", 200, `{"health":"true","reason":""}`, false},
		{1, []string{"NOSPACE"}, nil, "", 503, `{"health":"false","reason":"ALARM NOSPACE"}`, false},
		{0, []string{"NOSPACE"}, nil, "", 503, `{"health":"false","reason":"ALARM NOSPACE"}`, false}, // alarms first, as etcd
		{1, []string{"NOSPACE"}, nil, "?exclude=NOSPACE", 200, `{"health":"true","reason":""}`, true},
		{1, []string{"NOSPACE", "CORRUPT"}, nil, "?exclude=NOSPACE", 503, `{"health":"false","reason":"ALARM CORRUPT"}`, false},
		{1, []string{"NOSPACE", "CORRUPT"}, nil, "?exclude=NOSPACE&exclude=CORRUPT", 200, `{"health":"true","reason":""}`, true},
	} {
		f := newFake()
		f.leader, f.alarms, f.readErr = tc.leader, tc.alarms, tc.readErr
		code, body, _ := do(t, NewHandler(f, Options{}), "GET", "/health"+tc.query, "")
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("leader %d, alarms %v, read errors %v, /health%s: got %d %s, want %d with %s", tc.leader, tc.alarms, tc.readErr, tc.query, code, body, tc.code, tc.body)
		}
		if code == 200 && f.lastLin != tc.lin {
			t.Errorf("/health%s read linearizable=%v, want %v", tc.query, f.lastLin, tc.lin)
		}
	}
}

// TestProbes checks /livez and /readyz as etcd 3.7 answers them.
func TestProbes(t *testing.T) {
	const allReady = "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
	for _, tc := range []struct {
		name    string
		setup   func(f *fakeBackend)
		path    string
		code    int
		body    string // exact, or with want as a substring when contains
		partial bool
	}{
		{"livez", nil, "/livez", 200, "ok\n", false},
		{"livez verbose", nil, "/livez?verbose", 200, "[+]serializable_read ok\nok\n", false},
		{"readyz", nil, "/readyz", 200, "ok\n", false},
		{"readyz verbose", nil, "/readyz?verbose", 200, allReady, false},
		{"one check", nil, "/readyz/non_learner?verbose", 200, "[+]non_learner ok\nok\n", false},
		{"no quorum", func(f *fakeBackend) { f.readErr = map[bool]error{true: server.ErrNoLeader} }, "/readyz", 503,
			"[+]data_corruption ok\n[+]serializable_read ok\n[-]linearizable_read failed: " + server.ErrNoLeader.Error() + "\n[+]non_learner ok\n", false},
		{"no quorum, alive", func(f *fakeBackend) { f.readErr = map[bool]error{true: server.ErrNoLeader} }, "/livez", 200, "ok\n", false},
		{"no quorum, excluded", func(f *fakeBackend) { f.readErr = map[bool]error{true: server.ErrNoLeader} }, "/readyz?exclude=linearizable_read&exclude=nonesuch", 200, "ok\n", false},
		{"local read fails", func(f *fakeBackend) { f.readErr = map[bool]error{false: server.ErrStopped} }, "/livez", 503,
			"[-]serializable_read failed: " + server.ErrStopped.Error() + "\n", false},
		{"learner", func(f *fakeBackend) { f.learner = true }, "/readyz", 503, "[-]non_learner failed: not supported for learner", true},
		{"learner is alive", func(f *fakeBackend) { f.learner = true }, "/livez", 200, "ok\n", false},
		{"corrupt", func(f *fakeBackend) { f.alarms = []string{"CORRUPT"} }, "/readyz/data_corruption", 503, "[-]data_corruption failed: alarm activated: CORRUPT\n", false},
		{"nospace is ready", func(f *fakeBackend) { f.alarms = []string{"NOSPACE"} }, "/readyz", 200, "ok\n", false},
		{"unknown check", nil, "/readyz/nonesuch", 404, "", true},
		{"not a GET", nil, "/readyz", 405, "", true},
	} {
		f := newFake()
		if tc.setup != nil {
			tc.setup(f)
		}
		method := "GET"
		if tc.name == "not a GET" {
			method = "POST"
		}
		code, body, _ := do(t, NewHandler(f, Options{}), method, tc.path, "")
		if code != tc.code || (tc.partial && !strings.Contains(body, tc.body)) || (!tc.partial && body != tc.body) {
			t.Errorf("%s: %s %s: got %d %q, want %d %q", tc.name, method, tc.path, code, body, tc.code, tc.body)
		}
	}
}

func TestAdminEndpoints(t *testing.T) {
	h := NewHandler(newFake(), Options{Version: "test"})
	for _, p := range []string{"/admin/status", "/admin/members", "/health", "/livez", "/readyz", "/version", "/metrics"} {
		if code, body, _ := do(t, h, "GET", p, ""); code != 200 || body == "" {
			t.Errorf("GET %s: %d %q", p, code, body)
		}
	}
	// etcd 3.7.3's body, then metcd's field.
	if _, body, _ := do(t, h, "GET", "/version", ""); body != `{"etcdserver":"3.7.3","etcdcluster":"3.7.0","storage":"3.7.0","metcd":"test"}` {
		t.Errorf("GET /version: %s", body)
	}
	if code, _, _ := do(t, h, "GET", "/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof without --enable-pprof: %d, want 404", code)
	}
}

// TestV3Routing checks that /v3/ paths reach the gateway when one is set,
// with the body bounded; the bare /v3 and, without a gateway, every /v3/
// path answer 404.
func TestV3Routing(t *testing.T) {
	var gotPath string
	var readErr error
	gw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		_, readErr = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
	})
	h := NewHandler(newFake(), Options{MaxRequestBytes: 16, V3: gw})
	if code, _, _ := do(t, h, "POST", "/v3/kv/put", `{"key":"YQ=="}`); code != http.StatusTeapot || gotPath != "/v3/kv/put" || readErr != nil {
		t.Errorf("POST /v3/kv/put: %d, gateway saw %q (read error %v)", code, gotPath, readErr)
	}
	// 2×16 bytes plus 64 KiB of JSON allowance, and one byte more: with
	// its length given, refused as etcd's gateway refuses a message over
	// its gRPC limit; sent chunked, cut short at the limit.
	big := strings.Repeat("x", 2*16+64<<10+1)
	gotPath = ""
	code, body, _ := do(t, h, "POST", "/v3/kv/put", big)
	var gwErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &gwErr); err != nil || code != http.StatusTooManyRequests || gotPath != "" ||
		gwErr.Code != int(codes.ResourceExhausted) || !strings.Contains(gwErr.Message, "received message larger than max") {
		t.Errorf("a gateway body over the limit: %d %q (gateway saw %q), want 429 and code 8", code, body, gotPath)
	}
	req := httptest.NewRequest("POST", "/v3/kv/put", io.MultiReader(strings.NewReader(big)))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if req.ContentLength > 0 || readErr == nil {
		t.Errorf("a chunked gateway body over the limit was read whole (length %d)", req.ContentLength)
	}
	for _, p := range []string{"/v3"} {
		gotPath = ""
		if code, _, _ := do(t, h, "POST", p, "{}"); code != http.StatusNotFound || gotPath != "" {
			t.Errorf("POST %s: %d (gateway saw %q), want 404", p, code, gotPath)
		}
	}
	if code, _, _ := do(t, NewHandler(newFake(), Options{}), "POST", "/v3/kv/put", "{}"); code != http.StatusNotFound {
		t.Errorf("POST /v3/kv/put without a gateway: %d, want 404", code)
	}
}
