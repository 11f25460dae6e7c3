package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metcd/metcd/internal/freeport"
)

// binPath is the metcd binary under test, built once by TestMain.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if p := os.Getenv("METCD_E2E_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: METCD_E2E_BIN: %v\n", err)
			return 2
		}
		binPath = abs
		return m.Run()
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the module root: %v\n", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "metcd-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "metcd")
	cmd := exec.Command("go", "build", "-o", binPath, "./cmd/metcd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building ./cmd/metcd in %s failed: %v\n%s\n", root, err, out)
		return 2
	}
	return m.Run()
}

// moduleRoot finds the directory of the main module's go.mod: first through
// `go env GOMOD`, then by walking up from the working directory.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		gomod := strings.TrimSpace(string(out))
		if gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// Ports

// freePort returns a loopback TCP port that was free a moment ago and that
// this test process has not handed out before. It never returns 2379/2380.
func freePort(t testing.TB) int {
	t.Helper()
	ports, err := freeport.Take(1)
	if err != nil {
		t.Fatalf("allocating a port: %v", err)
	}
	return ports[0]
}

// freeURL is a loopback http URL on a port freeport has not handed out, for a peer URL
// that no member listens on yet.
func freeURL(t testing.TB) string {
	t.Helper()
	return freeport.URL(freePort(t))
}

// ---------------------------------------------------------------------------
// HTTP

// Resp is an HTTP response with its body read.
type Resp struct {
	Code   int
	Body   string
	Header http.Header
}

func (r Resp) String() string {
	b := r.Body
	if len(b) > 300 {
		b = b[:300] + "..."
	}
	return fmt.Sprintf("%d %q", r.Code, b)
}

func newTransport(maxIdle int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxIdle,
		MaxIdleConnsPerHost: maxIdle,
		IdleConnTimeout:     30 * time.Second,
	}
}

// escapeKey turns a key into a URL path, escaping each '/'-separated
// segment.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(segs, "/")
}

// ---------------------------------------------------------------------------
// Members and clusters

// Member is one metcd process (possibly not running).
type Member struct {
	ID         uint64
	PeerURL    string
	ClientPort int
	ClientURL  string
	DataDir    string // "" = let the binary use its default (relative to WorkDir)
	WorkDir    string
	LogPath    string
	Join       bool
	Extra      []string // extra flags
	// Env is added to the environment of the process Start starts (the
	// failpoint tests arm METCD_FAILPOINTS with it).
	Env []string
	// args are the flags of the member's first Start, reused by every
	// later Start/Restart ("the same flags"), even if the cluster grew.
	args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process exited
	state   *os.ProcessState
	waitErr error
	starts  int
	// expected is set when the test sent a signal or waited for the exit:
	// any other exit is reported as unexpected.
	expected bool
}

