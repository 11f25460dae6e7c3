package main

// Every workload, briefly, against a real 3-member metcd cluster (the
// metcd binary is built from this module) and against an embedded etcd:
// not a timing test, only that each workload runs and counts sensibly.

import (
	"context"
	"fmt"
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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/metcd/metcd/internal/freeport"
)

var (
	metcdOnce sync.Once
	metcdDir  string // holds metcdBin; removed by TestMain
	metcdBin  string
	metcdErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if metcdDir != "" {
		os.RemoveAll(metcdDir)
	}
	os.Exit(code)
}

// buildMetcd builds ./cmd/metcd once per test binary.
func buildMetcd(t *testing.T) string {
	t.Helper()
	metcdOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			metcdErr = fmt.Errorf("go env GOMOD: %q, %v", gomod, err)
			return
		}
		dir, err := os.MkdirTemp("", "metcd-bench-test-")
		if err != nil {
			metcdErr = err
			return
		}
		metcdDir = dir
		metcdBin = filepath.Join(dir, "metcd")
		cmd := exec.Command("go", "build", "-o", metcdBin, "./cmd/metcd")
		cmd.Dir = filepath.Dir(gomod)
		if out, err := cmd.CombinedOutput(); err != nil {
			metcdErr = fmt.Errorf("go build ./cmd/metcd: %v\n%s", err, out)
		}
	})
	if metcdErr != nil {
		t.Fatal(metcdErr)
	}
	return metcdBin
}

func freePortsT(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Take(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// startMetcd starts an n-member metcd cluster (memory engine) and returns
// its gRPC endpoints once every member reports the same leader.
func startMetcd(t *testing.T, n int) []string {
	bin := buildMetcd(t)
	dir := t.TempDir()
	ports := freePortsT(t, 2*n)
	var peers, eps []string
	for i := range n {
		peers = append(peers, "http://127.0.0.1:"+strconv.Itoa(ports[2*i]))
		eps = append(eps, "127.0.0.1:"+strconv.Itoa(ports[2*i+1]))
	}
	for i := range n {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("m%d.log", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--id", strconv.Itoa(i+1), "--cluster", strings.Join(peers, ","),
			"--port", strconv.Itoa(ports[2*i+1]), "--data-dir", filepath.Join(dir, fmt.Sprintf("m%d.data", i+1)),
			"--engine", "memory", "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			logf.Close()
			if t.Failed() {
				if b, err := os.ReadFile(logf.Name()); err == nil {
					t.Logf("member %d log:\n%s", i+1, b)
				}
			}
		})
	}
	waitLeader(t, eps)
	return eps
}

// waitLeader waits until every endpoint reports the same leader.
func waitLeader(t *testing.T, eps []string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders := map[uint64]bool{}
		for _, ep := range eps {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, ep)
			cancel()
			if err != nil || st.Leader == 0 {
				leaders[0] = true
				continue
			}
			leaders[st.Leader] = true
		}
		if len(leaders) == 1 && !leaders[0] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader agreed on by %v: %v", eps, leaders)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startEtcd starts a single-member embedded etcd and returns its gRPC
// endpoint.
func startEtcd(t *testing.T) []string {
	ports := freePortsT(t, 2)
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(ports[0]))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(ports[1]))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd not ready")
	}
	return []string{cu.Host}
}

// checkReport asserts what every successful run must look like: requests
// made and all successful, and ordered percentiles.
func checkReport(t *testing.T, name string, r report) {
	t.Helper()
	if r.Requests == 0 || r.OK != r.Requests || r.Errors != 0 || len(r.ErrorsByKind) != 0 {
		t.Errorf("%s: requests %d ok %d errors %d %v", name, r.Requests, r.OK, r.Errors, r.ErrorsByKind)
	}
	if r.RequestsPerSecond <= 0 || r.ElapsedSeconds <= 0 {
		t.Errorf("%s: %.1f req/s in %.3fs", name, r.RequestsPerSecond, r.ElapsedSeconds)
	}
	l := r.LatencyMs
	if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Min <= l.Mean && l.Mean <= l.Max) {
		t.Errorf("%s: latencies out of order: %+v", name, l)
	}
}

