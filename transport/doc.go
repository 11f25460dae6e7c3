// Package transport carries raft traffic between metcd members over HTTP:
// etcd's rafthttp (long-lived streams for heartbeats and appends, a pipeline
// for bulk sends, and a separate streamed path for snapshots), served on
// the member's peer URL, plus a small endpoint that tells a joining member
// which cluster it is joining.
package transport
