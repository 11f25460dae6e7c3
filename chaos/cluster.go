package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/metcd/metcd/internal/freeport"
)

// ModuleRoot finds the directory of the main module's go.mod: first through
// `go env GOMOD`, then by walking up from the working directory.
func ModuleRoot() (string, error) {
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

// BuildBinary builds ./cmd/metcd of the main module into dir and returns
// the binary's path.
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	bin := filepath.Join(dir, "metcd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/metcd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/metcd in %s: %v\n%s", root, err, out)
	}
	return bin, nil
}

// ClusterConfig describes the processes of a cluster.
type ClusterConfig struct {
	Binary        string // the metcd binary
	Dir           string // data dirs and logs
	Size          int    // members at the start (3 or 5)
	Engine        string // --engine
	SnapshotCount int    // --snapshot-count
	HeartbeatMs   int    // --heartbeat-interval
	ElectionMs    int    // --election-timeout
	Extra         []string
	Seed          int64
	Logf          func(format string, args ...any)
}

// Slot is a place for one member: its peer proxy (whose address is the
// member's peer URL in --cluster), the private address the member listens
// on for peers, and its client port. A slot outlives its member: a member
// removed from the cluster is replaced in the same slot by a new member,
// with a new id, that reuses the peer URL and client port.
type Slot struct {
	Index      int
	PeerURL    string // http://<proxy address>
	PrivAddr   string // --listen-peer-addr
	ClientPort int
	Endpoint   string // the clientv3 endpoint, 127.0.0.1:<client port>
	proxy      *Proxy

	// Guarded by Cluster.mu.
	id      uint64
	gen     int // members this slot has had
	dataDir string
	logPath string
	args    []string
	proc    *proc
	paused  bool
}

type proc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
	// expected is set before the harness kills the process or expects it
	// to exit (removal); any other exit is a crash.
	expected bool
}

// Cluster is a metcd cluster of real processes whose peer traffic goes
// through a Network of fault-injecting proxies.
type Cluster struct {
	cfg   ClusterConfig
	Net   *Network
	Slots []*Slot
	httpc *http.Client
	logf  func(string, ...any)

	mu      sync.Mutex
	crashes []string
	maxID   uint64
	removed []uint64
}

