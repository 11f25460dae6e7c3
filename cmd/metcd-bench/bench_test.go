package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketIndexRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 2, 127, 128, 255, 256, 257, 511, 512, 1000, 1 << 20, 123456789, 1<<40 + 17, math.MaxInt64} {
		i := bucketIndex(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketIndex(%d) = %d, outside [0, %d)", v, i, numBuckets)
		}
		if i < prev {
			t.Fatalf("bucketIndex(%d) = %d < previous %d: not monotonic", v, i, prev)
		}
		prev = i
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d whose range is [%d, %d]", v, i, lo, hi)
		}
		if v >= 256 && float64(hi-lo+1)/float64(lo) > 1.0/128 {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/128 of its values", i, lo, hi)
		}
	}
	// Consecutive buckets tile the values with no gap.
	for i := 1; i < numBuckets; i++ {
		_, hi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != hi+1 {
			t.Fatalf("gap between bucket %d (up to %d) and %d (from %d)", i-1, hi, i, lo)
		}
	}
}

// exactQuantile is the nearest-rank quantile of sorted samples.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func TestHistogramQuantiles(t *testing.T) {
	// 1..1000 microseconds, once each: quantiles are known exactly.
	h := newHistogram()
	for i := 1000; i >= 1; i-- {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	if h.Count() != 1000 || h.Min() != time.Microsecond || h.Max() != time.Millisecond {
		t.Fatalf("count %d min %v max %v", h.Count(), h.Min(), h.Max())
	}
	if got, want := h.Mean(), 500500*time.Nanosecond; got != want {
		t.Fatalf("mean %v, want %v", got, want)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, time.Millisecond}, {0, time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got-c.want) > float64(c.want)/128 {
			t.Errorf("Quantile(%v) = %v, want %v (or up to 1/128 above)", c.q, got, c.want)
		}
	}

	// Small values are exact.
	small := newHistogram()
	for _, v := range []time.Duration{3, 1, 2, 5, 4} {
		small.Record(v)
	}
	if got := small.Quantile(0.5); got != 3 {
		t.Errorf("median of 1..5ns = %v, want 3ns", got)
	}
	if got := newHistogram().Quantile(0.99); got != 0 {
		t.Errorf("empty histogram quantile = %v, want 0", got)
	}
}

func TestHistogramMatchesSortedSamples(t *testing.T) {
	// Log-normal latencies around 2ms with a long tail, split over several
	// histograms that are merged, against the exact sorted-sample answer.
	r := rand.New(rand.NewPCG(1, 2))
	var samples []time.Duration
	parts := []*histogram{newHistogram(), newHistogram(), newHistogram()}
	for i := 0; i < 200000; i++ {
		d := time.Duration(math.Exp(r.NormFloat64()*0.8) * 2e6)
		samples = append(samples, d)
		parts[i%len(parts)].Record(d)
	}
	h := newHistogram()
	for _, p := range parts {
		h.Merge(p)
	}
	h.Merge(newHistogram()) // merging an empty one changes nothing
	slices.Sort(samples)
	if h.Count() != uint64(len(samples)) || h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
		t.Fatalf("count/min/max %d/%v/%v, want %d/%v/%v", h.Count(), h.Min(), h.Max(), len(samples), samples[0], samples[len(samples)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 0.9999} {
		want := exactQuantile(samples, q)
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/128 {
			t.Errorf("Quantile(%v) = %v, exact %v: off by more than 1/128", q, got, want)
		}
	}
}

func TestMakeKey(t *testing.T) {
	if got := string(makeKey(nil, "bench/", 6, 42)); got != "bench/000042" {
		t.Errorf("makeKey = %q", got)
	}
	if got := string(makeKey(nil, "", 2, 123)); got != "123" {
		t.Errorf("makeKey wider than size = %q", got)
	}
	if d := keyspaceDigits(1000); d != 3 {
		t.Errorf("keyspaceDigits(1000) = %d, want 3", d)
	}
	if d := keyspaceDigits(1001); d != 4 {
		t.Errorf("keyspaceDigits(1001) = %d, want 4", d)
	}
}

// fakeServer implements metcd's key API in memory, optionally failing every
// failEvery-th request with 503.
type fakeServer struct {
	mu        sync.Mutex
	kv        map[string]string
	puts      atomic.Int64
	gets      atomic.Int64
	serial    atomic.Int64 // gets with ?consistency=serializable
	reqs      atomic.Int64
	failEvery int64
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/")
	if f.failEvery > 0 && f.reqs.Add(1)%f.failEvery == 0 {
		http.Error(w, "no leader", http.StatusServiceUnavailable)
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.kv[key] = string(body)
		f.mu.Unlock()
		f.puts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		f.gets.Add(1)
		if r.URL.Query().Get("consistency") == "serializable" {
			f.serial.Add(1)
		}
		f.mu.Lock()
		v, ok := f.kv[key]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "key not found", http.StatusNotFound)
			return
		}
		io.WriteString(w, v)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func runJSON(t *testing.T, args ...string) (report, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(append(args, "--json"), &out, &errOut, false, make(chan struct{}))
	var r report
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
			t.Fatalf("bad JSON report %q: %v", out.String(), jerr)
		}
	}
	t.Logf("stderr: %s", errOut.String())
	return r, err
}

