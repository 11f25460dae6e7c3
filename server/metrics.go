package server

import (
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
)

// serverMetrics are what the member counts for Collector; everything else
// Collector reports is read from the member's state when scraped.
type serverMetrics struct {
	proposalsPending atomic.Int64
	proposalsFailed  atomic.Uint64
	// commitDuration times the engine commit of each applied batch (etcd
	// times its backend's commit). It holds no fsync: the WAL makes an
	// entry durable, and the engine is synced only before a snapshot.
	commitDuration prometheus.Histogram
}

func newServerMetrics() serverMetrics {
	return serverMetrics{
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "etcd_disk_backend_commit_duration_seconds",
			Help: "The latency distributions of the engine commit of each applied batch.",
			// etcd's buckets: 1 ms to 8 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
}

// Collector reports the member's state under etcd's metric names, so that
// dashboards and alerts written for etcd (has_leader, leader changes,
// failed proposals, database size against the quota, commit latency) read
// metcd the same way. Each member has its own: several may run in one
// process.
func (s *Server) Collector() prometheus.Collector { return &collector{s: s} }

type collector struct{ s *Server }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descHasLeader     = desc("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")
	descIsLeader      = desc("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")
	descIsLearner     = desc("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")
	descLeaderChanges = desc("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")
	descCommitted     = desc("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")
	descApplied       = desc("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")
	descPending       = desc("etcd_server_proposals_pending", "The current number of pending proposals to commit.")
	descFailed        = desc("etcd_server_proposals_failed_total", "The total number of failed proposals seen.")
	descQuota         = desc("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")
	descServerID      = desc("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", "server_id")
	descVersion       = desc("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", "server_version")
	descGoVersion     = desc("etcd_server_go_version", "Which Go version server is running with. 1 for 'server_go_version' label with current version.", "server_go_version")
	descClusterVer    = desc("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", "cluster_version")
	descDBSize        = desc("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")
	descDBInUse       = desc("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")
	descKeys          = desc("etcd_debugging_mvcc_keys_total", "Total number of keys.")
	descRevision      = desc("etcd_debugging_mvcc_current_revision", "The current revision of store.")
	descCompactRev    = desc("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descHasLeader, descIsLeader, descIsLearner, descLeaderChanges,
		descCommitted, descApplied, descPending, descFailed, descQuota,
		descServerID, descVersion, descGoVersion, descClusterVer,
		descDBSize, descDBInUse, descKeys, descRevision, descCompactRev,
	} {
		ch <- d
	}
	c.s.metrics.commitDuration.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descHasLeader, flag(s.node.Leader() != raft.None))
	gauge(descIsLeader, flag(s.node.Role() == raft.StateLeader))
	gauge(descIsLearner, flag(s.IsLearner()))
	counter(descLeaderChanges, float64(s.node.LeaderChanges()))
	gauge(descCommitted, float64(s.node.Status().GetCommit()))
	gauge(descApplied, float64(s.store.Applied()))
	gauge(descPending, float64(s.metrics.proposalsPending.Load()))
	counter(descFailed, float64(s.metrics.proposalsFailed.Load()))
	gauge(descQuota, float64(s.quota())) // negative when disabled, as etcd reports it
	gauge(descServerID, 1, strconv.FormatUint(s.id, 16))
	gauge(descVersion, 1, Version)
	gauge(descGoVersion, 1, runtime.Version())
	gauge(descClusterVer, 1, clusterVersion())
	gauge(descDBSize, float64(s.engineSize()))
	gauge(descDBInUse, float64(s.engineInUse()))
	if keys, err := s.keyCount(); err == nil {
		gauge(descKeys, float64(keys))
	}
	gauge(descRevision, float64(s.mv.CommittedRev()))
	gauge(descCompactRev, float64(s.mv.CompactRev()))
	s.metrics.commitDuration.Collect(ch)
}

// clusterVersion is ClusterVersion's major.minor, as etcd labels it.
func clusterVersion() string {
	major, rest, _ := strings.Cut(ClusterVersion, ".")
	minor, _, _ := strings.Cut(rest, ".")
	return major + "." + minor
}