// NewCluster allocates cfg.Size slots and starts one member in each.
func NewCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Size < 1 {
		return nil, errors.New("cluster size must be at least 1")
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Cluster{
		cfg:   cfg,
		Net:   NewNetwork(cfg.Seed),
		httpc: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
		logf:  logf,
	}
	for i := range cfg.Size {
		priv, err := freePort()
		if err != nil {
			c.Close()
			return nil, err
		}
		cport, err := freePort()
		if err != nil {
			c.Close()
			return nil, err
		}
		privAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(priv))
		p, err := c.Net.NewProxy(i, privAddr)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Slots = append(c.Slots, &Slot{
			Index:      i,
			PeerURL:    "http://" + p.Addr(),
			PrivAddr:   privAddr,
			ClientPort: cport,
			Endpoint:   net.JoinHostPort("127.0.0.1", strconv.Itoa(cport)),
			proxy:      p,
		})
	}
	urls := make([]string, len(c.Slots))
	for i, s := range c.Slots {
		urls[i] = s.PeerURL
	}
	for i, s := range c.Slots {
		id := uint64(i + 1)
		c.newMember(s, id, urls, false)
	}
	c.maxID = uint64(len(c.Slots))
	for i := range c.Slots {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// freePort returns a loopback port that was free a moment ago and that
// this process has not handed out before.
func freePort() (int, error) {
	ports, err := freeport.Take(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// newMember sets slot s up for a new member id with the given --cluster
// list (its data dir is new and empty).
func (c *Cluster) newMember(s *Slot, id uint64, urls []string, join bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.id = id
	s.gen++
	s.dataDir = filepath.Join(c.cfg.Dir, fmt.Sprintf("slot%d-member%d.data", s.Index, id))
	s.logPath = filepath.Join(c.cfg.Dir, fmt.Sprintf("slot%d-member%d.log", s.Index, id))
	s.args = []string{
		"--id", strconv.FormatUint(id, 10),
		"--cluster", strings.Join(urls, ","),
		"--listen-peer-addr", s.PrivAddr,
		"--port", strconv.Itoa(s.ClientPort),
		"--host", "127.0.0.1",
		"--data-dir", s.dataDir,
		"--engine", c.cfg.Engine,
	}
	if c.cfg.SnapshotCount > 0 {
		s.args = append(s.args, "--snapshot-count", strconv.Itoa(c.cfg.SnapshotCount))
	}
	if c.cfg.HeartbeatMs > 0 {
		s.args = append(s.args, "--heartbeat-interval", strconv.Itoa(c.cfg.HeartbeatMs))
	}
	if c.cfg.ElectionMs > 0 {
		s.args = append(s.args, "--election-timeout", strconv.Itoa(c.cfg.ElectionMs))
	}
	if join {
		s.args = append(s.args, "--join")
	}
	s.args = append(s.args, c.cfg.Extra...)
	c.Net.SetMember(id, s.Index)
}

// ID is the id of the member in slot i.
func (c *Cluster) ID(i int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Slots[i].id
}

// SlotOf returns the slot of member id, or -1.
func (c *Cluster) SlotOf(id uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.Slots {
		if s.id == id {
			return i
		}
	}
	return -1
}

// LogPath is the log file of the member in slot i.
func (c *Cluster) LogPath(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Slots[i].logPath
}

// Endpoints returns the clientv3 endpoints of every slot.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Slots))
	for i, s := range c.Slots {
		eps[i] = s.Endpoint
	}
	return eps
}

// Start starts the member of slot i with its flags (the same ones on
// every start of the same member).
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.Slots[i]
	if s.proc != nil {
		select {
		case <-s.proc.done:
		default:
			return fmt.Errorf("slot %d (member %d) is already running", i, s.id)
		}
	}
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== chaos: start at %s: metcd %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.args, " "))
	cmd := exec.Command(c.cfg.Binary, s.args...)
	cmd.Dir = c.cfg.Dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting member %d: %w", s.id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	s.proc = p
	s.paused = false
	id, logPath := s.id, s.logPath
	go func() {
		cmd.Wait()
		f.Close()
		c.mu.Lock()
		p.state = cmd.ProcessState
		expected := p.expected
		c.mu.Unlock()
		close(p.done)
		if !expected {
			msg := fmt.Sprintf("member %d (slot %d) exited unexpectedly: %v; log %s:\n%s",
				id, i, cmd.ProcessState, logPath, strings.Join(tailFile(logPath, 30), "\n"))
			c.mu.Lock()
			c.crashes = append(c.crashes, msg)
			c.mu.Unlock()
			c.logf("CRASH: %s", msg)
		}
	}()
	return nil
}

// Crashes returns the unexpected exits seen so far.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.crashes)
}

// Running reports whether slot i's process is alive (paused or not).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	p := c.Slots[i].proc
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Paused reports whether slot i's process is stopped with SIGSTOP.
func (c *Cluster) Paused(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Slots[i].paused
}

// signal sends sig to slot i's process, marking its exit as expected when
// expectExit is set. It returns the process, nil if it is not running.
func (c *Cluster) signal(i int, sig syscall.Signal, expectExit bool) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.Slots[i]
	p := s.proc
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if expectExit {
		p.expected = true
	}
	switch sig {
	case syscall.SIGSTOP:
		s.paused = true
	case syscall.SIGCONT, syscall.SIGKILL:
		s.paused = false
	}
	_ = p.cmd.Process.Signal(sig)
	return p
}