// Running reports whether the member's process is alive (as far as Wait
// knows).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Status is the JSON of GET /admin/status.
type Status struct {
	MemberID      uint64 `json:"member_id"`
	ClusterID     string `json:"cluster_id"`
	Role          string `json:"role"`
	LeaderID      uint64 `json:"leader_id"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Engine        string `json:"engine"`
	DataSizeBytes int64  `json:"data_size_bytes"`
	Keys          int64  `json:"keys"`
}

// MemberInfo is one entry of GET /admin/members.
type MemberInfo struct {
	ID       uint64 `json:"id"`
	PeerURL  string `json:"peer_url"`
	IsLeader bool   `json:"is_leader"`
}

// Cluster is a set of members started by a test. Members[i] has id i+1.
type Cluster struct {
	t       testing.TB
	Dir     string
	Members []*Member
	Extra   []string // flags given to every member
	client  *http.Client
	tr      *http.Transport
}

// Options configure NewCluster.
type Options struct {
	Size  int
	Extra []string // flags passed to every member, e.g. --snapshot-count 20
	// NoWait skips waiting for a leader after starting.
	NoWait bool
}

// NewCluster starts opts.Size members as processes and (unless NoWait)
// waits until all of them know the same leader. Processes are killed in
// t.Cleanup, and on failure the tail of each member's log is dumped.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := NewStoppedCluster(t, opts)
	for i := range c.Members {
		c.Start(i)
	}
	if !opts.NoWait {
		c.WaitReady(30 * time.Second)
	}
	return c
}

// NewStoppedCluster allocates ports and data dirs for opts.Size members but
// starts nothing.
func NewStoppedCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if binPath == "" {
		t.Fatal("metcd binary not built (TestMain did not run?)")
	}
	tr := newTransport(256)
	c := &Cluster{
		t:      t,
		Dir:    t.TempDir(),
		Extra:  opts.Extra,
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: 20 * time.Second},
	}
	for range opts.Size {
		c.newMember()
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			c.killQuiet(m)
		}
		if t.Failed() {
			c.DumpLogs(80)
		}
		tr.CloseIdleConnections()
	})
	return c
}

func (c *Cluster) newMember() *Member {
	id := uint64(len(c.Members) + 1)
	peer := freePort(c.t)
	client := freePort(c.t)
	m := &Member{
		ID:         id,
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", peer),
		ClientPort: client,
		ClientURL:  fmt.Sprintf("http://127.0.0.1:%d", client),
		DataDir:    filepath.Join(c.Dir, fmt.Sprintf("member-%d.data", id)),
		WorkDir:    c.Dir,
		LogPath:    filepath.Join(c.Dir, fmt.Sprintf("member-%d.log", id)),
	}
	c.Members = append(c.Members, m)
	return m
}

// ClusterFlag is the --cluster value: every member's peer URL in id order.
func (c *Cluster) ClusterFlag() string {
	urls := make([]string, len(c.Members))
	for i, m := range c.Members {
		urls[i] = m.PeerURL
	}
	return strings.Join(urls, ",")
}

// Args returns the command line flags for member i computed from the
// current member list (--cluster lists every member added so far).
func (c *Cluster) Args(i int) []string {
	m := c.Members[i]
	args := []string{
		"--id", strconv.FormatUint(m.ID, 10),
		"--cluster", c.ClusterFlag(),
		"--port", strconv.Itoa(m.ClientPort),
		"--host", "127.0.0.1",
	}
	if m.DataDir != "" {
		args = append(args, "--data-dir", m.DataDir)
	}
	if m.Join {
		args = append(args, "--join")
	}
	args = append(args, c.Extra...)
	args = append(args, m.Extra...)
	return args
}

// Start starts member i with its flags: those computed by Args at its first
// Start, the same ones on every later Start. It fails the test if the
// process cannot be started or is already running.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.args == nil {
		m.args = c.Args(i)
	}
	c.StartArgs(i, m.args)
}

// StartArgs starts member i's process with exactly the given flags.
func (c *Cluster) StartArgs(i int, args []string) {
	c.t.Helper()
	m := c.Members[i]
	if m.Running() {
		c.t.Fatalf("member %d already running", m.ID)
	}
	f, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("opening log: %v", err)
	}
	m.mu.Lock()
	m.starts++
	fmt.Fprintf(f, "=== e2e: start #%d at %s: %s metcd %s\n", m.starts, time.Now().Format(time.RFC3339Nano), strings.Join(m.Env, " "), strings.Join(args, " "))
	m.mu.Unlock()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = m.WorkDir
	if len(m.Env) > 0 {
		cmd.Env = append(os.Environ(), m.Env...)
	}
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("starting member %d: %v", m.ID, err)
	}
	done := make(chan struct{})
	m.mu.Lock()
	m.cmd = cmd
	m.done = done
	m.state = nil
	m.waitErr = nil
	m.expected = false
	m.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		m.mu.Lock()
		m.state = cmd.ProcessState
		m.waitErr = err
		m.mu.Unlock()
		close(done)
	}()
}

// signal sends sig to member i's process; false if it is not running.
func (c *Cluster) signal(m *Member, sig os.Signal) bool {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.expected = true
	m.mu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
	}
	_ = cmd.Process.Signal(sig)
	return true
}

// Kill sends SIGKILL to member i and waits for the process to be gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.Members[i]
	if !c.signal(m, syscall.SIGKILL) {
		c.t.Fatalf("Kill: member %d is not running", m.ID)
	}
	if _, err := c.WaitExit(i, 10*time.Second); err != nil {
		c.t.Fatalf("Kill: %v", err)
	}
	c.tr.CloseIdleConnections()
}

// KillAll sends SIGKILL to every running member at (nearly) the same time
// and waits for all of them to be gone.
func (c *Cluster) KillAll() {
	c.t.Helper()
	var idx []int
	for i, m := range c.Members {
		if c.signal(m, syscall.SIGKILL) {
			idx = append(idx, i)
		}
	}
	for _, i := range idx {
		if _, err := c.WaitExit(i, 10*time.Second); err != nil {
			c.t.Fatalf("KillAll: %v", err)
		}
	}
	c.tr.CloseIdleConnections()
}

func (c *Cluster) killQuiet(m *Member) {
	if c.signal(m, syscall.SIGKILL) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
}

// Stop sends SIGTERM to member i, waits (bounded) for it to exit, and
// returns its exit code. A member that does not exit within 15 s fails the
// test (and is killed in cleanup).
func (c *Cluster) Stop(i int) int {
	c.t.Helper()
	m := c.Members[i]
	if !c.signal(m, syscall.SIGTERM) {
		c.t.Fatalf("Stop: member %d is not running", m.ID)
	}
	code, err := c.WaitExit(i, 15*time.Second)
	if err != nil {
		c.t.Fatalf("Stop: %v", err)
	}
	c.tr.CloseIdleConnections()
	return code
}

// Interrupt sends SIGINT to member i, waits (bounded) for it to exit, and
// returns its exit code.
func (c *Cluster) Interrupt(i int) int {
	c.t.Helper()
	m := c.Members[i]
	if !c.signal(m, syscall.SIGINT) {
		c.t.Fatalf("Interrupt: member %d is not running", m.ID)
	}
	code, err := c.WaitExit(i, 15*time.Second)
	if err != nil {
		c.t.Fatalf("Interrupt: %v", err)
	}
	c.tr.CloseIdleConnections()
	return code
}

// StopClean stops member i with SIGTERM and fails the test unless it exits
// with code 0.
func (c *Cluster) StopClean(i int) {
	c.t.Helper()
	if code := c.Stop(i); code != 0 {
		c.t.Fatalf("member %d exited with code %d after SIGTERM, want 0", c.Members[i].ID, code)
	}
}

// Restart starts a stopped member again with the same flags as its first
// start.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Members[i].Running() {
		c.t.Fatalf("Restart: member %d is still running", c.Members[i].ID)
	}
	c.Start(i)
}

// WaitExit waits up to d for member i's current process to exit and
// returns its exit code (-1 if killed by a signal).
func (c *Cluster) WaitExit(i int, d time.Duration) (int, error) {
	m := c.Members[i]
	m.mu.Lock()
	done := m.done
	m.expected = true
	m.mu.Unlock()
	if done == nil {
		return 0, fmt.Errorf("member %d was never started", m.ID)
	}
	select {
	case <-done:
	case <-time.After(d):
		return 0, fmt.Errorf("member %d did not exit within %v", m.ID, d)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.ExitCode(), nil
}

// Log returns the content of member i's log file.
func (c *Cluster) Log(i int) string {
	b, _ := os.ReadFile(c.Members[i].LogPath)
	return string(b)
}

// DumpLogs prints the last n lines of every member's log.
func (c *Cluster) DumpLogs(n int) {
	for i, m := range c.Members {
		lines := tailLines(c.Log(i), n)
		c.t.Logf("----- member %d log (%s), last %d lines -----\n%s", m.ID, m.LogPath, len(lines), strings.Join(lines, "\n"))
	}
}

func tailLines(s string, n int) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// AddMember registers a new member through member via (POST /<id> with the
// peer URL as body, or POST /admin/members/<id> if admin is set), expects
// 204, then starts the new member with --join. It returns the new index.
func (c *Cluster) AddMember(via int, admin bool) int {
	c.t.Helper()
	m := c.newMember()
	m.Join = true
	idx := len(c.Members) - 1
	path := "/" + strconv.FormatUint(m.ID, 10)
	if admin {
		path = "/admin/members/" + strconv.FormatUint(m.ID, 10)
	}
	// As etcd, a member refuses additions until every member has started
	// and it is connected to them (503 unhealthy cluster, 409 not enough
	// started members); right after a start or a restart that can take a
	// moment: retry those refusals only.
	var r Resp
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err = c.Do(via, http.MethodPost, path, []byte(m.PeerURL))
		transient := err == nil && (r.Code == http.StatusServiceUnavailable && strings.Contains(r.Body, "unhealthy cluster") ||
			r.Code == http.StatusConflict && strings.Contains(r.Body, "not enough started members"))
		if !transient || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || r.Code != http.StatusNoContent {
		c.t.Fatalf("POST %s (%s) via member %d: %v %v, want 204", path, m.PeerURL, c.Members[via].ID, r, err)
	}
	c.Start(idx)
	return idx
}

// RemoveMember sends DELETE /admin/members/<id> to member via and returns
// the response.
func (c *Cluster) RemoveMember(via int, id uint64) (Resp, error) {
	return c.Do(via, http.MethodDelete, "/admin/members/"+strconv.FormatUint(id, 10), nil)
}

// Do sends one request to member i. path is used verbatim (it may carry a
// query).
func (c *Cluster) Do(i int, method, path string, body []byte) (Resp, error) {
	return c.DoClient(c.client, i, method, path, body)
}

// DoClient is Do with a specific client.
func (c *Cluster) DoClient(cl *http.Client, i int, method, path string, body []byte) (Resp, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.Members[i].ClientURL+path, rd)
	if err != nil {
		return Resp{}, err
	}
	res, err := cl.Do(req)
	if err != nil {
		return Resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return Resp{Code: res.StatusCode, Header: res.Header}, err
	}
	return Resp{Code: res.StatusCode, Body: string(b), Header: res.Header}, nil
}

// Put writes key=value through member i.
func (c *Cluster) Put(i int, key string, value []byte) (Resp, error) {
	return c.Do(i, http.MethodPut, escapeKey(key), value)
}

// Get reads key from member i (linearizable).
func (c *Cluster) Get(i int, key string) (Resp, error) {
	return c.Do(i, http.MethodGet, escapeKey(key), nil)
}

// GetSerializable reads key from member i's local state.
func (c *Cluster) GetSerializable(i int, key string) (Resp, error) {
	return c.Do(i, http.MethodGet, escapeKey(key)+"?consistency=serializable", nil)
}

// Delete deletes key through member i.
func (c *Cluster) Delete(i int, key string) (Resp, error) {
	return c.Do(i, http.MethodDelete, escapeKey(key), nil)
}

// MustPut writes key=value through member i and fails the test unless the
// answer is 204.
func (c *Cluster) MustPut(i int, key, value string) {
	c.t.Helper()
	r, err := c.Put(i, key, []byte(value))
	if err != nil || r.Code != http.StatusNoContent {
		c.t.Fatalf("PUT %q on member %d: %v %v, want 204", key, c.Members[i].ID, r, err)
	}
}

// MustGet reads key (linearizable) from member i and fails the test unless
// it is 200 with the given value.
func (c *Cluster) MustGet(i int, key, want string) {
	c.t.Helper()
	r, err := c.Get(i, key)
	if err != nil || r.Code != http.StatusOK || r.Body != want {
		c.t.Fatalf("GET %q on member %d: %v %v, want 200 %q", key, c.Members[i].ID, r, err, want)
	}
}

// Status returns member i's /admin/status.
func (c *Cluster) Status(i int) (Status, error) {
	var s Status
	r, err := c.Do(i, http.MethodGet, "/admin/status", nil)
	if err != nil {
		return s, err
	}
	if r.Code != http.StatusOK {
		return s, fmt.Errorf("GET /admin/status on member %d: %v", c.Members[i].ID, r)
	}
	if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
		return s, fmt.Errorf("GET /admin/status on member %d: bad JSON %q: %v", c.Members[i].ID, r.Body, err)
	}
	return s, nil
}

// MemberList returns member i's /admin/members.
func (c *Cluster) MemberList(i int) ([]MemberInfo, error) {
	var v struct {
		Members []MemberInfo `json:"members"`
	}
	r, err := c.Do(i, http.MethodGet, "/admin/members", nil)
	if err != nil {
		return nil, err
	}
	if r.Code != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/members on member %d: %v", c.Members[i].ID, r)
	}
	if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
		return nil, fmt.Errorf("GET /admin/members on member %d: bad JSON %q: %v", c.Members[i].ID, r.Body, err)
	}
	return v.Members, nil
}

// Running returns the indexes of the members whose processes are alive.
func (c *Cluster) Running() []int {
	var idx []int
	for i, m := range c.Members {
		if m.Running() {
			idx = append(idx, i)
		}
	}
	return idx
}

// Index returns the index of the member with the given id, or -1.
func (c *Cluster) Index(id uint64) int {
	for i, m := range c.Members {
		if m.ID == id {
			return i
		}
	}
	return -1
}

// Leader returns the index of the member that the given members (all
// running members if none given) agree is the leader, and that itself
// reports role "leader"; -1 if there is no such agreement right now.
func (c *Cluster) Leader(among ...int) int {
	if len(among) == 0 {
		among = c.Running()
	}
	if len(among) == 0 {
		return -1
	}
	var leader uint64
	for _, i := range among {
		s, err := c.Status(i)
		if err != nil || s.LeaderID == 0 {
			return -1
		}
		if leader == 0 {
			leader = s.LeaderID
		} else if s.LeaderID != leader {
			return -1
		}
	}
	li := c.Index(leader)
	if li < 0 || !c.Members[li].Running() {
		return -1
	}
	s, err := c.Status(li)
	if err != nil || s.Role != "leader" {
		return -1
	}
	return li
}

// WaitLeader polls until the given members (all running ones if none given)
// agree on a leader, and returns its index. It fails the test after d.
func (c *Cluster) WaitLeader(d time.Duration, among ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if li := c.Leader(among...); li >= 0 {
			return li
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no agreed leader among members %v within %v (running: %v)", c.ids(among), d, c.ids(c.Running()))
		}
		c.checkAlive(among)
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitNewLeader waits for a leader other than member old among the given
// members.
func (c *Cluster) WaitNewLeader(d time.Duration, old int, among ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if li := c.Leader(among...); li >= 0 && li != old {
			return li
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no new leader (other than member %d) among members %v within %v", c.Members[old].ID, c.ids(among), d)
		}
		c.checkAlive(among)
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitReady waits until every running member reports the same leader.
func (c *Cluster) WaitReady(d time.Duration) int {
	c.t.Helper()
	return c.WaitLeader(d)
}

// checkAlive fails the test if one of the members (all started members if
// none given) exited without the test asking for it.
func (c *Cluster) checkAlive(among []int) {
	c.t.Helper()
	if len(among) == 0 {
		for i := range c.Members {
			among = append(among, i)
		}
	}
	for _, i := range among {
		m := c.Members[i]
		m.mu.Lock()
		started, done, expected, state := m.cmd != nil, m.done, m.expected, m.state
		m.mu.Unlock()
		if !started || expected {
			continue
		}
		select {
		case <-done:
			c.t.Fatalf("member %d exited unexpectedly: %v (see its log; a SIGTERM/SIGKILL that the test did not send comes from outside)", m.ID, state)
		default:
		}
	}
}

func (c *Cluster) ids(idx []int) []uint64 {
	if len(idx) == 0 {
		idx = c.Running()
	}
	ids := make([]uint64, 0, len(idx))
	for _, i := range idx {
		ids = append(ids, c.Members[i].ID)
	}
	return ids
}

// WaitCaughtUp waits until member i's applied index reaches the commit
// index the leader reports at the time of the call.
func (c *Cluster) WaitCaughtUp(i int, leader int, d time.Duration) {
	c.t.Helper()
	ls, err := c.Status(leader)
	if err != nil {
		c.t.Fatalf("leader status: %v", err)
	}
	deadline := time.Now().Add(d)
	for {
		s, err := c.Status(i)
		if err == nil && s.AppliedIndex >= ls.CommitIndex {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("member %d did not apply up to %d within %v: %+v %v", c.Members[i].ID, ls.CommitIndex, d, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Eventually is the package-level Eventually, but it also fails at once
// if a member exits without the test asking for it.
func (c *Cluster) Eventually(d time.Duration, what string, f func() error) {
	c.t.Helper()
	Eventually(c.t, d, what, func() error {
		c.checkAlive(nil)
		return f()
	})
}

// Eventually polls f every interval until it returns nil or d elapses, and
// then fails the test with f's last error.
func Eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
