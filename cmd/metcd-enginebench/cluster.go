package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metcd/metcd/internal/freeport"
)

// member is one metcd process of a cluster.
type member struct {
	id        int
	peerURL   string
	clientURL string
	dataDir   string
	logPath   string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// running reports whether the member's process is alive.
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

// cluster is a local 3-member (or n-member) metcd cluster of one engine.
type cluster struct {
	bin      string
	engine   string
	dir      string
	logLevel string
	extra    []string // more flags for every member
	members  []*member
}

// newCluster lays out n members in dir on free loopback ports.
func newCluster(bin, engine, dir string, n int, logLevel string, extra []string) (*cluster, error) {
	ports, err := freeport.Take(2 * n)
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, engine: engine, dir: dir, logLevel: logLevel, extra: extra}
	for i := 1; i <= n; i++ {
		c.members = append(c.members, &member{
			id:        i,
			peerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*(i-1)]),
			clientURL: "http://127.0.0.1:" + strconv.Itoa(ports[2*(i-1)+1]),
			dataDir:   filepath.Join(dir, fmt.Sprintf("metcd-%d.data", i)),
			logPath:   filepath.Join(dir, fmt.Sprintf("metcd-%d.log", i)),
		})
	}
	return c, nil
}

func (c *cluster) endpoints() []string {
	var e []string
	for _, m := range c.members {
		e = append(e, m.clientURL)
	}
	return e
}

func (c *cluster) peers() string {
	var p []string
	for _, m := range c.members {
		p = append(p, m.peerURL)
	}
	return strings.Join(p, ",")
}

// startMember starts (or restarts, on its data) member m.
func (c *cluster) startMember(m *member) error {
	if m.running() {
		return fmt.Errorf("member %d is already running", m.id)
	}
	port := m.clientURL[strings.LastIndexByte(m.clientURL, ':')+1:]
	args := append([]string{
		"--id", strconv.Itoa(m.id),
		"--cluster", c.peers(),
		"--port", port,
		"--data-dir", m.dataDir,
		"--engine", c.engine,
		"--log-level", c.logLevel,
	}, c.extra...)
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== metcd-enginebench %s: %s %s\n", time.Now().Format(time.RFC3339Nano), c.bin, strings.Join(args, " "))
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting member %d: %w", m.id, err)
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

// stopMember sends SIGTERM and waits up to grace for the process to exit,
// then SIGKILLs it. It returns how long the process took to exit.
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
	case <-time.After(10 * time.Second): // cannot happen short of a kernel problem
	}
	return time.Since(t0)
}

// stop stops every member, concurrently.
func (c *cluster) stop(grace time.Duration) {
	done := make(chan struct{})
	for _, m := range c.members {
		go func() {
			stopMember(m, grace)
			done <- struct{}{}
		}()
	}
	for range c.members {
		<-done
	}
}

// start starts every member and waits until all agree on a leader.
func (c *cluster) start(ctx context.Context, timeout time.Duration) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	for _, m := range c.members {
		if err := c.startMember(m); err != nil {
			return err
		}
	}
	return c.waitLeader(ctx, timeout)
}

// memberStatus is the part of GET /admin/status we use.
type memberStatus struct {
	MemberID      uint64 `json:"member_id"`
	Role          string `json:"role"`
	LeaderID      uint64 `json:"leader_id"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	Engine        string `json:"engine"`
	DataSizeBytes int64  `json:"data_size_bytes"`
	Keys          int64  `json:"keys"`
}

// pollClient is for status polls and probes: short timeouts, no proxy.
var pollClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, DisableCompression: true},
}

func getStatus(ctx context.Context, url string) (*memberStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/admin/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/admin/status: HTTP %d", url, resp.StatusCode)
	}
	var st memberStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("%s/admin/status: %w", url, err)
	}
	return &st, nil
}

// errExited is returned by waits when a member process has exited.
var errExited = errors.New("member exited")

// exited returns an error naming the first member that is not running,
// with the end of its log.
func (c *cluster) exited() error {
	for _, m := range c.members {
		if m.cmd != nil && !m.running() {
			tail := logTail(m.logPath, 15)
			last := strings.TrimSpace(tail[strings.LastIndexByte(tail, '\n')+1:])
			return fmt.Errorf("%w: member %d (%v): %s\n  end of its log:\n%s", errExited, m.id, m.err, last, tail)
		}
	}
	return nil
}

// poll calls f every interval until it returns true or an error, the
// deadline passes (an error naming what), ctx is done or a member exits.
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

// waitLeader waits until every member reports the same, non-zero leader.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) error {
	return c.poll(ctx, timeout, 100*time.Millisecond, "leader agreed on by every member", func(ctx context.Context) (bool, error) {
		var leader uint64
		for _, m := range c.members {
			st, err := getStatus(ctx, m.clientURL)
			if err != nil {
				return false, err
			}
			if st.LeaderID == 0 || (leader != 0 && st.LeaderID != leader) {
				return false, nil
			}
			leader = st.LeaderID
		}
		return true, nil
	})
}

// settle waits until every member has applied what the leader had committed
// when settle was called, so that a run does not pay for the previous one.
func (c *cluster) settle(ctx context.Context, timeout time.Duration) error {
	var commit uint64
	for _, m := range c.members {
		st, err := getStatus(ctx, m.clientURL)
		if err != nil {
			continue
		}
		commit = max(commit, st.CommitIndex)
	}
	return c.poll(ctx, timeout, 50*time.Millisecond, fmt.Sprintf("catch-up of every member to applied index %d", commit), func(ctx context.Context) (bool, error) {
		for _, m := range c.members {
			st, err := getStatus(ctx, m.clientURL)
			if err != nil {
				return false, err
			}
			if st.AppliedIndex < commit {
				return false, nil
			}
		}
		return true, nil
	})
}

// serializableGet reports whether url serves key with a local read.
func serializableGet(ctx context.Context, url, key string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/"+key+"?consistency=serializable", nil)
	if err != nil {
		return false, err
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s/%s?consistency=serializable: HTTP %d", url, key, resp.StatusCode)
	}
	return true, nil
}

// dirSize returns the apparent size (sum of file lengths) and the disk
// usage (allocated blocks, as du reports) of the files under dir.
func dirSize(dir string) (apparent, disk int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		apparent += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			disk += st.Blocks * 512
		} else {
			disk += fi.Size()
		}
		return nil
	})
	return apparent, disk, err
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const chunk = 16 << 10
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, fi.Size()-chunk)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(buf, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}
