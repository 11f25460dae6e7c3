package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/metcd/metcd/internal/freeport"
)

// system is one thing measured: metcd on one engine, or etcd.
type system struct {
	Name   string // "metcd-pebble", "etcd"
	Kind   string // "metcd" or "etcd"
	Engine string // metcd's --engine
	Bin    string
}

// label is the system's name for tables: "metcd (pebble)", "etcd 3.7.3".
func (s system) label(etcdVersion string) string {
	if s.Kind == kindEtcd {
		if etcdVersion != "" {
			return "etcd " + etcdVersion
		}
		return "etcd"
	}
	return "metcd (" + s.Engine + ")"
}

const (
	kindMetcd = "metcd"
	kindEtcd  = "etcd"
)

// settings are the server settings both systems get.
type settings struct {
	HeartbeatMs   int    `json:"heartbeat_ms"`
	ElectionMs    int    `json:"election_ms"`
	SnapshotCount int    `json:"snapshot_count"`
	QuotaBytes    int64  `json:"quota_backend_bytes"`
	LogLevel      string `json:"log_level"`
}

// member is one server process.
type member struct {
	id         int // 1-based
	peerPort   int
	clientPort int
	dataDir    string
	logPath    string
	join       bool     // added to a running cluster
	args       []string // its command line, fixed at its first start

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (m *member) peerURL() string   { return "http://127.0.0.1:" + strconv.Itoa(m.peerPort) }
func (m *member) clientURL() string { return "http://127.0.0.1:" + strconv.Itoa(m.clientPort) }
func (m *member) endpoint() string  { return "127.0.0.1:" + strconv.Itoa(m.clientPort) }
func (m *member) name() string      { return "m" + strconv.Itoa(m.id) }

func (m *member) running() bool {
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

// cluster is a local cluster of one system.
type cluster struct {
	sys     system
	set     settings
	dir     string
	members []*member
}

func newCluster(sys system, set settings, dir string, n int) (*cluster, error) {
	c := &cluster{sys: sys, set: set, dir: dir}
	for range n {
		if _, err := c.newMember(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// newMember lays out one more member (not started).
func (c *cluster) newMember() (*member, error) {
	ports, err := freeport.Take(2)
	if err != nil {
		return nil, err
	}
	id := len(c.members) + 1
	m := &member{
		id: id, peerPort: ports[0], clientPort: ports[1],
		dataDir: filepath.Join(c.dir, fmt.Sprintf("m%d.data", id)),
		logPath: filepath.Join(c.dir, fmt.Sprintf("m%d.log", id)),
	}
	c.members = append(c.members, m)
	return m, nil
}

func (c *cluster) endpoints() []string {
	var e []string
	for _, m := range c.members {
		if m.running() {
			e = append(e, m.endpoint())
		}
	}
	return e
}

// args are the command line of member m, from the members laid out so far
// (every member's peer URL): both systems get the same raft
// timing, snapshot count and quota; fsync stays on (neither has it off by
// default).
func (c *cluster) args(m *member) []string {
	s := c.set
	common := []string{
		"--heartbeat-interval", strconv.Itoa(s.HeartbeatMs),
		"--election-timeout", strconv.Itoa(s.ElectionMs),
		"--snapshot-count", strconv.Itoa(s.SnapshotCount),
		"--quota-backend-bytes", strconv.FormatInt(s.QuotaBytes, 10),
		"--log-level", s.LogLevel,
		"--data-dir", m.dataDir,
	}
	if c.sys.Kind == kindMetcd {
		var peers []string
		for _, o := range c.members {
			peers = append(peers, o.peerURL())
		}
		args := append([]string{
			"--id", strconv.Itoa(m.id),
			"--cluster", strings.Join(peers, ","),
			"--port", strconv.Itoa(m.clientPort),
			"--host", "127.0.0.1",
			"--engine", c.sys.Engine,
		}, common...)
		if m.join {
			args = append(args, "--join")
		}
		return args
	}
	var initial []string
	for _, o := range c.members {
		initial = append(initial, o.name()+"="+o.peerURL())
	}
	state := "new"
	if m.join {
		state = "existing"
	}
	return append([]string{
		"--name", m.name(),
		"--listen-client-urls", m.clientURL(),
		"--advertise-client-urls", m.clientURL(),
		"--listen-peer-urls", m.peerURL(),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", state,
		"--initial-cluster-token", "metcd-benchcompare",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}, common...)
}

// startMember starts (or restarts, on its data) member m.
func (c *cluster) startMember(m *member) error {
	if m.running() {
		return fmt.Errorf("member %d is already running", m.id)
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	if m.args == nil {
		m.args = c.args(m) // a restart uses the flags of the first start
	}
	args := m.args
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== metcd-benchcompare %s: %s %s\n", time.Now().Format(time.RFC3339Nano), c.sys.Bin, strings.Join(args, " "))
	cmd := exec.Command(c.sys.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s member %d: %w", c.sys.Name, m.id, err)
	}
	m.cmd, m.done, m.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		m.err = cmd.Wait()
		logf.Close()
		close(done)
	}(m.done)
	return nil
}

// childAttr puts a child in its own process group (a Ctrl-C at the
// terminal reaches only us, and we stop the child in order) and has the
// kernel kill it if we die without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// stopMember sends SIGTERM, waits up to grace, then SIGKILLs. It returns how
// long the process took to exit.
func stopMember(m *member, grace time.Duration) time.Duration {
	if !m.running() {
		return 0
	}
	t0 := time.Now()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
		return time.Since(t0)
	case <-time.After(grace):
	}
	m.cmd.Process.Kill()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	return time.Since(t0)
}

// kill kills every member (SIGKILL) and waits for them to exit: for a
// cluster about to be thrown away. (A graceful stop of all members at once
// costs etcd seconds: its leader tries to hand over leadership first.)
func (c *cluster) kill() {
	for _, m := range c.members {
		if m.running() {
			m.cmd.Process.Kill()
		}
	}
	for _, m := range c.members {
		if m.cmd != nil {
			select {
			case <-m.done:
			case <-time.After(10 * time.Second): // cannot happen short of a kernel problem
			}
		}
	}
}

// start starts every member and waits until all agree on a leader.
func (c *cluster) start(ctx context.Context, timeout time.Duration) error {
	for _, m := range c.members {
		if err := c.startMember(m); err != nil {
			return err
		}
	}
	return c.waitLeader(ctx, timeout)
}

// errExited is returned by waits when a member process has exited.
var errExited = errors.New("member exited")

// exited returns an error naming the first started member that is no
// longer running, with the end of its log.
func (c *cluster) exited() error {
	for _, m := range c.members {
		if m.cmd != nil && !m.running() {
			return fmt.Errorf("%w: %s member %d (%v); end of its log:\n%s", errExited, c.sys.Name, m.id, m.err, logTail(m.logPath, 12))
		}
	}
	return nil
}

// poll calls f every interval until it returns true, the timeout passes,
// ctx is done or a member exits.
func (c *cluster) poll(ctx context.Context, timeout, interval time.Duration, what string, f func(context.Context) (bool, error)) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if err := c.exited(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		ok, err := f(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
			if last != nil {
				return fmt.Errorf("no %s after %v (last error: %v)", what, timeout, last)
			}
			return fmt.Errorf("no %s after %v", what, timeout)
		case <-time.After(interval):
		}
	}
}

// memberStatus is what Maintenance.Status says of one member.
type memberStatus struct {
	ID, Leader      uint64
	Commit, Applied uint64
}

// status asks member m (over the etcd v3 API, which both systems serve).
func status(ctx context.Context, m *member) (*memberStatus, error) {
	return statusWithin(ctx, m, 2*time.Second)
}

// statusWithin is status with a timeout. For the polls that time a start,
// keep it short and check that the port accepts connections first: gRPC
// waits about a second before it redials a refused connection, which would
// round every start up to a second.
func statusWithin(ctx context.Context, m *member, timeout time.Duration) (*memberStatus, error) {
	if timeout < time.Second {
		conn, err := net.DialTimeout("tcp", m.endpoint(), timeout)
		if err != nil {
			return nil, err
		}
		conn.Close()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint()}, DialTimeout: timeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := cli.Status(ctx, m.endpoint())
	if err != nil {
		return nil, err
	}
	return &memberStatus{ID: st.Header.MemberId, Leader: st.Leader, Commit: st.RaftIndex, Applied: st.RaftAppliedIndex}, nil
}

// waitLeader waits until every running member reports the same leader.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) error {
	return c.poll(ctx, timeout, 100*time.Millisecond, "leader agreed on by every member", func(ctx context.Context) (bool, error) {
		var leader uint64
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			st, err := statusWithin(ctx, m, pollTimeout)
			if err != nil {
				return false, err
			}
			if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
				return false, nil
			}
			leader = st.Leader
		}
		return true, nil
	})
}

