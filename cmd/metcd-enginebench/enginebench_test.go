package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchJSON is metcd-bench --json output, trimmed to what a run looks like.
const benchJSON = `{
  "target": "http",
  "endpoints": ["http://127.0.0.1:40001"],
  "workload": "mixed",
  "read_ratio": 0.95,
  "consistency": "linearizable",
  "clients": 64,
  "requests": 30000,
  "ok": 29990,
  "errors": 10,
  "errors_by_kind": [
    {"kind": "http 503", "count": 7, "sample": "HTTP 503 Service Unavailable: no leader"},
    {"kind": "timeout", "count": 3, "sample": "context deadline exceeded"}
  ],
  "get_misses": 0,
  "elapsed_seconds": 3.001,
  "requests_per_second": 9996.7,
  "ok_per_second": 9993.3,
  "latency_ms": {"min": 0.1, "mean": 6, "p50": 5.25, "p90": 9, "p99": 21.5, "p99.9": 40, "max": 55},
  "ops": {
    "get": {"requests": 28500, "ok": 28495, "latency_ms": {"p50": 5.0, "p99": 20.0}},
    "put": {"requests": 1500, "ok": 1495, "latency_ms": {"p50": 8.0, "p99": 30.0}}
  }
}`

func TestParseBenchReport(t *testing.T) {
	r := Run{Engine: "bolt", Keys: 100000, Workload: "read-heavy", ReadRatio: 0.95, Clients: 64}
	if err := parseBenchReport([]byte(benchJSON), &r); err != nil {
		t.Fatal(err)
	}
	if r.Requests != 30000 || r.OK != 29990 || r.Errors != 10 || r.ReqPerSec != 9996.7 || r.P50Ms != 5.25 || r.P99Ms != 21.5 || r.MaxMs != 55 {
		t.Errorf("parsed %+v", r)
	}
	if r.ErrorsByKind["http 503"] != 7 || r.ErrorsByKind["timeout"] != 3 {
		t.Errorf("errors by kind %v", r.ErrorsByKind)
	}
	if r.Ops["put"] != (OpLatency{Requests: 1500, P50Ms: 8, P99Ms: 30}) {
		t.Errorf("put latency %+v", r.Ops["put"])
	}
	if err := parseBenchReport([]byte("metcd-bench: no request succeeded"), &r); err == nil {
		t.Error("parseBenchReport accepted text")
	}
}

// sampleResults has two engines; bolt's 64-client write-heavy run failed
// and its start-up was not measured.
func sampleResults() *Results {
	res := &Results{
		Started: "2025-01-01T00:00:00Z",
		Config: Config{
			Engines: []string{"memory", "bolt"}, Keys: []int64{10000}, Workloads: []string{"read-heavy", "write-heavy"},
			Clients: []int{1, 64}, DurationSeconds: 3, ValueBytes: 256, Members: 3,
		},
	}
	add := func(engine, wl string, ratio float64, clients int, rps, p50, p99 float64, errs int64) {
		res.Runs = append(res.Runs, Run{Engine: engine, Keys: 10000, Workload: wl, ReadRatio: ratio, Clients: clients,
			Requests: int64(rps * 3), OK: int64(rps*3) - errs, Errors: errs, ReqPerSec: rps, P50Ms: p50, P99Ms: p99})
	}
	add("memory", "read-heavy", 0.95, 1, 1234.4, 0.7512, 2.5, 0)
	add("memory", "read-heavy", 0.95, 64, 8000, 7.5, 21, 0)
	add("memory", "write-heavy", 0.05, 1, 900, 1.1, 3, 0)
	add("memory", "write-heavy", 0.05, 64, 5000, 12, 40, 0)
	add("bolt", "read-heavy", 0.95, 1, 1000, 0.9, 3, 0)
	add("bolt", "read-heavy", 0.95, 64, 6000, 10, 30, 2)
	res.Runs[len(res.Runs)-1].ErrorsByKind = map[string]int64{"timeout": 2}
	add("bolt", "write-heavy", 0.05, 1, 400, 2.4, 8, 0)
	res.Runs = append(res.Runs, Run{Engine: "bolt", Keys: 10000, Workload: "write-heavy", ReadRatio: 0.05, Clients: 64,
		Error: "metcd-bench: exit status 1: no | request succeeded\nmore"})
	res.Clusters = []Cluster{
		{Engine: "memory", Keys: 10000, PrefillSeconds: 2.5, PrefillPerSec: 4000, StopSeconds: 0.12, StartupSeconds: 1.75,
			DataDirBytes: 3 << 20, DataDirDisk: 4 << 20, AppliedIndex: 30000, KeysReported: 10000},
		{Engine: "bolt", Keys: 10000, PrefillSeconds: 5, PrefillPerSec: 2000, Error: "member 1 did not exit"},
	}
	return res
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	writeMarkdown(&buf, sampleResults())
	out := buf.String()
	for _, want := range []string{
		"| engine | keys | workload | clients | req/s | p50 ms | p99 ms | errors |",
		"| memory | 10k | read-heavy (95% gets) | 1 | 1234 | 0.75 | 2.50 | 0 |",
		"| bolt | 10k | read-heavy (95% gets) | 64 | 6000 | 10.00 | 30.00 | 2 (timeout: 2) |",
		`| bolt | 10k | write-heavy (5% gets) | 64 | - | - | - | failed: metcd-bench: exit status 1: no \| request succeeded |`,
		"| memory | 10k | 2.5 | 4000 | 0.12 | 1.75 | 3.0 MiB | 4.0 MiB | 0 B |  |",
		"| bolt | 10k | 5.0 | 2000 | - | - | - | - | - | failed: member 1 did not exit |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("markdown lacks the line\n%s\ngot:\n%s", want, out)
		}
	}
	// Every table row has as many cells as its header.
	var cols int
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row has %d separators, header %d: %s", n, cols, line)
		}
	}
}

func TestJSONFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	res := sampleResults()
	if err := writeJSONFile(path, res); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The field names are the interface of the file.
	var raw struct {
		Runs     []map[string]any `json:"runs"`
		Clusters []map[string]any `json:"clusters"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"engine", "keys", "workload", "clients", "req_per_s", "p50_ms", "p99_ms", "errors"} {
		if _, ok := raw.Runs[0][k]; !ok {
			t.Errorf("run JSON lacks %q: %v", k, raw.Runs[0])
		}
	}
	for _, k := range []string{"engine", "keys", "startup_seconds", "data_dir_bytes", "engine_data_bytes", "prefill_seconds"} {
		if _, ok := raw.Clusters[0][k]; !ok {
			t.Errorf("cluster JSON lacks %q: %v", k, raw.Clusters[0])
		}
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != len(res.Runs) || back.Runs[1].ReqPerSec != 8000 || back.Clusters[0].StartupSeconds != 1.75 {
		t.Errorf("round trip lost data: %+v", back)
	}
	// No temporary file is left next to it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want just results.json", len(entries))
	}
}

func TestCharts(t *testing.T) {
	res := sampleResults()
	charts := res.charts()
	// One panel per (keys, workload), then start-up and data size.
	if len(charts) != 4 {
		t.Fatalf("%d panels, want 4", len(charts))
	}
	rh := charts[0]
	if !strings.Contains(rh.Title, "read-heavy") || !strings.Contains(rh.Title, "10k keys") || rh.YLabel != "req/s" {
		t.Errorf("first panel %q (%s)", rh.Title, rh.YLabel)
	}
	if !slices.Equal(rh.Groups, []string{"1 client", "64 clients"}) {
		t.Errorf("groups %q", rh.Groups)
	}
	if len(rh.Series) != 2 || rh.Series[0].Name != "memory" || rh.Series[1].Name != "bolt" {
		t.Fatalf("series %+v", rh.Series)
	}
	if !slices.Equal(rh.Series[0].Values, []float64{1234.4, 8000}) {
		t.Errorf("memory read-heavy values %v", rh.Series[0].Values)
	}
	wh := charts[1]
	if v := wh.Series[1].Values; v[0] != 400 || !math.IsNaN(v[1]) {
		t.Errorf("bolt write-heavy values %v, want [400 NaN] (the failed run has no bar)", v)
	}
	st := charts[2]
	if st.Series[0].Values[0] != 1.75 || !math.IsNaN(st.Series[1].Values[0]) {
		t.Errorf("start-up values %v %v", st.Series[0].Values, st.Series[1].Values)
	}
	if sz := charts[3].Series[0].Values; !slices.Equal(sz, []float64{3, 0}) {
		t.Errorf("memory's data dir and engine size %v MiB, want [3 0]", sz)
	}
	if sz := charts[3].Series[1].Values; !math.IsNaN(sz[0]) || !math.IsNaN(sz[1]) {
		t.Errorf("bolt's sizes %v, want NaN (not measured)", sz)
	}
	// And they render.
	if err := writePNGFile(filepath.Join(t.TempDir(), "e.png"), res); err != nil {
		t.Fatal(err)
	}
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("100000, 1M,10k,2.5k")
	if err != nil || !slices.Equal(got, []int64{100000, 1000000, 10000, 2500}) {
		t.Errorf("parseCounts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-5", "1.5", "x", "10k,10000", "1e13"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) accepted", bad)
		}
	}
}

func TestParseEngineList(t *testing.T) {
	help := "Flags:\n  -engine string\n    \tstorage engine: bolt, leveldb, memory, pebble (default \"memory\")\n  -host string\n"
	got, err := parseEngineList(help)
	if err != nil || !slices.Equal(got, []string{"bolt", "leveldb", "memory", "pebble"}) {
		t.Errorf("parseEngineList = %v, %v", got, err)
	}
	if _, err := parseEngineList("usage: something else"); err == nil {
		t.Error("parseEngineList accepted help without engines")
	}
}

func TestKeysMatchMetcdBench(t *testing.T) {
	// metcd-bench pads key indices to --key-size digits with an empty
	// --key-prefix; the prefill must write exactly those keys.
	if k := makeKey(42, keyDigits(10000)); k != "00000042" {
		t.Errorf("makeKey = %q", k)
	}
	if d := keyDigits(1_000_000_000); d != 9 {
		t.Errorf("keyDigits(1e9) = %d, want 9", d)
	}
	args := strings.Join(benchArgs([]string{"http://a", "http://b"}, 10000, 8, workload{"write-heavy", 0.05}, 64,
		&options{duration: 3 * time.Second, valSize: 256, requestTimeout: 10 * time.Second}), " ")
	for _, want := range []string{"--endpoints http://a,http://b", "--workload mixed", "--read-ratio 0.05", "--consistency linearizable",
		"--clients 64", "--duration 3s", "--key-space 10000", "--key-prefix=", "--key-size 8", "--val-size 256", "--json"} {
		if !strings.Contains(args, want) {
			t.Errorf("metcd-bench args %q lack %q", args, want)
		}
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags([]string{"--engines", "memory", "--keys", "10k", "--duration", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.engines, []string{"memory"}) || !slices.Equal(o.keys, []int64{10000}) || o.duration != 3*time.Second ||
		len(o.workloads) != 2 || !slices.Equal(o.clients, []int{1, 64}) || o.valSize != 256 || o.members != 3 {
		t.Errorf("options %+v", o)
	}
	for _, bad := range [][]string{{"--workloads", "scan"}, {"--clients", "0"}, {"--duration", "1ms"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}
