// Package httpapi is metcd's curl-friendly HTTP API on the client port:
// keys as URL paths (PUT, GET, DELETE), membership in the style of etcd's
// raftexample (POST /<id>), and the /admin, /health, /metrics and /version
// endpoints. It declares the small interface it needs from the server.
package httpapi