// Kill sends SIGKILL to slot i's member and waits until it is gone.
func (c *Cluster) Kill(i int) error {
	p := c.signal(i, syscall.SIGKILL, true)
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("member in slot %d did not exit after SIGKILL", i)
	}
}

// KillAll sends SIGKILL to the members of the given slots at (nearly) the
// same time and waits until they are all gone.
func (c *Cluster) KillAll(slots []int) error {
	var procs []*proc
	for _, i := range slots {
		if p := c.signal(i, syscall.SIGKILL, true); p != nil {
			procs = append(procs, p)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			return fmt.Errorf("a member did not exit after SIGKILL")
		}
	}
	return nil
}

// Pause stops slot i's member with SIGSTOP.
func (c *Cluster) Pause(i int) { c.signal(i, syscall.SIGSTOP, false) }

// Resume continues slot i's member with SIGCONT.
func (c *Cluster) Resume(i int) { c.signal(i, syscall.SIGCONT, false) }

// ExpectExit marks slot i's current process as one that will exit by
// itself (removed from the cluster).
func (c *Cluster) ExpectExit(i int) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.Slots[i].proc
	if p != nil {
		p.expected = true
	}
	return p
}

// Close kills every member and closes the proxies.
func (c *Cluster) Close() {
	for i := range c.Slots {
		c.Kill(i)
	}
	c.Net.Close()
	c.httpc.CloseIdleConnections()
}