func TestRunAgainstHTTPServer(t *testing.T) {
	f := &fakeServer{kv: map[string]string{}}
	s1, s2 := httptest.NewServer(f), httptest.NewServer(f)
	defer s1.Close()
	defer s2.Close()
	eps := s1.URL + "," + s2.URL

	// Puts: exactly --total requests, keys within the key space.
	r, err := runJSON(t, "--protocol", "http", "--endpoints", eps, "--workload", "put", "--clients", "8", "--total", "500",
		"--key-space", "100", "--key-prefix", "k/", "--key-size", "4", "--val-size", "256")
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 500 || r.OK != 500 || r.Errors != 0 || f.puts.Load() != 500 {
		t.Fatalf("put run: requests %d ok %d errors %d, server saw %d puts; want 500 each", r.Requests, r.OK, r.Errors, f.puts.Load())
	}
	if r.Ops["put"].LatencyMs.P99 <= 0 || r.LatencyMs.Max < r.LatencyMs.P50 || r.RequestsPerSecond <= 0 {
		t.Fatalf("implausible figures: %+v", r)
	}
	f.mu.Lock()
	for k, v := range f.kv {
		if !strings.HasPrefix(k, "k/") || len(k) != 6 || len(v) != 256 {
			t.Fatalf("unexpected key %q or value of %d bytes", k, len(v))
		}
	}
	if len(f.kv) > 100 {
		t.Fatalf("%d keys written, key space is 100", len(f.kv))
	}
	f.mu.Unlock()

	// Gets after a prefill find every key; serializable is passed on.
	f.mu.Lock()
	f.kv = map[string]string{}
	f.mu.Unlock()
	f.puts.Store(0)
	r, err = runJSON(t, "--protocol", "http", "--endpoints", eps, "--workload", "get", "--prefill", "--clients", "4", "--total", "300",
		"--key-space", "50", "--consistency", "serializable")
	if err != nil {
		t.Fatal(err)
	}
	if f.puts.Load() != 50 || r.Requests != 300 || r.OK != 300 || r.GetMisses != 0 || f.serial.Load() != 300 {
		t.Fatalf("get run: prefill puts %d, requests %d ok %d misses %d serializable %d", f.puts.Load(), r.Requests, r.OK, r.GetMisses, f.serial.Load())
	}
	if _, ok := r.Ops["put"]; ok {
		t.Fatalf("the prefill was measured: %+v", r.Ops)
	}

	// Mixed, bounded by --duration, with sequential keys.
	start := time.Now()
	r, err = runJSON(t, "--target", "http", "--endpoints", eps, "--workload", "mixed", "--read-ratio", "0.75", "--clients", "4",
		"--duration", "300ms", "--sequential-keys")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a 300ms run took %v", d)
	}
	gets, puts := r.Ops["range"].Requests, r.Ops["put"].Requests
	if r.Requests == 0 || gets+puts != r.Requests || gets < puts {
		t.Fatalf("mixed run: %d requests, %d gets, %d puts", r.Requests, gets, puts)
	}
}