// settle waits until every running member has applied what any had
// committed when settle was called.
func (c *cluster) settle(ctx context.Context, timeout time.Duration) error {
	var commit uint64
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		if st, err := status(ctx, m); err == nil {
			commit = max(commit, st.Commit)
		}
	}
	return c.poll(ctx, timeout, 50*time.Millisecond, fmt.Sprintf("every member applying index %d", commit), func(ctx context.Context) (bool, error) {
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			st, err := status(ctx, m)
			if err != nil {
				return false, err
			}
			if st.Applied < commit {
				return false, nil
			}
		}
		return true, nil
	})
}

// follower returns a running member that is not the leader.
func (c *cluster) follower(ctx context.Context) (*member, error) {
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		st, err := status(ctx, m)
		if err != nil {
			return nil, err
		}
		if st.Leader != 0 && st.Leader != st.ID {
			return m, nil
		}
	}
	return nil, errors.New("no follower found")
}

// pollTimeout bounds each request of the polls that time a start.
const pollTimeout = 500 * time.Millisecond

// serves reports whether m answers a serializable get of key with a value.
func serves(ctx context.Context, m *member, key string) (bool, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint()}, DialTimeout: pollTimeout, Logger: zap.NewNop()})
	if err != nil {
		return false, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) == 1, nil
}