// Status is the JSON of a member's GET /admin/status.
type Status struct {
	MemberID     uint64 `json:"member_id"`
	Role         string `json:"role"`
	LeaderID     uint64 `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Revision     int64  `json:"revision"`
}

// Status asks slot i's member for its status over the curl API.
func (c *Cluster) Status(ctx context.Context, i int) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Slots[i].Endpoint+"/admin/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("slot %d: /admin/status: %s", i, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// Leader returns the slot of the leader that every running, unpaused
// member agrees on, or -1.
func (c *Cluster) Leader(ctx context.Context) int {
	var leader uint64
	for i := range c.Slots {
		if !c.Running(i) || c.Paused(i) {
			continue
		}
		st, err := c.Status(ctx, i)
		if err != nil || st.LeaderID == 0 || (leader != 0 && st.LeaderID != leader) {
			return -1
		}
		leader = st.LeaderID
	}
	if leader == 0 {
		return -1
	}
	li := c.SlotOf(leader)
	if li < 0 {
		return -1
	}
	if st, err := c.Status(ctx, li); err != nil || st.Role != "leader" {
		return -1
	}
	return li
}

// WaitLeader waits up to d for an agreed leader.
func (c *Cluster) WaitLeader(ctx context.Context, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		if li := c.Leader(ctx); li >= 0 {
			return li, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no agreed leader within %v", d)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return -1, err
		}
	}
}

// WaitHealthy waits up to d until every slot runs an unpaused member, all
// agree on a leader, and every member has applied what the leader had
// committed a moment before.
func (c *Cluster) WaitHealthy(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		last = c.healthy(ctx)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not healthy within %v: %w", d, last)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func (c *Cluster) healthy(ctx context.Context) error {
	for i := range c.Slots {
		if !c.Running(i) {
			return fmt.Errorf("slot %d is not running", i)
		}
		if c.Paused(i) {
			return fmt.Errorf("slot %d is paused", i)
		}
	}
	li := c.Leader(ctx)
	if li < 0 {
		return errors.New("no agreed leader")
	}
	ls, err := c.Status(ctx, li)
	if err != nil {
		return err
	}
	for i := range c.Slots {
		st, err := c.Status(ctx, i)
		if err != nil {
			return err
		}
		if st.MemberID != c.ID(i) {
			return fmt.Errorf("slot %d answers as member %d, want %d", i, st.MemberID, c.ID(i))
		}
		if st.AppliedIndex < ls.CommitIndex {
			return fmt.Errorf("member %d applied %d < leader's commit %d", st.MemberID, st.AppliedIndex, ls.CommitIndex)
		}
	}
	return nil
}

// memberURLs is the --cluster list for a member joining with id: its own
// peer URL at position id, the current members' URLs at theirs, and unused
// placeholders (never contacted successfully) for removed ids.
func (c *Cluster) memberURLs(id uint64, self *Slot) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, id)
	for k := range urls {
		urls[k] = fmt.Sprintf("http://127.0.0.2:%d", 20000+k)
	}
	for _, s := range c.Slots {
		if s != self && s.id > 0 && s.id <= id {
			urls[s.id-1] = s.PeerURL
		}
	}
	urls[id-1] = self.PeerURL
	return urls
}

// ReplaceMember removes slot i's member from the cluster (through cli),
// waits for it to exit, adds a new member with the same peer URL, and
// starts it with --join on an empty data dir. It returns the new id.
func (c *Cluster) ReplaceMember(ctx context.Context, cli *clientv3.Client, i int) (uint64, error) {
	s := c.Slots[i]
	old := c.ID(i)
	p := c.ExpectExit(i)
	if err := c.removeMember(ctx, cli, old); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.removed = append(c.removed, old)
	c.mu.Unlock()
	if p != nil {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			c.logf("NOTE: member %d still runs 20s after its removal; killing it", old)
			c.Kill(i)
		}
	}
	id, err := c.addMember(ctx, cli, s.PeerURL)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if id > c.maxID {
		c.maxID = id
	}
	c.mu.Unlock()
	c.newMember(s, id, c.memberURLs(id, s), true)
	return id, c.Start(i)
}

func (c *Cluster) removeMember(ctx context.Context, cli *clientv3.Client, id uint64) error {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberRemove(cctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrMemberNotFound) && attempt > 0 {
			return nil // an earlier attempt went through
		}
		if attempt >= 10 || ctx.Err() != nil {
			return fmt.Errorf("MemberRemove(%d): %w", id, err)
		}
		if present, lerr := c.memberPresent(ctx, cli, func(m uint64, _ []string) bool { return m == id }); lerr == nil && !present {
			return nil
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

func (c *Cluster) addMember(ctx context.Context, cli *clientv3.Client, url string) (uint64, error) {
	find := func() uint64 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := cli.MemberList(cctx)
		if err != nil {
			return 0
		}
		for _, m := range resp.Members {
			if slices.Contains(m.PeerURLs, url) {
				return m.ID
			}
		}
		return 0
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := cli.MemberAdd(cctx, []string{url})
		cancel()
		if err == nil {
			return resp.Member.ID, nil
		}
		if id := find(); id != 0 {
			return id, nil
		}
		if attempt >= 10 || ctx.Err() != nil {
			return 0, fmt.Errorf("MemberAdd(%s): %w", url, err)
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}

func (c *Cluster) memberPresent(ctx context.Context, cli *clientv3.Client, match func(uint64, []string) bool) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return false, err
	}
	for _, m := range resp.Members {
		if match(m.ID, m.PeerURLs) {
			return true, nil
		}
	}
	return false, nil
}

// CheckMembership compares the cluster's member list with the slots.
func (c *Cluster) CheckMembership(ctx context.Context, cli *clientv3.Client) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return err
	}
	want := map[uint64]string{}
	for i, s := range c.Slots {
		want[c.ID(i)] = s.PeerURL
	}
	if len(resp.Members) != len(want) {
		return fmt.Errorf("member list has %d members, want %d", len(resp.Members), len(want))
	}
	for _, m := range resp.Members {
		u, ok := want[m.ID]
		if !ok || len(m.PeerURLs) != 1 || m.PeerURLs[0] != u {
			return fmt.Errorf("member list has %d %v, want %v", m.ID, m.PeerURLs, want)
		}
		if m.IsLearner {
			return fmt.Errorf("member %d is a learner", m.ID)
		}
	}
	return nil
}

func tailFile(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
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

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
