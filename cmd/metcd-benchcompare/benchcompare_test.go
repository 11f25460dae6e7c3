package main

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.parts, []string{"compare", "growth"}) || o.duration != 20*time.Second || o.rounds != 2 ||
		!slices.Equal(o.engines, []string{"pebble", "memory"}) || !slices.Equal(o.growthKeys, []int64{10000, 1000000}) ||
		o.set.QuotaBytes != 8<<30 || o.set.SnapshotCount != 10000 || o.set.HeartbeatMs != 100 || o.set.ElectionMs != 1000 {
		t.Errorf("defaults: %+v", o)
	}
	var names []string
	for _, w := range o.workloads {
		names = append(names, w.Name)
	}
	if !slices.Equal(names, []string{"put-1", "put-100", "range-l-100", "range-s-100", "txn-100", "watch", "mixed-100"}) {
		t.Errorf("workloads %v", names)
	}

	o, err = parseFlags([]string{"--quick", "--rounds", "3", "--workloads", "watch,put-1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 2*time.Second || o.warmup != 0 || o.rounds != 3 || !slices.Equal(o.growthKeys, []int64{10000}) || len(o.workloads) != 2 || o.workloads[0].Name != "watch" {
		t.Errorf("--quick: %+v", o)
	}

	for _, bad := range [][]string{
		{"--parts", "all"}, {"--workloads", "scan"}, {"--rounds", "0"}, {"--growth-keys", "0"}, {"--quota-backend-bytes", "8GB"},
		{"--metcd-engines", ""}, {"--duration", "1ms"}, {"--put-key-space", "1000000000"}, {"--val-size", "4"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestParseHelpers(t *testing.T) {
	if got, err := parseCounts("10k, 1M,2500"); err != nil || !slices.Equal(got, []int64{10000, 1000000, 2500}) {
		t.Errorf("parseCounts = %v, %v", got, err)
	}
	for s, want := range map[string]int64{"8GiB": 8 << 30, "512MiB": 512 << 20, "1024": 1024, "0": 0} {
		if got, err := parseBytes(s); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	pm, err := parseProcStatus(strings.NewReader("Name:\tmetcd\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\nThreads:\t12\n"))
	if err != nil || pm != (procMem{RSSKiB: 98765, HWMKiB: 123456}) {
		t.Errorf("parseProcStatus = %+v, %v", pm, err)
	}
	if _, err := parseProcStatus(strings.NewReader("Name:\tzombie\n")); err == nil {
		t.Error("parseProcStatus accepted a status without VmRSS")
	}
	self, err := readProcMem(os.Getpid())
	if err != nil || self.RSSKiB <= 0 {
		t.Errorf("readProcMem(self) = %+v, %v", self, err)
	}
	if got := findField(strings.NewReader("processor\t: 0\nmodel name\t: Some  CPU @ 2.0GHz\n"), "model name"); got != "Some CPU @ 2.0GHz" {
		t.Errorf("findField = %q", got)
	}
	if got := memTotal("24684084 kB"); got != "23.5 GiB" {
		t.Errorf("memTotal = %q", got)
	}
	if v := goLangVersion(); !strings.HasPrefix(v, "1.") || strings.Count(v, ".") != 1 {
		t.Errorf("goLangVersion = %q", v)
	}
	if m := etcdVersionRE.FindStringSubmatch("etcd Version: 3.7.3\nGit SHA: x\n"); m == nil || m[1] != "3.7.3" {
		t.Errorf("etcd version: %v", m)
	}
}

func TestMemberArgs(t *testing.T) {
	set := settings{HeartbeatMs: 100, ElectionMs: 1000, SnapshotCount: 10000, QuotaBytes: 8 << 30, LogLevel: "warn"}
	for _, sys := range []system{{Name: "metcd-pebble", Kind: kindMetcd, Engine: "pebble"}, {Name: "etcd", Kind: kindEtcd}} {
		c, err := newCluster(sys, set, t.TempDir(), 3)
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Join(c.args(c.members[1]), " ")
		for _, want := range []string{"--heartbeat-interval 100", "--election-timeout 1000", "--snapshot-count 10000", "--quota-backend-bytes 8589934592"} {
			if !strings.Contains(args, want) {
				t.Errorf("%s: %q lacks %q", sys.Name, args, want)
			}
		}
		m := c.members[1]
		switch sys.Kind {
		case kindMetcd:
			peers := c.members[0].peerURL() + "," + c.members[1].peerURL() + "," + c.members[2].peerURL()
			if !strings.Contains(args, "--id 2 --cluster "+peers) || !strings.Contains(args, "--engine pebble") || strings.Contains(args, "--join") {
				t.Errorf("metcd args %q", args)
			}
		case kindEtcd:
			if !strings.Contains(args, "--name m2") || !strings.Contains(args, "--listen-client-urls "+m.clientURL()) ||
				!strings.Contains(args, "--initial-cluster m1="+c.members[0].peerURL()+",m2=") || !strings.Contains(args, "--initial-cluster-state new") {
				t.Errorf("etcd args %q", args)
			}
		}
		nm, err := c.newMember()
		if err != nil {
			t.Fatal(err)
		}
		nm.join = true
		args = strings.Join(c.args(nm), " ")
		if sys.Kind == kindMetcd && (!strings.Contains(args, "--id 4") || !strings.Contains(args, "--join") || !strings.Contains(args, nm.peerURL())) {
			t.Errorf("joining metcd args %q", args)
		}
		if sys.Kind == kindEtcd && (!strings.Contains(args, "--initial-cluster-state existing") || !strings.Contains(args, "m4="+nm.peerURL())) {
			t.Errorf("joining etcd args %q", args)
		}
	}
}

// TestMemberPortsDistinct lays out many members one at a time: no port may
// be handed to two of them (each layout closes its listeners, so the kernel
// may offer a port again).
func TestMemberPortsDistinct(t *testing.T) {
	sys := system{Name: "metcd-memory", Kind: kindMetcd, Engine: "memory"}
	c, err := newCluster(sys, settings{}, t.TempDir(), 300)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	for _, m := range c.members {
		for _, p := range []int{m.peerPort, m.clientPort} {
			if o, ok := seen[p]; ok {
				t.Fatalf("port %d handed to member %d and member %d", p, o, m.id)
			}
			seen[p] = m.id
		}
	}
}

const benchJSON = `{"protocol":"grpc","workload":"watch","requests":1100,"ok":1100,"errors":0,"errors_by_kind":[],
 "elapsed_seconds":1.0,"requests_per_second":1100,"latency_ms":{"p50":1.5,"p90":2,"p99":3,"p99.9":4,"max":5},
 "ops":{"put":{"requests":100,"ok":100,"ok_per_second":100,"latency_ms":{"p50":1}},
        "watch":{"requests":1000,"ok":1000,"ok_per_second":1000,"latency_ms":{"p50":1.5}}}}`

func TestParseBench(t *testing.T) {
	m, err := parseBench([]byte(benchJSON), true)
	if err != nil || m.ReqPerSec != 1000 || m.P50Ms != 1.5 || m.P99Ms != 3 || m.P999Ms != 4 || m.OK != 1100 {
		t.Errorf("events: %+v, %v", m, err)
	}
	m, err = parseBench([]byte(benchJSON), false)
	if err != nil || m.ReqPerSec != 1100 {
		t.Errorf("requests: %+v, %v", m, err)
	}
	if _, err := parseBench([]byte("metcd-bench: no request succeeded"), false); err == nil {
		t.Error("parseBench accepted text")
	}
}

// sampleResults has two rounds of put-1 on metcd-pebble and etcd (one
// etcd round failed), a watch run, and a growth point.
func sampleResults() *Results {
	o, _ := parseFlags(nil, io.Discard)
	res := &Results{Schema: resultsSchema, Generated: "2026-01-01T00:00:00Z", Etcd: EtcdInfo{Version: "3.7.3", Source: "test"},
		Metcd: MetcdInfo{Source: "abc123", Engines: []string{"pebble"}}, Settings: o.set, Machine: Machine{CPUs: 2, GoVersion: "go1.26"}}
	sec := &CompareSection{Started: "s", Finished: "f", Command: "go run ./cmd/metcd-benchcompare", Quick: true, DurationSeconds: 20, Rounds: 2,
		Members: 3, KeyBytes: 8, ValueBytes: 256, Systems: []string{"metcd-pebble", "etcd"}, Workloads: []workloadSpec{o.workloads[0], o.workloads[5]}}
	add := func(wl, sys string, round int, rps, p99 float64, errText string) {
		sec.Runs = append(sec.Runs, CompareRun{Workload: wl, System: sys, Round: round, Error: errText,
			Args:     []string{"--endpoints", "127.0.0.1:1,127.0.0.1:2", "--workload", "put"},
			Members:  []procMem{{RSSKiB: 50 << 10, HWMKiB: 60 << 10}},
			Measured: Measured{ReqPerSec: rps, P50Ms: p99 / 3, P90Ms: p99 / 2, P99Ms: p99, P999Ms: p99 * 1.5, MaxMs: p99 * 2, Requests: 100, OK: 100}})
	}
	add("put-1", "metcd-pebble", 1, 900, 3, "")
	add("put-1", "metcd-pebble", 2, 1100, 5, "")
	add("put-1", "etcd", 1, 500, 8, "")
	add("put-1", "etcd", 2, 0, 0, "cluster did not start | at all")
	add("watch", "metcd-pebble", 1, 10000, 2, "")
	add("watch", "etcd", 1, 9000, 4, "")
	res.Compare = sec
	res.Growth = &GrowthSection{Keys: []int64{10000}, Systems: []string{"metcd-pebble", "etcd"}, Clients: 100, DurationSeconds: 10,
		Points: []GrowthPoint{
			{System: "metcd-pebble", Keys: 10000, PrefillSeconds: 0.5, MemAfterPrefill: []procMem{{RSSKiB: 40 << 10}, {RSSKiB: 41 << 10}},
				Put: &Measured{ReqPerSec: 5000, P99Ms: 30}, Range: &Measured{ReqPerSec: 9000, P99Ms: 20}, RestartSeconds: 0.4, StopSeconds: 0.01,
				CatchupSeconds: 0.7, CatchupBySnapshot: true, MemNewMember: &procMem{RSSKiB: 45 << 10}, DataDirBytes: 70 << 20},
			{System: "etcd", Keys: 10000, Error: "prefill: boom"},
		}}
	return res
}

// mustContain reports each of wants that text, named what, lacks.
func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", what, want)
		}
	}
}

func TestReport(t *testing.T) {
	res := sampleResults()
	a := aggregate(res.Compare, "put-1", "metcd-pebble")
	if a.ReqPerS != 1000 || a.P99 != 4 || len(a.Rounds) != 2 || a.PeakKiB != 60<<10 {
		t.Errorf("aggregate: %+v", a)
	}
	e := aggregate(res.Compare, "put-1", "etcd")
	if e.ReqPerS != 500 || len(e.Failed) != 1 {
		t.Errorf("aggregate with a failed round: %+v", e)
	}
	md := markdown(res, "performance.png", "performance-results.json", "## Where the time goes\n\nprose")
	mustContain(t, "markdown", md,
		"**Smoke run of the side-by-side part.**",
		"| put, 1 client (on the leader) | 500 req/s, p99 8.00 ms | 1000 req/s (2.00×), p99 4.00 ms (0.50×) |",
		"| metcd (pebble) | 1000 | 900, 1100 | 1.33 | 2.00 | 4.00 | 6.00 | 10.0 | 2.00× | 0.50× | 0 | 60 |",
		"| etcd 3.7.3 | 500 | 500 |",
		"metcd-bench --endpoints $ENDPOINTS --workload put",
		"10,000 events/s (1.11×)",
		"| 10k | metcd (pebble) | 0.5 (20,000) | 40 / 41 | 5000 (30.00) | 9000 (20.00) |",
		"| 10k | metcd (pebble) | 0.01 | 0.40 | - | 0.70 | yes | 45 |",
		"failed: prefill: boom",
		"\n\n## Where the time goes\n\nprose\n\n## How to reproduce",
		"![metcd and etcd side by side](performance.png)",
		"| CPUs (nproc) | 2 |",
		"--snapshot-count 10000 --quota-backend-bytes 8589934592",
	)
	if t.Failed() {
		t.Log(md)
	}

	// Parts run at different commits say so; a part that recorded none
	// (results written before parts recorded theirs) says that.
	res.Compare.Metcd, res.Growth.Metcd = "old111", "new222"
	md = markdown(res, "performance.png", "performance-results.json", "")
	mustContain(t, "markdown with two commits", md,
		"metcd side by side `old111`, growth `new222`;",
		"measured at metcd `old111` from s to f.",
		"Measured at metcd `new222` from",
		"| metcd | side by side `old111`, growth `new222`; engines pebble |",
	)
	res.Growth.Metcd = "old111"
	if md = markdown(res, "performance.png", "performance-results.json", ""); !strings.Contains(md, "Generated 2026-01-01T00:00:00Z. metcd `old111`;") {
		t.Errorf("markdown with one commit for both parts lacks it in its header")
	}
	res.Compare.Metcd = ""
	if md = markdown(res, "performance.png", "performance-results.json", ""); !strings.Contains(md, "side by side not recorded, growth `old111`") {
		t.Errorf("markdown with a part that recorded no commit does not say so")
	}
	res.Compare.Metcd, res.Growth.Metcd = "", ""

	charts := res.charts()
	if len(charts) != 2+2+6 {
		t.Fatalf("%d charts", len(charts))
	}
	if v := charts[0].Series[0].Values[0]; v != 2 {
		t.Errorf("throughput ratio of put-1 = %v, want 2", v)
	}
	if v := charts[1].Series[0].Values[1]; v != 2 {
		t.Errorf("p99 ratio of watch = %v, want 2", v)
	}
	if v := charts[4].Series[1].Values[0]; !math.IsNaN(v) {
		t.Errorf("failed growth point drawn as %v", v)
	}
	path := filepath.Join(t.TempDir(), "p.png")
	if err := writePNGFile(path, res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
}

func TestResultsMerge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	if r := loadResults(path); r.Schema != resultsSchema || r.Compare != nil {
		t.Fatalf("missing file: %+v", r)
	}
	if err := writeJSONFile(path, sampleResults()); err != nil {
		t.Fatal(err)
	}
	r := loadResults(path)
	if r.Compare == nil || len(r.Compare.Runs) != 6 || r.Growth == nil || len(r.Growth.Points) != 2 {
		t.Fatalf("reloaded: %+v", r)
	}
	os.WriteFile(path, []byte(`{"schema": 99}`), 0o644)
	if r := loadResults(path); r.Compare != nil {
		t.Error("a file of another schema was merged")
	}
}

// TestAgainstMetcd runs every workload and the growth measurements, very
// briefly, against a real 3-member metcd cluster (memory engine), through
// the same code as the comparison; etcd is left to the smoke run of
// make bench-compare ARGS=--quick (building it needs the module proxy).
func TestAgainstMetcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	ctx := context.Background()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	metcd, bench, err := buildMetcd(ctx, root, bin)
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--duration", "400ms", "--warmup", "100ms", "--growth-duration", "300ms", "--snapshot-count", "100",
		"--clients", "8", "--conns", "3", "--key-space", "200", "--put-key-space", "1000", "--watchers", "6", "--watch-streams", "2",
		"--watch-rate", "50", "--request-timeout", "5s", "--stop-grace", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.metcd, o.bench = metcd, bench
	var log bytes.Buffer
	e := &env{o: o, work: t.TempDir(), settings: o.set, stderr: &log, res: &Results{Schema: resultsSchema}}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	}()
	sys := system{Name: "metcd-memory", Kind: kindMetcd, Engine: "memory", Bin: metcd}

	for _, w := range o.workloads {
		r := e.compareRun(ctx, sys, w, 1, w.Name)
		if r.Error != "" || r.OK == 0 || r.Errors != 0 || r.ReqPerSec <= 0 || !(r.P50Ms <= r.P99Ms && r.P99Ms <= r.MaxMs) || r.ReadySeconds <= 0 {
			t.Errorf("%s: %+v", w.Name, r)
		}
		if len(r.Members) != 3 || r.Members[0].RSSKiB <= 0 {
			t.Errorf("%s: member memory %+v", w.Name, r.Members)
		}
		if w.Events && r.ReqPerSec < 100 {
			t.Errorf("watch: %.0f events/s with 6 watchers of 1 key at 50 puts/s", r.ReqPerSec)
		}
	}

	var p GrowthPoint
	if err := e.growthPoint(ctx, sys, 500, &p, "growth"); err != nil {
		t.Fatal(err)
	}
	if p.PrefillSeconds <= 0 || len(p.MemAfterPrefill) != 3 || p.Put == nil || p.Put.OK == 0 || p.Range == nil || p.Range.GetMisses != 0 ||
		p.RestartSeconds <= 0 || p.MemAfterRestart == nil || p.CatchupSeconds <= 0 || p.MemNewMember == nil || p.MemNewMember.RSSKiB <= 0 ||
		p.PadWrites != 6100 || !p.CatchupBySnapshot || p.MemAfterRestart == p.MemNewMember {
		t.Errorf("growth point %+v", p)
	}
}

