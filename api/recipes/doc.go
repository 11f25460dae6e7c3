// Package recipes serves etcd's Lock and Election gRPC services
// (v3lockpb.Lock, v3electionpb.Election): distributed locks and leader
// elections kept in the key space as keys under a name, attached to the
// caller's lease. They are built with clientv3's concurrency package, on a
// client of the member's own gRPC API, as etcd builds them, so their keys
// interoperate with clients that run the same recipes themselves (etcdctl
// lock, etcdctl elect, concurrency.Mutex, concurrency.Election).
//
// The package holds no state of its own: a lock or a leadership is a key
// and a lease, so it survives a restart of the member that granted it and
// can be released through any member.
package recipes
