// Package gateway serves etcd's JSON gateway on the client port: the
// /v3/ paths (POST /v3/kv/put, /v3/kv/range, /v3/watch, /v3/lease/grant,
// /v3/lock/lock, /v3/election/campaign, ...) with the JSON bodies etcd's
// grpc-gateway accepts, translated to calls of the member's own gRPC API.
// As in etcd, a websocket upgrade of a path is served as a stream of that
// path, one JSON object per message. It holds no state of its own.
package gateway