// TestTooBig: only in-memory engines are skipped, from the RSS growth
// measured at smaller key counts, projected to the new count.
func TestTooBig(t *testing.T) {
	mem := system{Name: "metcd-memory", Kind: "metcd", Engine: "memory"}
	peb := system{Name: "metcd-pebble", Kind: "metcd", Engine: "pebble"}
	et := system{Name: "etcd", Kind: kindEtcd}
	const total = 24 << 20 // KiB: 24 GiB
	rss := func(mib ...int64) []procMem {
		var ms []procMem
		for _, m := range mib {
			ms = append(ms, procMem{RSSKiB: m << 10})
		}
		return ms
	}
	small := GrowthPoint{System: "metcd-memory", Keys: 10_000, MemAfterRuns: rss(150, 160, 155)}
	done := []GrowthPoint{
		small,
		{System: "metcd-memory", Keys: 1_000_000, MemAfterPrefill: rss(1700), MemAfterRuns: rss(1900, 2000, 1800)},
		{System: "metcd-pebble", Keys: 1_000_000, MemAfterRuns: rss(6000)},
		{System: "etcd", Keys: 1_000_000, MemAfterRuns: rss(8000)},
	}
	// 10k -> 1M: the 10k point's RSS is mostly fixed overhead; it alone
	// must not skip 1M (150 MiB x 100 would be 44 GiB for 3 members).
	if why := tooBig([]GrowthPoint{small}, mem, 1_000_000, 3, total); why != "" {
		t.Errorf("memory at 1M after 10k: skipped (%s), want measured", why)
	}
	// 10k, 1M -> 10M: about 1.9 KiB a key more, 2000 MiB + 17 GiB a member.
	why := tooBig(done, mem, 10_000_000, 3, total)
	if why == "" || !strings.Contains(why, "at 1M keys") || !strings.Contains(why, "10M keys") {
		t.Errorf("memory at 10M: %q, want a reason naming 1M and 10M", why)
	}
	// 1M -> 2M: 2000 + 1870 MiB a member, 11.3 GiB for 3: fits in 18 GiB.
	if why := tooBig(done, mem, 2_000_000, 3, total); why != "" {
		t.Errorf("memory at 2M: skipped (%s), want measured", why)
	}
	// One large point alone is scaled: 2000 MiB x 10 x 3 members.
	if why := tooBig(done[1:2], mem, 10_000_000, 3, total); why == "" {
		t.Errorf("memory at 10M from 1M alone: measured, want skipped")
	}
	// Nothing measured before: measure.
	if why := tooBig(nil, mem, 10_000_000, 3, total); why != "" {
		t.Errorf("memory with no earlier point: skipped (%s)", why)
	}
	// Disk engines and etcd are never skipped, whatever their RSS.
	for _, s := range []system{peb, et} {
		if why := tooBig(done, s, 10_000_000, 3, total); why != "" {
			t.Errorf("%s at 10M: skipped (%s)", s.Name, why)
		}
	}
	// A skipped point is not a base for the next count.
	done2 := append(done, GrowthPoint{System: "metcd-memory", Keys: 10_000_000, Skipped: "x"})
	if why := tooBig(done2, mem, 20_000_000, 3, total); !strings.Contains(why, "at 1M keys") {
		t.Errorf("memory at 20M after a skipped 10M: %q, want it projected from 1M", why)
	}
}
