// Package metrics assembles what a member serves at /metrics.
//
// A member reports under etcd's metric names, so that dashboards and
// alerts written for etcd work unchanged. Three sources feed it:
//
//   - the member's own collectors, each registered in a Registry that
//     belongs to that member (server.Collector, gRPC's server metrics, Go's
//     and the process's);
//   - the families that etcd's libraries which metcd runs keep in
//     Prometheus's default registry: the WAL (etcd_disk_wal_*), snapshot
//     files (etcd_snap_*, etcd_debugging_snap_save_*) and rafthttp
//     (etcd_network_*);
//   - nothing else. Importing etcd's server module registers dozens of
//     other etcd families in the default registry (its MVCC store, bbolt
//     backend, lease and auth packages). metcd does not run that code, so
//     they would stay at zero: a database size of 0, a key count of 0.
//     Gatherer leaves them out rather than report numbers that are wrong.
package metrics