func TestRunCountsErrors(t *testing.T) {
	f := &fakeServer{kv: map[string]string{}, failEvery: 4}
	s := httptest.NewServer(f)
	defer s.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connections to it are refused

	r, err := runJSON(t, "--protocol", "http", "--endpoints", s.URL+","+deadURL, "--clients", "2", "--total", "200", "--timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int64{}
	for _, e := range r.ErrorsByKind {
		kinds[e.Kind] = e.Count
		if e.Sample == "" {
			t.Errorf("no sample message for %s", e.Kind)
		}
	}
	if r.Requests != 200 || kinds["http 503"] == 0 || kinds["connection refused"] == 0 ||
		r.Errors != kinds["http 503"]+kinds["connection refused"] || r.OK != r.Requests-r.Errors {
		t.Fatalf("requests %d ok %d errors %d by kind %v", r.Requests, r.OK, r.Errors, kinds)
	}

	// Nothing succeeds: the run reports, then fails.
	r, err = runJSON(t, "--protocol", "http", "--endpoints", deadURL, "--total", "5")
	if err == nil || r.Requests != 5 || r.OK != 0 {
		t.Fatalf("all-failing run: err %v, requests %d ok %d", err, r.Requests, r.OK)
	}
}

func TestFlagValidation(t *testing.T) {
	for _, args := range [][]string{
		{"--workload", "scan"},
		{"--read-ratio", "1.5"},
		{"--consistency", "eventual"},
		{"--total", "0"},
		{"--key-space", "1000", "--key-size", "2"},
		{"--clients", "0"},
		{"--endpoints", ""},
		{"--protocol", "quic"},
		{"--target", "http", "--protocol", "grpc"},
		{"--protocol", "http", "--workload", "txn"},
		{"--protocol", "http", "--workload", "watch"},
		{"--protocol", "http", "--target-leader"},
		{"--workload", "watch", "--val-size", "4"},
		{"--workload", "watch", "--watchers", "0"},
		{"--txn-compare", "version"},
		{"--rate", "-1"},
		{"--prefill-batch", "0"},
	} {
		if _, err := parseFlags(args, io.Discard); err != errUsage {
			t.Errorf("parseFlags(%q) = %v, want a usage error", args, err)
		}
	}
	o, err := parseFlags([]string{"--duration", "1s"}, io.Discard)
	if err != nil || o.cfg.Total != 0 || o.cfg.Duration != time.Second {
		t.Errorf("--duration alone: %+v, %v; want no --total limit", o, err)
	}
	o, err = parseFlags([]string{"--workload", "get", "--consistency", "s"}, io.Discard)
	if err != nil || o.cfg.Protocol != "grpc" || o.cfg.Workload != "range" || !o.cfg.Serializable || o.consistency != "serializable" ||
		!slices.Equal(o.endpoints, []string{"127.0.0.1:12380", "127.0.0.1:22380", "127.0.0.1:32380"}) {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--protocol", "http", "--endpoints", "127.0.0.1:1,https://h:2"}, io.Discard)
	if err != nil || !slices.Equal(o.endpoints, []string{"http://127.0.0.1:1", "https://h:2"}) {
		t.Errorf("http endpoints: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--prefill-only", "--total", "0"}, io.Discard)
	if err != nil || !o.cfg.Prefill {
		t.Errorf("--prefill-only: %+v, %v", o, err)
	}
	t.Setenv("METCD_BENCH_PROTOCOL", "http")
	if o, err := parseFlags(nil, io.Discard); err != nil || o.cfg.Protocol != "http" || o.endpoints[0] != "http://127.0.0.1:12380" {
		t.Errorf("METCD_BENCH_PROTOCOL=http: %+v, %v", o, err)
	}
}

func TestProgressBar(t *testing.T) {
	var p progress
	p.done.Store(50)
	var buf syncBuffer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		showProgress(&buf, &p, "put", 100, 0, 5*time.Millisecond, stop)
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	<-done
	out := buf.String()
	if !strings.Contains(out, "put [============>           ]  50%") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q", out)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a later reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
