package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// metricSample is one line of the Prometheus text format: the name with
// its labels as printed, and the value.
type metricSample struct {
	series string
	value  float64
}

// scrapeMetrics reads member i's /metrics.
func (c *Cluster) scrapeMetrics(i int) []metricSample {
	c.t.Helper()
	r, err := c.Do(i, http.MethodGet, "/metrics", nil)
	if err != nil || r.Code != http.StatusOK {
		c.t.Fatalf("GET /metrics on member %d: %v %v", i, r, err)
	}
	var out []metricSample
	for _, line := range strings.Split(r.Body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if sp < 0 || err != nil {
			c.t.Fatalf("member %d: bad metrics line %q", i, line)
		}
		out = append(out, metricSample{line[:sp], v})
	}
	return out
}

// metricValue sums the samples of name whose labels contain every one of
// labels (each as printed, e.g. `grpc_method="Put"`); found is false when
// there is none.
func metricValue(ms []metricSample, name string, labels ...string) (v float64, found bool) {
	for _, m := range ms {
		n, rest, _ := strings.Cut(m.series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			v, found = v+m.value, true
		}
	}
	return v, found
}

// TestMetrics: /metrics reports under etcd's names what the members did,
// for dashboards and alerts written for etcd: a leader seen by all, the
// keys and database size, gRPC request counts, WAL fsyncs and peer
// traffic; and it leaves out the etcd families that metcd's imports
// register but metcd does not drive, rather than report zeros. /version
// answers etcd's fields.
func TestMetrics(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	cli := newV3ClientCfg(t, clientv3.Config{Endpoints: c.V3Endpoints(0)})
	const puts = 7
	for i := 0; i < puts; i++ {
		mustV3Put(t, cli, fmt.Sprintf("m/%d", i), "v")
	}

	leaders := 0
	for i := range c.Members {
		var ms []metricSample
		c.Eventually(10*time.Second, fmt.Sprintf("member %d reports %d keys", i, puts), func() error {
			ms = c.scrapeMetrics(i)
			if v, _ := metricValue(ms, "etcd_debugging_mvcc_keys_total"); v != puts {
				return fmt.Errorf("etcd_debugging_mvcc_keys_total %v", v)
			}
			return nil
		})
		want := func(name string, ok func(float64) bool, labels ...string) {
			t.Helper()
			v, found := metricValue(ms, name, labels...)
			if !found || !ok(v) {
				t.Errorf("member %d: %s%v = %v (found %v)", i, name, labels, v, found)
			}
		}
		positive := func(v float64) bool { return v > 0 }
		want("etcd_server_has_leader", func(v float64) bool { return v == 1 })
		if v, _ := metricValue(ms, "etcd_server_is_leader"); v == 1 {
			leaders++
		}
		want("etcd_server_leader_changes_seen_total", func(v float64) bool { return v >= 1 })
		want("etcd_server_proposals_applied_total", func(v float64) bool { return v >= puts })
		want("etcd_mvcc_db_total_size_in_bytes", positive)
		want("etcd_server_quota_backend_bytes", func(v float64) bool { return v == 2<<30 })
		want("etcd_disk_backend_commit_duration_seconds_count", positive)
		want("etcd_disk_wal_fsync_duration_seconds_count", positive)
		want("etcd_network_peer_sent_bytes_total", positive)
		want("etcd_server_version", func(v float64) bool { return v == 1 }, `server_version="3.7.3"`)
		want("go_goroutines", positive)
		want("process_resident_memory_bytes", positive)
		// Every gRPC method is listed, at zero until called, as etcd's.
		want("grpc_server_handled_total", func(v float64) bool { return v == 0 }, `grpc_method="Compact"`, `grpc_code="OK"`)
		if i == 0 {
			want("grpc_server_handled_total", func(v float64) bool { return v == puts },
				`grpc_method="Put"`, `grpc_service="etcdserverpb.KV"`, `grpc_code="OK"`)
			// Each put carries its key and value at least.
			want("etcd_network_client_grpc_received_bytes_total", func(v float64) bool { return v >= float64(puts*len("m/0v")) })
			want("etcd_network_client_grpc_sent_bytes_total", positive)
		}
		for _, absent := range []string{"etcd_mvcc_put_total", "etcd_debugging_lease_granted_total", "etcd_disk_backend_defrag_duration_seconds_count",
			"grpc_server_handling_seconds_count"} { // only with --metrics=extensive, as etcd
			if _, found := metricValue(ms, absent); found {
				t.Errorf("member %d serves %s, which metcd does not drive", i, absent)
			}
		}
	}
	if leaders != 1 {
		t.Errorf("%d members report etcd_server_is_leader 1", leaders)
	}

	r, err := c.Do(0, http.MethodGet, "/version", nil)
	var v map[string]string
	if err != nil || r.Code != http.StatusOK || json.Unmarshal([]byte(r.Body), &v) != nil {
		t.Fatalf("GET /version: %v %v", r, err)
	}
	if v["etcdserver"] != "3.7.3" || v["etcdcluster"] != "3.7.0" || v["storage"] != "3.7.0" || v["metcd"] == "" {
		t.Errorf("/version = %v, want etcd 3.7.3's fields and metcd's", v)
	}
}

// TestMetricsExtensive: --metrics=extensive adds gRPC's latency histogram,
// as etcd's flag does, which etcd's slow-gRPC alert reads.
func TestMetricsExtensive(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 1, Extra: []string{"--metrics", "extensive"}})
	cli := newV3ClientCfg(t, clientv3.Config{Endpoints: c.V3Endpoints(0)})
	mustV3Put(t, cli, "m", "v")
	ms := c.scrapeMetrics(0)
	if v, found := metricValue(ms, "grpc_server_handling_seconds_count", `grpc_method="Put"`); !found || v != 1 {
		t.Errorf("grpc_server_handling_seconds_count{grpc_method=\"Put\"} = %v (found %v), want 1", v, found)
	}
	if v, found := metricValue(ms, "grpc_server_handling_seconds_bucket", `grpc_method="Put"`, `le="+Inf"`); !found || v != 1 {
		t.Errorf("grpc_server_handling_seconds_bucket{grpc_method=\"Put\",le=\"+Inf\"} = %v (found %v), want 1", v, found)
	}
}
