package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/metcd/metcd/internal/chart"
)

// Results is everything a comparison measured; --out writes it as JSON.
type Results struct {
	Started  string    `json:"started"`            // RFC 3339
	Finished string    `json:"finished,omitempty"` // RFC 3339; empty while running
	Host     HostInfo  `json:"host"`
	Config   Config    `json:"config"`
	Runs     []Run     `json:"runs"`     // one per engine, keys, workload and client count
	Clusters []Cluster `json:"clusters"` // one per engine and keys: prefill, start-up, size
	Failed   []string  `json:"failed,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
}

// HostInfo describes the machine the comparison ran on.
type HostInfo struct {
	Hostname  string `json:"hostname"`
	CPUs      int    `json:"cpus"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
}

// Config is what was asked for.
type Config struct {
	Engines         []string `json:"engines"`
	Keys            []int64  `json:"keys"`
	Workloads       []string `json:"workloads"`
	Clients         []int    `json:"clients"`
	DurationSeconds float64  `json:"duration_seconds"` // of each run
	ValueBytes      int      `json:"value_bytes"`
	KeyBytes        []int    `json:"key_bytes"` // per Keys entry
	Members         int      `json:"members"`
	PrefillClients  int      `json:"prefill_clients"`
	MetcdFlags      []string `json:"metcd_flags,omitempty"`
	Metcd           string   `json:"metcd"`
	Bench           string   `json:"bench"`
}

// Run is one measured workload run (one metcd-bench invocation).
type Run struct {
	Engine       string               `json:"engine"`
	Keys         int64                `json:"keys"`
	Workload     string               `json:"workload"`
	ReadRatio    float64              `json:"read_ratio"`
	Consistency  string               `json:"consistency"`
	Clients      int                  `json:"clients"`
	Requests     int64                `json:"requests"`
	OK           int64                `json:"ok"`
	Errors       int64                `json:"errors"`
	ErrorsByKind map[string]int64     `json:"errors_by_kind,omitempty"`
	GetMisses    int64                `json:"get_misses"`
	Elapsed      float64              `json:"elapsed_seconds"`
	ReqPerSec    float64              `json:"req_per_s"`
	OKPerSec     float64              `json:"ok_per_s"`
	P50Ms        float64              `json:"p50_ms"`
	P99Ms        float64              `json:"p99_ms"`
	MaxMs        float64              `json:"max_ms"`
	Ops          map[string]OpLatency `json:"ops,omitempty"` // "get", "put"
	Error        string               `json:"error,omitempty"`
}

