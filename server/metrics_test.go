package server

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// scrape gathers s's collector through a pedantic registry, which also
// checks that what it collects matches what it describes.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather member %d: %v", s.ID(), err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the family's only metric (a gauge or a counter).
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil || len(mf.GetMetric()) != 1 {
		t.Fatalf("%s: want one metric, got %v", name, mf)
	}
	m := mf.GetMetric()[0]
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}

func label(t *testing.T, mfs map[string]*dto.MetricFamily, name, key string) string {
	t.Helper()
	for _, l := range mfs[name].GetMetric()[0].GetLabel() {
		if l.GetName() == key {
			return l.GetValue()
		}
	}
	t.Fatalf("%s has no label %s", name, key)
	return ""
}

// TestCollectorReportsMemberState checks the etcd-named metrics against
// what the members did: one leader seen by all, the keys written, the
// engine's size and commits, and a proposal that failed for want of a
// quorum, after which the member reports no leader.
func TestCollectorReportsMemberState(t *testing.T) {
	c := newTestCluster(t, 3)
	_, followers := c.leaderAndFollowers()
	const keys = 5
	for i := 0; i < keys; i++ {
		putRetry(t, followers[0], fmt.Sprintf("k%d", i))
	}

	leaders := 0
	var rev float64
	for _, s := range c.members {
		var m map[string]*dto.MetricFamily
		deadline := time.Now().Add(10 * time.Second)
		for {
			m = scrape(t, s)
			if value(t, m, "etcd_debugging_mvcc_keys_total") == keys || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		id := s.ID()
		if got := value(t, m, "etcd_debugging_mvcc_keys_total"); got != keys {
			t.Errorf("member %d: keys_total %v, want %d", id, got, keys)
		}
		if got := value(t, m, "etcd_server_has_leader"); got != 1 {
			t.Errorf("member %d: has_leader %v", id, got)
		}
		if value(t, m, "etcd_server_is_leader") == 1 {
			leaders++
		}
		if got := value(t, m, "etcd_server_is_learner"); got != 0 {
			t.Errorf("member %d: is_learner %v", id, got)
		}
		if got := value(t, m, "etcd_server_leader_changes_seen_total"); got < 1 {
			t.Errorf("member %d: leader_changes_seen_total %v, want at least 1", id, got)
		}
		applied := value(t, m, "etcd_server_proposals_applied_total")
		if committed := value(t, m, "etcd_server_proposals_committed_total"); applied < keys || committed < keys {
			t.Errorf("member %d: committed %v, applied %v; want at least %d", id, committed, applied, keys)
		}
		r := value(t, m, "etcd_debugging_mvcc_current_revision")
		if r < keys+1 || rev != 0 && r != rev {
			t.Errorf("member %d: current_revision %v (another member: %v), want at least %d and the same on all", id, r, rev, keys+1)
		}
		rev = r
		if got := value(t, m, "etcd_debugging_mvcc_compact_revision"); got != -1 {
			t.Errorf("member %d: compact_revision %v, want -1 (none yet, as etcd)", id, got)
		}
		if got := value(t, m, "etcd_mvcc_db_total_size_in_bytes"); got <= 0 {
			t.Errorf("member %d: db_total_size_in_bytes %v", id, got)
		}
		if got := value(t, m, "etcd_server_quota_backend_bytes"); got != float64(defaultQuotaBytes) {
			t.Errorf("member %d: quota_backend_bytes %v, want %d", id, got, defaultQuotaBytes)
		}
		if got := m["etcd_disk_backend_commit_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); got == 0 {
			t.Errorf("member %d: no engine commit timed", id)
		}
		if got := label(t, m, "etcd_server_id", "server_id"); got != strconv.FormatUint(id, 16) {
			t.Errorf("member %d: server_id %q", id, got)
		}
		if got := label(t, m, "etcd_server_version", "server_version"); got != Version {
			t.Errorf("member %d: server_version %q", id, got)
		}
		if got := label(t, m, "etcd_cluster_version", "cluster_version"); got != "3.7" {
			t.Errorf("member %d: cluster_version %q, want 3.7", id, got)
		}
	}
	if leaders != 1 {
		t.Errorf("%d members report is_leader 1, want 1", leaders)
	}

	// Without a quorum a write fails: a failed proposal, none pending
	// once it has, and no leader.
	s := followers[0]
	before := value(t, scrape(t, s), "etcd_server_proposals_failed_total")
	for i := range c.members {
		if c.members[i] != s {
			c.stop(i)
		}
	}
	if err := putKey(s, ctx(t), []byte("lost"), []byte("v")); !errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrLeaderLost) && !errors.Is(err, ErrTimeout) {
		t.Fatalf("put without a quorum: %v", err)
	}
	m := scrape(t, s)
	if got := value(t, m, "etcd_server_proposals_failed_total"); got != before+1 {
		t.Errorf("proposals_failed_total %v after a failed put, want %v", got, before+1)
	}
	if got := value(t, m, "etcd_server_proposals_pending"); got != 0 {
		t.Errorf("proposals_pending %v once the put has failed", got)
	}
	if got := value(t, m, "etcd_server_has_leader"); got != 0 {
		t.Errorf("has_leader %v alone in a cluster of 3", got)
	}
}