// runWorkloads runs every workload briefly against eps.
func runWorkloads(t *testing.T, eps []string) {
	ep := strings.Join(eps, ",")
	base := []string{"--endpoints", ep, "--duration", "400ms", "--timeout", "5s"}
	run := func(name string, args ...string) report {
		t.Helper()
		r, err := runJSON(t, append(append([]string{}, base...), args...)...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkReport(t, name, r)
		if r.Protocol != "grpc" || r.Target != "grpc" {
			t.Errorf("%s: protocol %q", name, r.Protocol)
		}
		return r
	}

	r := run("put", "--workload", "put", "--clients", "4", "--key-prefix", "p/", "--key-space", "50", "--key-size", "2")
	if r.Conns != len(eps) || r.Ops["put"].OK != r.OK || len(r.Ops) != 1 {
		t.Errorf("put: conns %d, ops %+v", r.Conns, r.Ops)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := cli.Get(ctx, "p/", clientv3.WithPrefix())
	if err != nil || got.Count == 0 || got.Count > 50 {
		t.Fatalf("after the put run: %v keys under p/, %v; want 1 to 50", got, err)
	}
	for _, kv := range got.Kvs {
		if len(kv.Key) != 4 || len(kv.Value) != 256 {
			t.Fatalf("key %q with a value of %d bytes", kv.Key, len(kv.Value))
		}
	}

	r = run("put, sequential, on the leader", "--workload", "put", "--sequential-keys", "--target-leader", "--total", "200", "--duration", "0")
	if r.Requests != 200 || !r.TargetLeader || len(r.Endpoints) != 1 || r.Conns != 1 {
		t.Errorf("put on the leader: %d requests, endpoints %v, conns %d", r.Requests, r.Endpoints, r.Conns)
	}

	for _, c := range []string{"l", "s"} {
		r = run("range "+c, "--workload", "range", "--consistency", c, "--prefill", "--key-prefix", "r/", "--key-space", "300",
			"--clients", "8", "--conns", "5", "--warmup", "100ms")
		if r.GetMisses != 0 || r.PrefillKeys != 300 || r.Conns != 5 || r.Ops["range"].OK != r.OK {
			t.Errorf("range %s: misses %d, prefill %d, conns %d, ops %+v", c, r.GetMisses, r.PrefillKeys, r.Conns, r.Ops)
		}
	}
	got, err = cli.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 300 {
		t.Errorf("after the prefill: %v keys under r/, %v; want 300", got, err)
	}

	r = run("txn mod", "--workload", "txn", "--prefill", "--key-prefix", "t/", "--key-space", "20", "--clients", "8")
	if r.Ops["txn"].OK != r.OK || r.TxnFailedCompares >= r.OK || r.TxnCompare != "mod" {
		t.Errorf("txn mod: ops %+v, failed compares %d", r.Ops, r.TxnFailedCompares)
	}
	r = run("txn value", "--workload", "txn", "--txn-compare", "value", "--prefill", "--key-prefix", "v/", "--key-space", "20", "--clients", "4")
	if r.TxnFailedCompares != 0 {
		t.Errorf("txn value after a prefill: %d compares failed, want 0", r.TxnFailedCompares)
	}

	r = run("watch", "--workload", "watch", "--key-prefix", "w/", "--key-space", "1", "--watchers", "12", "--watch-streams", "3",
		"--clients", "2", "--rate", "200")
	puts, events := r.Ops["put"], r.Ops["watch"]
	if puts.OK == 0 || events.OK != 12*puts.OK || events.Requests != events.OK || r.Watchers != 12 || r.WatchStreams != 3 {
		t.Errorf("watch: %d puts, %d/%d events; want 12 per put", puts.OK, events.OK, events.Requests)
	}
	if events.LatencyMs.P50 <= 0 || events.LatencyMs.Max > 5000 || r.LatencyMs != events.LatencyMs {
		t.Errorf("watch: event latency %+v, top-level %+v", events.LatencyMs, r.LatencyMs)
	}
	if puts.RequestsPerSecond > 250 {
		t.Errorf("watch: %.0f puts/s with --rate 200", puts.RequestsPerSecond)
	}

	r = run("mixed", "--workload", "mixed", "--read-ratio", "0.75", "--prefill", "--key-prefix", "m/", "--key-space", "100", "--clients", "6")
	ranges, mputs := r.Ops["range"].Requests, r.Ops["put"].Requests
	if ranges+mputs != r.Requests || ranges < mputs || r.GetMisses != 0 {
		t.Errorf("mixed: %d ranges, %d puts of %d requests, %d misses", ranges, mputs, r.Requests, r.GetMisses)
	}
}

func TestWorkloadsAgainstMetcd(t *testing.T) {
	runWorkloads(t, startMetcd(t, 3))
}

func TestWorkloadsAgainstEtcd(t *testing.T) {
	runWorkloads(t, startEtcd(t))
}

func TestGRPCErrorsCounted(t *testing.T) {
	// Nothing listens: every request fails, as a gRPC error, and the run
	// says so.
	port := freePortsT(t, 1)[0]
	r, err := runJSON(t, "--endpoints", "127.0.0.1:"+strconv.Itoa(port), "--total", "3", "--timeout", "300ms")
	if err == nil || r.Requests != 3 || r.OK != 0 || r.Errors != 3 || len(r.ErrorsByKind) == 0 {
		t.Fatalf("err %v, report %+v", err, r)
	}
	t.Logf("errors: %+v", r.ErrorsByKind)
}