// OpLatency is the latency of one kind of request, in milliseconds.
type OpLatency struct {
	Requests int64   `json:"requests"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
}

// Cluster is what was measured of one cluster (engine and key count)
// besides the runs: the prefill, and the restart of member 1.
type Cluster struct {
	Engine          string  `json:"engine"`
	Keys            int64   `json:"keys"`
	ReadySeconds    float64 `json:"ready_seconds,omitempty"` // first start until a leader
	PrefillSeconds  float64 `json:"prefill_seconds,omitempty"`
	PrefillPerSec   float64 `json:"prefill_per_s,omitempty"`
	KeysReported    int64   `json:"keys_reported,omitempty"` // member 1's /admin/status keys before the stop
	AppliedIndex    uint64  `json:"applied_index,omitempty"` // member 1's applied index before the stop
	StopSeconds     float64 `json:"stop_seconds,omitempty"`  // SIGTERM until exit
	StartupSeconds  float64 `json:"startup_seconds,omitempty"`
	EngineDataBytes int64   `json:"engine_data_bytes"`        // /admin/status data_size_bytes (0 for memory)
	DataDirBytes    int64   `json:"data_dir_bytes,omitempty"` // member 1's data dir: sum of file sizes
	DataDirDisk     int64   `json:"data_dir_disk_bytes,omitempty"`
	Error           string  `json:"error,omitempty"`
}

// workload is a named mix of linearizable gets and puts.
type workload struct {
	Name      string
	ReadRatio float64
}

var knownWorkloads = []workload{
	{"read-heavy", 0.95},
	{"write-heavy", 0.05},
}

func lookupWorkload(name string) (workload, bool) {
	for _, w := range knownWorkloads {
		if w.Name == name {
			return w, true
		}
	}
	return workload{}, false
}

// describe is a short description of a workload, for titles.
func (w workload) describe() string {
	return fmt.Sprintf("%s (%.0f%% gets)", w.Name, w.ReadRatio*100)
}

// benchReport is the part of metcd-bench --json output we use.
type benchReport struct {
	Workload     string  `json:"workload"`
	ReadRatio    float64 `json:"read_ratio"`
	Consistency  string  `json:"consistency"`
	Clients      int     `json:"clients"`
	Requests     int64   `json:"requests"`
	OK           int64   `json:"ok"`
	Errors       int64   `json:"errors"`
	ErrorsByKind []struct {
		Kind   string `json:"kind"`
		Count  int64  `json:"count"`
		Sample string `json:"sample"`
	} `json:"errors_by_kind"`
	GetMisses         int64        `json:"get_misses"`
	ElapsedSeconds    float64      `json:"elapsed_seconds"`
	RequestsPerSecond float64      `json:"requests_per_second"`
	OKPerSecond       float64      `json:"ok_per_second"`
	LatencyMs         benchLatency `json:"latency_ms"`
	Ops               map[string]struct {
		Requests  int64        `json:"requests"`
		OK        int64        `json:"ok"`
		LatencyMs benchLatency `json:"latency_ms"`
	} `json:"ops"`
}

type benchLatency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// parseBenchReport decodes metcd-bench --json output into r's measured
// fields.
func parseBenchReport(data []byte, r *Run) error {
	var b benchReport
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("metcd-bench output: %w", err)
	}
	r.Consistency = b.Consistency
	r.Requests, r.OK, r.Errors, r.GetMisses = b.Requests, b.OK, b.Errors, b.GetMisses
	r.Elapsed = b.ElapsedSeconds
	r.ReqPerSec, r.OKPerSec = b.RequestsPerSecond, b.OKPerSecond
	r.P50Ms, r.P99Ms, r.MaxMs = b.LatencyMs.P50, b.LatencyMs.P99, b.LatencyMs.Max
	r.ErrorsByKind = nil
	for _, e := range b.ErrorsByKind {
		if r.ErrorsByKind == nil {
			r.ErrorsByKind = map[string]int64{}
		}
		r.ErrorsByKind[e.Kind] += e.Count
	}
	r.Ops = nil
	for name, o := range b.Ops {
		if r.Ops == nil {
			r.Ops = map[string]OpLatency{}
		}
		r.Ops[name] = OpLatency{Requests: o.Requests, P50Ms: o.LatencyMs.P50, P99Ms: o.LatencyMs.P99}
	}
	return nil
}

// writeJSONFile writes res to path atomically (a temporary file renamed),
// so an interrupted comparison leaves the last complete state.
func writeJSONFile(path string, res *Results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// countLabel prints a key count as 10k, 100k, 1M.
func countLabel(n int64) string { return chart.FormatValue(float64(n)) }

// sizeLabel prints a byte count in binary units.
func sizeLabel(b int64) string {
	const unit = 1024
	if b < unit {
		return strconv.FormatInt(b, 10) + " B"
	}
	v, u := float64(b), -1
	for v >= unit && u < 3 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[u])
}

func num(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

// writeMarkdown prints the runs and the clusters as two markdown tables.
func writeMarkdown(w io.Writer, res *Results) {
	fmt.Fprintf(w, "### Throughput and latency (%d members, %d-byte values, linearizable gets, %gs per run)\n\n",
		res.Config.Members, res.Config.ValueBytes, res.Config.DurationSeconds)
	fmt.Fprintln(w, "| engine | keys | workload | clients | req/s | p50 ms | p99 ms | errors |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range res.Runs {
		wl := fmt.Sprintf("%s (%.0f%% gets)", r.Workload, r.ReadRatio*100)
		if r.Error != "" && r.Requests == 0 {
			fmt.Fprintf(w, "| %s | %s | %s | %d | - | - | - | failed: %s |\n",
				r.Engine, countLabel(r.Keys), wl, r.Clients, mdEscape(firstLine(r.Error)))
			continue
		}
		errs := strconv.FormatInt(r.Errors, 10)
		if len(r.ErrorsByKind) > 0 {
			var kinds []string
			for _, k := range sortedKeys(r.ErrorsByKind) {
				kinds = append(kinds, fmt.Sprintf("%s: %d", k, r.ErrorsByKind[k]))
			}
			errs += " (" + strings.Join(kinds, ", ") + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %s | %s | %s |\n",
			r.Engine, countLabel(r.Keys), wl, r.Clients, num(r.ReqPerSec, 0), num(r.P50Ms, 2), num(r.P99Ms, 2), mdEscape(errs))
	}

	fmt.Fprintf(w, "\n### Prefill, start-up and data size (member 1: SIGTERM, restart, caught up and serving a serializable get)\n\n")
	fmt.Fprintln(w, "| engine | keys | prefill s | prefill puts/s | stop s | start-up s | data dir | data dir on disk | engine files | note |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, c := range res.Clusters {
		cell := func(ok bool, s string) string {
			if !ok {
				return "-"
			}
			return s
		}
		note := ""
		if c.Error != "" {
			note = "failed: " + mdEscape(firstLine(c.Error))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Engine, countLabel(c.Keys),
			cell(c.PrefillSeconds > 0, num(c.PrefillSeconds, 1)),
			cell(c.PrefillPerSec > 0, num(c.PrefillPerSec, 0)),
			cell(c.StopSeconds > 0, num(c.StopSeconds, 2)),
			cell(c.StartupSeconds > 0, num(c.StartupSeconds, 2)),
			cell(c.DataDirBytes > 0, sizeLabel(c.DataDirBytes)),
			cell(c.DataDirDisk > 0, sizeLabel(c.DataDirDisk)),
			cell(c.AppliedIndex > 0, sizeLabel(c.EngineDataBytes)),
			note)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func sortedKeys(m map[string]int64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// findRun returns the run of the given parameters, or nil.
func (res *Results) findRun(engine string, keys int64, wl string, clients int) *Run {
	for i := range res.Runs {
		r := &res.Runs[i]
		if r.Engine == engine && r.Keys == keys && r.Workload == wl && r.Clients == clients {
			return r
		}
	}
	return nil
}

func (res *Results) findCluster(engine string, keys int64) *Cluster {
	for i := range res.Clusters {
		c := &res.Clusters[i]
		if c.Engine == engine && c.Keys == keys {
			return c
		}
	}
	return nil
}

func clientsLabel(n int) string {
	if n == 1 {
		return "1 client"
	}
	return strconv.Itoa(n) + " clients"
}

// charts builds the panels of the PNG: req/s for each (keys, workload),
// groups = client counts, series = engines; then start-up time (groups =
// key counts) and the size of member 1's data dir and engine files (two
// groups per key count). Missing measurements are NaN (no bar).
func (res *Results) charts() []*chart.Bar {
	cfg := res.Config
	var out []*chart.Bar
	for _, keys := range cfg.Keys {
		for _, wname := range cfg.Workloads {
			wl, ok := lookupWorkload(wname)
			if !ok {
				wl = workload{Name: wname}
			}
			b := &chart.Bar{
				Title:  fmt.Sprintf("%s, %s keys", wl.describe(), countLabel(keys)),
				YLabel: "req/s",
			}
			for _, c := range cfg.Clients {
				b.Groups = append(b.Groups, clientsLabel(c))
			}
			for _, e := range cfg.Engines {
				s := chart.Series{Name: e}
				for _, c := range cfg.Clients {
					v := math.NaN()
					if r := res.findRun(e, keys, wname, c); r != nil && r.Error == "" && r.OK > 0 {
						v = r.ReqPerSec
					}
					s.Values = append(s.Values, v)
				}
				b.Series = append(b.Series, s)
			}
			out = append(out, b)
		}
	}
	startup := &chart.Bar{Title: "start-up of member 1 (restart until caught up)", YLabel: "seconds"}
	size := &chart.Bar{Title: "member 1 on disk: data dir (WAL, snaps, engine), engine", YLabel: "MiB"}
	for _, keys := range cfg.Keys {
		startup.Groups = append(startup.Groups, countLabel(keys)+" keys")
		size.Groups = append(size.Groups, countLabel(keys)+": data dir", countLabel(keys)+": engine")
	}
	const mib = 1 << 20
	for _, e := range cfg.Engines {
		st, sz := chart.Series{Name: e}, chart.Series{Name: e}
		for _, keys := range cfg.Keys {
			sv, dir, eng := math.NaN(), math.NaN(), math.NaN()
			if c := res.findCluster(e, keys); c != nil {
				if c.StartupSeconds > 0 {
					sv = c.StartupSeconds
				}
				if c.DataDirBytes > 0 {
					dir = float64(c.DataDirBytes) / mib
				}
				if c.AppliedIndex > 0 { // status was read: 0 is a value (memory)
					eng = float64(c.EngineDataBytes) / mib
				}
			}
			st.Values = append(st.Values, sv)
			sz.Values = append(sz.Values, dir, eng)
		}
		startup.Series = append(startup.Series, st)
		size.Series = append(size.Series, sz)
	}
	return append(out, startup, size)
}

// Panel size and layout of the PNG.
const (
	panelW    = 560
	panelH    = 360
	panelCols = 2
)

// writePNGFile renders res.charts() to path.
func writePNGFile(path string, res *Results) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := chart.Grid(res.charts(), panelCols, f, panelW, panelH); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
