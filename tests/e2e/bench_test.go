package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const benchConcurrency = 64

// BenchmarkCluster starts a three-member cluster and measures PUT and
// linearizable GET against the leader, sequentially and from 64 concurrent
// clients. Each sub-benchmark reports req/s and the p50 and p99 latency in
// milliseconds.
func BenchmarkCluster(b *testing.B) {
	c := NewCluster(b, Options{Size: 3})
	tr := newTransport(2 * benchConcurrency)
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	leader := c.WaitLeader(10 * time.Second)
	base := c.Members[leader].ClientURL
	value := bytes.Repeat([]byte("v"), 256)

	do := func(method, url string, body []byte, want int) error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			return fmt.Errorf("%s %s: status %d, want %d", method, url, res.StatusCode, want)
		}
		return nil
	}

	const nKeys = 1000
	for k := range nKeys {
		if err := do(http.MethodPut, fmt.Sprintf("%s/bench/get/%04d", base, k), value, http.StatusNoContent); err != nil {
			b.Fatalf("preloading: %v", err)
		}
	}

	var putSeq atomic.Int64
	putOp := func(int) error {
		n := putSeq.Add(1)
		return do(http.MethodPut, fmt.Sprintf("%s/bench/put/%08d", base, n), value, http.StatusNoContent)
	}
	getOp := func(n int) error {
		return do(http.MethodGet, fmt.Sprintf("%s/bench/get/%04d", base, n%nKeys), nil, http.StatusOK)
	}

	b.Run("put-sequential", func(b *testing.B) { runBench(b, 1, putOp) })
	b.Run("put-concurrent-64", func(b *testing.B) { runBench(b, benchConcurrency, putOp) })
	b.Run("get-sequential", func(b *testing.B) { runBench(b, 1, getOp) })
	b.Run("get-concurrent-64", func(b *testing.B) { runBench(b, benchConcurrency, getOp) })
}

// runBench runs b.N operations spread over workers goroutines, records each
// operation's latency and reports req/s, p50-ms and p99-ms.
func runBench(b *testing.B, workers int, op func(n int) error) {
	if workers > b.N {
		workers = b.N
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(n); err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(b.N)) // stop everybody
					return
				}
				lat[n] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(float64(len(lat)-1) * p)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