// procMem is what /proc/<pid>/status says of a process's memory, in KiB.
type procMem struct {
	RSSKiB int64 `json:"rss_kib"` // VmRSS: resident now
	HWMKiB int64 `json:"hwm_kib"` // VmHWM: peak resident
}

// readProcMem reads VmRSS and VmHWM of pid.
func readProcMem(pid int) (procMem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	defer f.Close()
	return parseProcStatus(f)
}

func parseProcStatus(r io.Reader) (procMem, error) {
	var pm procMem
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &pm.RSSKiB
		case "VmHWM":
			dst = &pm.HWMKiB
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return pm, fmt.Errorf("/proc status: %s: %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return pm, fmt.Errorf("/proc status: %s: %q", k, v)
		}
		*dst = n
	}
	if err := sc.Err(); err != nil {
		return pm, err
	}
	if pm.RSSKiB == 0 {
		return pm, errors.New("/proc status: no VmRSS")
	}
	return pm, nil
}

// memory returns the memory of every running member, in member order
// (zero for members not running).
func (c *cluster) memory() []procMem {
	out := make([]procMem, len(c.members))
	for i, m := range c.members {
		if m.running() {
			out[i], _ = readProcMem(m.cmd.Process.Pid)
		}
	}
	return out
}

// dirSize returns the apparent size of the files under dir, and whether
// any of them is a raft snapshot (a name containing ".snap").
func dirSize(dir string) (size int64, snapshot bool, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if strings.Contains(d.Name(), ".snap") {
			snapshot = true
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size += fi.Size()
		return nil
	})
	return size, snapshot, err
}

// logTail returns the last n lines of the file at path, indented.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "    " + err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "    " + err.Error()
	}
	off := max(0, fi.Size()-16<<10)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return "    " + err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}
