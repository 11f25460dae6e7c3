package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/metcd/metcd/internal/chart"
)

// resultsSchema is the version of the JSON layout; a file of another
// version is not merged.
const resultsSchema = 1

// Results is everything measured; --json writes it.
type Results struct {
	Schema    int             `json:"schema"`
	Generated string          `json:"generated,omitempty"`
	Machine   Machine         `json:"machine"`
	Etcd      EtcdInfo        `json:"etcd"`
	Metcd     MetcdInfo       `json:"metcd"`
	Settings  settings        `json:"settings"`
	Compare   *CompareSection `json:"compare,omitempty"`
	Growth    *GrowthSection  `json:"growth,omitempty"`
	Failed    []string        `json:"failed,omitempty"`
	Notes     []string        `json:"notes,omitempty"`
}

// MetcdInfo says which metcd was measured.
type MetcdInfo struct {
	Source  string   `json:"source"` // git describe
	Engines []string `json:"engines"`
}

// loadResults reads the results of an earlier invocation from path, or
// returns empty results.
// metcdSources names the metcd commit each part measured ("not recorded"
// for results written before parts recorded theirs), or one commit when
// both parts measured the same.
func metcdSources(res *Results) string {
	var parts []string
	add := func(name, src string) {
		if src == "" {
			src = "not recorded"
		} else {
			src = "`" + src + "`"
		}
		parts = append(parts, name+" "+src)
	}
	if res.Compare != nil {
		add("side by side", res.Compare.Metcd)
	}
	if res.Growth != nil {
		add("growth", res.Growth.Metcd)
	}
	if len(parts) == 0 {
		return "`" + res.Metcd.Source + "`"
	}
	if res.Compare != nil && res.Growth != nil && res.Compare.Metcd == res.Growth.Metcd && res.Compare.Metcd != "" {
		return "`" + res.Compare.Metcd + "`"
	}
	return strings.Join(parts, ", ")
}

// atMetcd is " at metcd `src`", or nothing when src was not recorded.
func atMetcd(src string) string {
	if src == "" {
		return ""
	}
	return " at metcd `" + src + "`"
}

func loadResults(path string) *Results {
	fresh := &Results{Schema: resultsSchema}
	if path == "" {
		return fresh
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fresh
	}
	var r Results
	if json.Unmarshal(b, &r) != nil || r.Schema != resultsSchema {
		return fresh
	}
	return &r
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writeJSONFile(path string, res *Results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// countLabel prints a key count as 10k, 1M.
func countLabel(n int64) string { return chart.FormatValue(float64(n)) }

// agg is the runs of one workload on one system, over the rounds.
type agg struct {
	Rounds   []float64 // req/s of each successful round
	ReqPerS  float64   // mean of Rounds
	P50, P90 float64   // means, ms
	P99      float64
	P999     float64
	Max      float64 // the largest
	Errors   int64
	Failed   []string // errors of failed rounds
	PeakKiB  int64    // the largest VmHWM of any member
}

func (a *agg) ok() bool { return len(a.Rounds) > 0 }

func aggregate(sec *CompareSection, workload, sys string) *agg {
	a := &agg{}
	for _, r := range sec.Runs {
		if r.Workload != workload || r.System != sys {
			continue
		}
		for _, m := range r.Members {
			a.PeakKiB = max(a.PeakKiB, m.HWMKiB)
		}
		a.Errors += r.Errors
		if r.Error != "" || r.OK == 0 {
			msg := firstLine(r.Error)
			if msg == "" {
				msg = "no request succeeded"
			}
			a.Failed = append(a.Failed, msg)
			continue
		}
		a.Rounds = append(a.Rounds, r.ReqPerSec)
		a.ReqPerS += r.ReqPerSec
		a.P50 += r.P50Ms
		a.P90 += r.P90Ms
		a.P99 += r.P99Ms
		a.P999 += r.P999Ms
		a.Max = max(a.Max, r.MaxMs)
	}
	if n := float64(len(a.Rounds)); n > 0 {
		a.ReqPerS /= n
		a.P50 /= n
		a.P90 /= n
		a.P99 /= n
		a.P999 /= n
	}
	return a
}

func num(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

// rate prints a rate with no decimals below 10k and thousands separated.
func rate(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	if len(s) > 4 {
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	return s
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return num(a/b, 2) + "×"
}

func mib(kib int64) string {
	if kib <= 0 {
		return "-"
	}
	return strconv.FormatInt((kib+512)>>10, 10)
}

func bytesLabel(b int64) string {
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

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// systemLabel is a system's name for tables.
func (res *Results) systemLabel(name string) string {
	if name == kindEtcd {
		return system{Kind: kindEtcd}.label(res.Etcd.Version)
	}
	if eng, ok := strings.CutPrefix(name, "metcd-"); ok {
		return "metcd (" + eng + ")"
	}
	return name
}

func shellJoin(args []string) string {
	var out []string
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$&|;<>()*?[]{}\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// withEndpointsVar joins metcd-bench args for a shell, the endpoints
// replaced by $ENDPOINTS.
func withEndpointsVar(args []string) string {
	args = append([]string(nil), args...)
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--endpoints" {
			args[i+1] = "$ENDPOINTS"
		}
	}
	return strings.ReplaceAll(shellJoin(args), "'$ENDPOINTS'", "$ENDPOINTS")
}

// benchCommand is the metcd-bench command line of a workload, with the
// endpoints left as $ENDPOINTS.
func benchCommand(sec *CompareSection, w workloadSpec) string {
	for _, r := range sec.Runs {
		if r.Workload == w.Name && len(r.Args) > 0 {
			return "metcd-bench " + withEndpointsVar(r.Args)
		}
	}
	return "metcd-bench " + shellJoin(w.Args)
}

// markdown renders the whole report page.
// markdown renders the page. analysis, if not empty, is the hand-written
// account of where the time goes (docs/performance-analysis.md), placed
// after the measured sections: it is prose about the code, not a result.
func markdown(res *Results, pngName, jsonName, analysis string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	etcdLabel := res.systemLabel(kindEtcd)

	w("# Performance: metcd and etcd side by side\n\n")
	w("<!-- Generated by `make bench-compare` (go run ./cmd/metcd-benchcompare). Do not edit: run it again. -->\n\n")
	switch cq, gq := res.Compare != nil && res.Compare.Quick, res.Growth != nil && res.Growth.Quick; {
	case cq && gq:
		w("> **Smoke run.** These figures come from `--quick` (runs of a few seconds, one round, small key counts),\n")
		w("> made to check that the tooling works. They are not a measurement: run `make bench-compare` on a quiet machine.\n\n")
	case cq:
		w("> **Smoke run of the side-by-side part.** Its figures come from `--quick`; they are not a measurement.\n\n")
	case gq:
		w("> **Smoke run of the growth part** (\"Cost as the work grows\"): its figures come from `--quick` (small key\n")
		w("> counts, runs of a few seconds) and are not a measurement. The side-by-side part is a real run.\n\n")
	}
	w("This page compares metcd with etcd %s on the same machine, through the same client (etcd's\n", res.Etcd.Version)
	w("`go.etcd.io/etcd/client/v3`, driven by `metcd-bench`) and the same workloads. Both run as %s-member\n", membersOf(res))
	w("clusters on loopback with the same settings (below), fsync on, one cluster at a time, each run on a fresh cluster;\n")
	w("within each workload and round the systems take turns (metcd, etcd, metcd, etcd, ...), so that drift in the\n")
	w("machine affects them alike. Figures are means over the rounds. Everything runs on one machine: the\n")
	w("members, the load generator and the disk are shared, so this measures the cost of each system's work, not a\n")
	w("deployment's capacity.\n\n")
	// Each part names the metcd it measured: a run of one part keeps the
	// other's results, which may come from an older commit.
	w("Generated %s. metcd %s; etcd %s (%s).\n", res.Generated, metcdSources(res), res.Etcd.Version, res.Etcd.Source)
	w("Raw results: [%s](%s).\n\n", jsonName, jsonName)
	w("![metcd and etcd side by side](%s)\n\n", pngName)

	if sec := res.Compare; sec != nil {
		writeCompare(&b, res, sec, etcdLabel)
	}
	if sec := res.Growth; sec != nil {
		writeGrowth(&b, res, sec)
	}

	w("## Machine\n\n")
	m := res.Machine
	w("| | |\n|---|---|\n")
	w("| CPUs (nproc) | %d |\n", m.CPUs)
	w("| CPU model | %s |\n", orDash(m.CPUModel))
	w("| memory | %s |\n", orDash(m.MemTotal))
	w("| OS, kernel | %s, %s |\n", orDash(m.OS), orDash(m.Kernel))
	w("| data dirs on | %s |\n", orDash(m.WorkDirFS))
	w("| Go | %s |\n", m.GoVersion)
	w("| etcd | %s: `%s` |\n", res.Etcd.Version, mdEscape(res.Etcd.Source))
	w("| metcd | %s; engines %s |\n\n", metcdSources(res), strings.Join(res.Metcd.Engines, ", "))

	s := res.Settings
	w("## Settings\n\n")
	w("Both systems, every member: `--heartbeat-interval %d --election-timeout %d --snapshot-count %d --quota-backend-bytes %d --log-level %s`,\n",
		s.HeartbeatMs, s.ElectionMs, s.SnapshotCount, s.QuotaBytes, s.LogLevel)
	w("fsync on (the default of both), no auto-compaction (the default of both), default request size limits,\n")
	w("every member on 127.0.0.1 with its own data dir. metcd members also get `--engine <engine>`; etcd members\n")
	w("the usual `--name`, `--initial-cluster`, `--listen-*`/`--advertise-*` URLs. Keys are %d bytes, values %d bytes.\n\n",
		keyBytesOf(res), valueBytesOf(res))

	if a := strings.TrimSpace(analysis); a != "" {
		w("%s\n\n", a)
	}

	w("## How to reproduce\n\n")
	w("```sh\n")
	w("make bench-compare                       # both parts, as on this page (about 35 minutes on 2 cores)\n")
	w("make bench-compare ARGS='--rounds 3'     # flags go in ARGS (go run ./cmd/metcd-benchcompare --help)\n")
	w("go run ./cmd/metcd-benchcompare --quick  # a smoke run of a few minutes\n")
	w("go run ./cmd/metcd-benchcompare --parts growth --growth-keys 10k,1M,10M   # only the growth part (keeps the rest)\n")
	w("```\n\n")
	if res.Compare != nil {
		w("This page's comparison: `%s`.\n", res.Compare.Command)
	}
	if res.Growth != nil {
		w("This page's growth part: `%s`.\n", res.Growth.Command)
	}
	w("\nThe tool builds metcd and metcd-bench from the module, gets etcd %s (built from `%s@%s` in a\n", etcdVersion, etcdModule, etcdVersion)
	w("temporary module; if that fails, inside metcd's module, then an etcd on `$PATH`, then Debian's `etcd-server`), starts\n")
	w("the clusters in a temporary directory and runs `metcd-bench` against them; the exact command of each workload is\n")
	w("given above with its table (`$ENDPOINTS` is the cluster's client addresses).\n\n")

	if len(res.Notes) > 0 || len(res.Failed) > 0 {
		w("## Notes\n\n")
		for _, n := range res.Notes {
			w("- %s\n", n)
		}
		for _, f := range res.Failed {
			w("- failed: %s\n", mdEscape(f))
		}
		w("\n")
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return mdEscape(s)
}

func membersOf(res *Results) string {
	if res.Compare != nil {
		return strconv.Itoa(res.Compare.Members)
	}
	return "3"
}

func keyBytesOf(res *Results) int {
	if res.Compare != nil && res.Compare.KeyBytes > 0 {
		return res.Compare.KeyBytes
	}
	return 8
}

func valueBytesOf(res *Results) int {
	if res.Compare != nil && res.Compare.ValueBytes > 0 {
		return res.Compare.ValueBytes
	}
	return 256
}

// metcdSystems are the systems of sec other than etcd.
func metcdSystems(systems []string) []string {
	var out []string
	for _, s := range systems {
		if s != kindEtcd {
			out = append(out, s)
		}
	}
	return out
}

func writeCompare(b *strings.Builder, res *Results, sec *CompareSection, etcdLabel string) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## Side by side\n\n")
	rounds := fmt.Sprintf("%d rounds", sec.Rounds)
	if sec.Rounds == 1 {
		rounds = "1 round"
	}
	w("%s of %gs per workload and system", rounds, sec.DurationSeconds)
	if sec.WarmupSeconds > 0 {
		w(", each after a %gs unmeasured warm-up (not for watch)", sec.WarmupSeconds)
	}
	w("; measured%s from %s to %s.", atMetcd(sec.Metcd), sec.Started, orDash(sec.Finished))
	if sec.Interrupted {
		w(" **Interrupted**: some runs are missing.")
	}
	w("\nRatios are metcd ÷ etcd: above 1 metcd serves more requests per second; below 1 its latency is lower.\n\n")

	metcds := metcdSystems(sec.Systems)
	w("| workload | %s |", etcdLabel)
	for _, s := range metcds {
		w(" %s |", res.systemLabel(s))
	}
	w("\n|---|---:|")
	for range metcds {
		w("---:|")
	}
	w("\n")
	for _, wl := range sec.Workloads {
		e := aggregate(sec, wl.Name, kindEtcd)
		unit := " req/s"
		if wl.Events {
			unit = " events/s"
		}
		cell := func(a *agg) string {
			if !a.ok() {
				return "failed"
			}
			return fmt.Sprintf("%s%s, p99 %s ms", rate(a.ReqPerS), unit, num(a.P99, 2))
		}
		w("| %s | %s |", wl.Title, cell(e))
		for _, s := range metcds {
			a := aggregate(sec, wl.Name, s)
			if !a.ok() {
				w(" failed |")
				continue
			}
			w(" %s (%s), p99 %s ms (%s) |", rate(a.ReqPerS)+unit, ratio(a.ReqPerS, e.ReqPerS), num(a.P99, 2), ratio(a.P99, e.P99))
		}
		w("\n")
	}
	w("\n")

	for _, wl := range sec.Workloads {
		w("### %s\n\n", wl.Title)
		w("```sh\n%s\n```\n\n", benchCommand(sec, wl))
		if wl.Events {
			w("Rates are watch events received per second (each put is seen by every watcher of its key); latencies are of\n")
			w("events, from the start of the put to the event's arrival at a watcher.\n\n")
		}
		e := aggregate(sec, wl.Name, kindEtcd)
		w("| system | %s | per round | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | %s ÷ etcd | p99 ÷ etcd | errors | peak RSS MiB |\n", rateUnit(wl), rateUnit(wl))
		w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range sec.Systems {
			a := aggregate(sec, wl.Name, s)
			if !a.ok() {
				w("| %s | failed: %s | | | | | | | | | %d | %s |\n", res.systemLabel(s), mdEscape(strings.Join(a.Failed, "; ")), a.Errors, mib(a.PeakKiB))
				continue
			}
			var rounds []string
			for _, v := range a.Rounds {
				rounds = append(rounds, rate(v))
			}
			rr, pr := ratio(a.ReqPerS, e.ReqPerS), ratio(a.P99, e.P99)
			if s == kindEtcd {
				rr, pr = "1", "1"
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", res.systemLabel(s), rate(a.ReqPerS), strings.Join(rounds, ", "),
				num(a.P50, 2), num(a.P90, 2), num(a.P99, 2), num(a.P999, 2), num(a.Max, 1), rr, pr, a.Errors, mib(a.PeakKiB))
		}
		w("\n")
	}
}

func writeGrowth(b *strings.Builder, res *Results, sec *GrowthSection) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## Cost as the work grows\n\n")
	w("For each key count and system (taking turns), on a fresh cluster: prefill the keys (256-byte values, transactions of\n")
	w("100 puts from 32 clients); put and linearizable range with %d clients for %gs each over those keys; stop a follower\n", sec.Clients, sec.DurationSeconds)
	w("(SIGTERM) and time its restart until it has applied what it had and serves a serializable get of the last key;\n")
	w("then write enough to a pad key that every member snapshots and compacts its log, add a member and time until it has\n")
	w("caught up (from a snapshot: the log it would need is gone) and serves the last key, while a put every 50 ms keeps\n")
	w("the cluster from being idle (etcd %s needs it: a member that caught up by snapshot does not count the snapshot in\n", orDash(res.Etcd.Version))
	w("the applied index it checks its own proposals against, so it cannot publish itself and serve clients until it\n")
	w("applies an entry after the snapshot; in an idle cluster it waits forever; its figure may also include one 7 s\n")
	w("publish timeout, when its first attempt to publish itself is lost while it installs the snapshot). Memory is VmRSS from\n")
	w("`/proc/<pid>/status` of each member (members in id order). Key counts: %s (`--growth-keys`; 10M takes long on a\n", countsLabel(sec.Keys))
	w("small machine). A system that keeps every key in memory is skipped at a key count where its members' RSS, projected\n")
	w("from the smaller counts measured, would not fit in three quarters of the machine's memory. Measured%s from %s to %s.", atMetcd(sec.Metcd), sec.Started, orDash(sec.Finished))
	if sec.Interrupted {
		w(" **Interrupted**: some points are missing.")
	}
	w("\n\n")
	w("| keys | system | prefill s (keys/s) | RSS after prefill, MiB | put req/s (p99 ms) | range req/s (p99 ms) | RSS after the runs, MiB | data dir of a follower |\n")
	w("|---:|---|---:|---|---:|---:|---|---:|\n")
	for _, p := range sec.Points {
		put, rng := "-", "-"
		if p.Put != nil {
			put = fmt.Sprintf("%s (%s)", rate(p.Put.ReqPerSec), num(p.Put.P99Ms, 2))
		}
		if p.Range != nil {
			rng = fmt.Sprintf("%s (%s)", rate(p.Range.ReqPerSec), num(p.Range.P99Ms, 2))
		}
		pre := "-"
		if p.Skipped != "" {
			pre = "skipped (below)"
		}
		if p.PrefillSeconds > 0 {
			pre = fmt.Sprintf("%s (%s)", num(p.PrefillSeconds, 1), rate(float64(p.Keys)/p.PrefillSeconds))
		}
		dd := "-"
		if p.DataDirBytes > 0 {
			dd = bytesLabel(p.DataDirBytes)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", countLabel(p.Keys), res.systemLabel(p.System), pre, memsLabel(p.MemAfterPrefill),
			put, rng, memsLabel(p.MemAfterRuns), dd)
	}
	if len(sec.Commands) > 0 {
		w("\nThe load generator's commands (at %s keys):\n\n```sh\n%s\n```\n", countLabel(sec.Keys[0]), strings.Join(sec.Commands, "\n"))
	}
	w("\n| keys | system | stop s | restart until serving, s | RSS after restart, MiB | new member caught up, s | from a snapshot | new member RSS, MiB | note |\n")
	w("|---:|---|---:|---:|---:|---:|---|---:|---|\n")
	for _, p := range sec.Points {
		cell := func(ok bool, s string) string {
			if !ok {
				return "-"
			}
			return s
		}
		snap := "-"
		if p.CatchupSeconds > 0 {
			snap = map[bool]string{true: "yes", false: "no"}[p.CatchupBySnapshot]
		}
		note := ""
		if p.Error != "" {
			note = "failed: " + mdEscape(firstLine(p.Error))
		}
		if p.Skipped != "" {
			note = "skipped: " + mdEscape(p.Skipped)
		}
		var rr, nr int64
		if p.MemAfterRestart != nil {
			rr = p.MemAfterRestart.RSSKiB
		}
		if p.MemNewMember != nil {
			nr = p.MemNewMember.RSSKiB
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", countLabel(p.Keys), res.systemLabel(p.System),
			cell(p.StopSeconds > 0, num(p.StopSeconds, 2)), cell(p.RestartSeconds > 0, num(p.RestartSeconds, 2)), mib(rr),
			cell(p.CatchupSeconds > 0, num(p.CatchupSeconds, 2)), snap, mib(nr), note)
	}
	w("\n")
}

func countsLabel(ks []int64) string {
	var s []string
	for _, k := range ks {
		s = append(s, countLabel(k))
	}
	return strings.Join(s, ", ")
}

// memsLabel prints the members' RSS in MiB: "120 / 96 / 97".
func memsLabel(ms []procMem) string {
	var s []string
	for _, m := range ms {
		if m.RSSKiB > 0 {
			s = append(s, mib(m.RSSKiB))
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, " / ")
}

func meanRSS(ms []procMem) float64 {
	var sum, n float64
	for _, m := range ms {
		if m.RSSKiB > 0 {
			sum += float64(m.RSSKiB) / 1024
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / n
}

// charts builds the PNG's panels: the ratios over all workloads, each
// workload's rates, then the growth figures.
func (res *Results) charts() []*chart.Bar {
	var out []*chart.Bar
	if sec := res.Compare; sec != nil && len(sec.Workloads) > 0 {
		metcds := metcdSystems(sec.Systems)
		thr := &chart.Bar{Title: "throughput, metcd / etcd (above 1: metcd faster)", YLabel: "x etcd"}
		lat := &chart.Bar{Title: "p99 latency, etcd / metcd (above 1: metcd faster)", YLabel: "x metcd"}
		for _, wl := range sec.Workloads {
			thr.Groups = append(thr.Groups, wl.Name)
			lat.Groups = append(lat.Groups, wl.Name)
		}
		for _, s := range metcds {
			ts, ls := chart.Series{Name: res.systemLabel(s)}, chart.Series{Name: res.systemLabel(s)}
			for _, wl := range sec.Workloads {
				e, a := aggregate(sec, wl.Name, kindEtcd), aggregate(sec, wl.Name, s)
				tv, lv := math.NaN(), math.NaN()
				if e.ok() && a.ok() && e.ReqPerS > 0 && a.P99 > 0 {
					tv, lv = a.ReqPerS/e.ReqPerS, e.P99/a.P99
				}
				ts.Values = append(ts.Values, tv)
				ls.Values = append(ls.Values, lv)
			}
			thr.Series = append(thr.Series, ts)
			lat.Series = append(lat.Series, ls)
		}
		out = append(out, thr, lat)
		for _, wl := range sec.Workloads {
			c := &chart.Bar{Title: wl.Title, YLabel: rateUnit(wl), Groups: []string{rateUnit(wl)}}
			for _, s := range sec.Systems {
				a := aggregate(sec, wl.Name, s)
				v := math.NaN()
				if a.ok() {
					v = a.ReqPerS
				}
				c.Series = append(c.Series, chart.Series{Name: res.systemLabel(s), Values: []float64{v}})
			}
			out = append(out, c)
		}
	}
	if sec := res.Growth; sec != nil && len(sec.Points) > 0 {
		type metric struct {
			title, unit string
			f           func(p *GrowthPoint) float64
		}
		metrics := []metric{
			{"memory per member after the prefill (mean VmRSS)", "MiB", func(p *GrowthPoint) float64 { return meanRSS(p.MemAfterPrefill) }},
			{fmt.Sprintf("put, %d clients, by key count", sec.Clients), "req/s", func(p *GrowthPoint) float64 {
				if p.Put == nil {
					return math.NaN()
				}
				return p.Put.ReqPerSec
			}},
			{fmt.Sprintf("linearizable range, %d clients, by key count", sec.Clients), "req/s", func(p *GrowthPoint) float64 {
				if p.Range == nil {
					return math.NaN()
				}
				return p.Range.ReqPerSec
			}},
			{"restart of a follower until it serves", "seconds", func(p *GrowthPoint) float64 { return nanIfZero(p.RestartSeconds) }},
			{"new member caught up (by snapshot)", "seconds", func(p *GrowthPoint) float64 { return nanIfZero(p.CatchupSeconds) }},
			{"prefill rate (transactions of 100 puts)", "keys/s", func(p *GrowthPoint) float64 {
				if p.PrefillSeconds <= 0 {
					return math.NaN()
				}
				return float64(p.Keys) / p.PrefillSeconds
			}},
		}
		for _, m := range metrics {
			c := &chart.Bar{Title: m.title, YLabel: m.unit}
			for _, k := range sec.Keys {
				c.Groups = append(c.Groups, countLabel(k)+" keys")
			}
			for _, s := range sec.Systems {
				ser := chart.Series{Name: res.systemLabel(s)}
				for _, k := range sec.Keys {
					v := math.NaN()
					for i := range sec.Points {
						if p := &sec.Points[i]; p.System == s && p.Keys == k {
							v = m.f(p)
						}
					}
					ser.Values = append(ser.Values, v)
				}
				c.Series = append(c.Series, ser)
			}
			out = append(out, c)
		}
	}
	return out
}

func nanIfZero(v float64) float64 {
	if v <= 0 {
		return math.NaN()
	}
	return v
}

// Panel size and layout of the PNG.
const (
	panelW    = 660
	panelH    = 340
	panelCols = 2
)

func writePNGFile(path string, res *Results) error {
	charts := res.charts()
	if len(charts) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if err := chart.Grid(charts, panelCols, tmp, panelW, panelH); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	os.Chmod(tmp.Name(), 0o644)
	return os.Rename(tmp.Name(), path)
}
