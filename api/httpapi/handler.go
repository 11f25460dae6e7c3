package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backend is what the API needs from a member.
type Backend interface {
	// PutKey, DeleteKey and GetKey return the revision of the write or
	// of the read's view, which responses carry in RevisionHeader.
	PutKey(ctx context.Context, key, value []byte) (int64, error)
	DeleteKey(ctx context.Context, key []byte) (int64, error)
	GetKey(ctx context.Context, key []byte, linearizable bool) ([]byte, int64, error)
	AddMember(ctx context.Context, id uint64, peerURL string) error
	RemoveMember(ctx context.Context, id uint64) error
	Members() []server.Member
	MemberStatus() server.Status
	// ReadCheck answers whether the member can serve a read (linearizable:
	// after a ReadIndex round), for the health checks.
	ReadCheck(ctx context.Context, linearizable bool) error
}

// RevisionHeader carries the MVCC revision of a key response: the
// revision a write created, or the one a read saw.
const RevisionHeader = "X-Metcd-Revision"

func setRevision(w http.ResponseWriter, rev int64) {
	if rev > 0 {
		w.Header().Set(RevisionHeader, strconv.FormatInt(rev, 10))
	}
}

// MaxKeyBytes is the longest key the API accepts.
const MaxKeyBytes = kvstore.MaxKeyBytes

// Reserved first path segments: a key cannot start with one of these
// followed by '/' or end of path, since those paths are endpoints.
var Reserved = []string{"admin", "v3", "metrics", "health", "livez", "readyz", "debug", "version"}

// Options tune the handler.
type Options struct {
	// MaxRequestBytes bounds a request body (a value, a peer URL).
	MaxRequestBytes int64
	// EnablePprof serves /debug/pprof/.
	EnablePprof bool
	// Version is metcd's build version, reported on /version beside the
	// etcd versions metcd answers as.
	Version string
	// Metrics is what /metrics serves; nil serves Prometheus's default
	// registry.
	Metrics prometheus.Gatherer
	// V3 serves the /v3/ paths (etcd's JSON gateway); nil answers them 404.
	V3 http.Handler
}

// Handler serves the API.
type Handler struct {
	b    Backend
	opts Options
	mux  *http.ServeMux // for the fixed endpoints, not keys
}

// NewHandler returns the API handler for b.
func NewHandler(b Backend, opts Options) *Handler {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 1536 << 10
	}
	h := &Handler{b: b, opts: opts, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/status", h.status)
	h.mux.HandleFunc("GET /admin/members", h.members)
	h.mux.HandleFunc("POST /admin/members/{id}", func(w http.ResponseWriter, r *http.Request) {
		h.addMember(w, r, r.PathValue("id"))
	})
	h.mux.HandleFunc("DELETE /admin/members/{id}", h.removeMember)
	h.mux.HandleFunc("GET /health", h.health)
	h.handleProbes()
	if opts.Metrics != nil {
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}))
	} else {
		h.mux.Handle("GET /metrics", promhttp.Handler())
	}
	h.mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		// etcd's body, compact and in its order, then metcd's own field:
		// tools probe etcd's version (to pick an API path, say).
		writeCompactJSON(w, http.StatusOK, struct {
			Server  string `json:"etcdserver"`
			Cluster string `json:"etcdcluster"`
			Storage string `json:"storage"`
			Metcd   string `json:"metcd"`
		}{server.Version, server.ClusterVersion, server.StorageVersion, opts.Version})
	})
	if opts.EnablePprof {
		h.mux.HandleFunc("/debug/pprof/", pprof.Index)
		h.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		h.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		h.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		h.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return h
}

func isReserved(path string) bool {
	seg, _, _ := strings.Cut(path, "/")
	for _, r := range Reserved {
		if seg == r {
			return true
		}
	}
	return false
}

// ServeHTTP routes reserved paths to their endpoints and the rest to keys.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if isReserved(path) {
		if strings.HasPrefix(path, "v3") {
			if h.opts.V3 == nil || !strings.HasPrefix(path, "v3/") {
				httpError(w, http.StatusNotFound, "/v3/ is reserved for the etcd v3 API")
				return
			}
			// JSON carries values in base64: allow for it, and no more.
			limit := 2*h.opts.MaxRequestBytes + 64<<10
			if r.ContentLength > limit {
				// What etcd's gateway answers when its gRPC server refuses
				// the request as too large (ResourceExhausted), rather
				// than the gateway's 400 for a body cut short. The body's
				// length stands in for the message's.
				writeCompactJSON(w, http.StatusTooManyRequests, map[string]any{
					"code":    int(codes.ResourceExhausted),
					"message": fmt.Sprintf("grpc: received message larger than max (request body of %d bytes vs. %d)", r.ContentLength, limit),
				})
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			h.opts.V3.ServeHTTP(w, r)
			return
		}
		h.mux.ServeHTTP(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, path)
	case http.MethodPut:
		h.put(w, r, path)
	case http.MethodDelete:
		h.del(w, r, path)
	case http.MethodPost:
		h.addMember(w, r, path)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE, POST")
		httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: use GET, PUT or DELETE on a key, POST /<id> to add a member", r.Method))
	}
}

func checkKey(w http.ResponseWriter, key string) bool {
	switch {
	case key == "":
		httpError(w, http.StatusBadRequest, "empty key: the key is the URL path after the first '/', e.g. PUT /config/db/host")
		return false
	case len(key) > MaxKeyBytes:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("key of %d bytes is longer than the limit of %d bytes", len(key), MaxKeyBytes))
		return false
	}
	return true
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, key string) {
	if !checkKey(w, key) {
		return
	}
	linearizable := true
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable", "l":
	case "serializable", "s":
		linearizable = false
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("unknown consistency %q: use linearizable (default) or serializable", c))
		return
	}
	v, rev, err := h.b.GetKey(r.Context(), []byte(key), linearizable)
	setRevision(w, rev)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(v)
	}
}

// readBody reads at most MaxRequestBytes, answering 413 beyond that.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.opts.MaxRequestBytes
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes exceeds --max-request-bytes (%d)", r.ContentLength, limit))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds --max-request-bytes (%d)", limit))
		return nil, false
	case err != nil:
		httpError(w, http.StatusBadRequest, "cannot read request body: "+err.Error())
		return nil, false
	}
	return body, true
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request, key string) {
	if !checkKey(w, key) {
		return
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	rev, err := h.b.PutKey(r.Context(), []byte(key), body)
	if err != nil {
		writeError(w, err)
		return
	}
	setRevision(w, rev)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) del(w http.ResponseWriter, r *http.Request, key string) {
	if !checkKey(w, key) {
		return
	}
	rev, err := h.b.DeleteKey(r.Context(), []byte(key))
	setRevision(w, rev)
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func parseID(w http.ResponseWriter, s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a member id: ids are decimal numbers from 1", s))
		return 0, false
	}
	return id, true
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request, idStr string) {
	id, ok := parseID(w, idStr)
	if !ok {
		return
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	peerURL := strings.TrimSpace(string(body))
	if peerURL == "" {
		httpError(w, http.StatusBadRequest, "the request body must be the new member's peer URL, e.g. http://127.0.0.1:42379")
		return
	}
	if err := h.b.AddMember(r.Context(), id, peerURL); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request) {
	id, ok := parseID(w, r.PathValue("id"))
	if !ok {
		return
	}
	if err := h.b.RemoveMember(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.b.MemberStatus())
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"members": h.b.Members()})
}

// writeError maps server errors to HTTP statuses; see README, "Failures".
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, server.ErrKeyNotFound):
		code = http.StatusNotFound
	case errors.Is(err, server.ErrNoLeader), errors.Is(err, server.ErrStopped):
		code = http.StatusServiceUnavailable
	case errors.Is(err, server.ErrLeaderLost):
		code = http.StatusServiceUnavailable
		w.Header().Set("X-Metcd-Outcome", "unknown")
	case errors.Is(err, server.ErrTimeout):
		code = http.StatusGatewayTimeout
		w.Header().Set("X-Metcd-Outcome", "unknown")
	case errors.Is(err, server.ErrReadTimeout):
		code = http.StatusGatewayTimeout
	case errors.Is(err, server.ErrMemberExists), errors.Is(err, server.ErrPeerURLExists), errors.Is(err, server.ErrIDRemoved):
		code = http.StatusConflict
	case errors.Is(err, server.ErrMemberNotFound):
		code = http.StatusNotFound
	case errors.Is(err, server.ErrNotEnoughStartedMembers):
		code = http.StatusConflict
	case errors.Is(err, server.ErrUnhealthy):
		code = http.StatusServiceUnavailable
	case errors.Is(err, server.ErrBadMember), errors.Is(err, kvstore.ErrEmptyKey), errors.Is(err, kvstore.ErrKeyTooLong):
		code = http.StatusBadRequest
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	case errors.Is(err, rpctypes.ErrGRPCNoSpace):
		code = http.StatusInsufficientStorage
	case errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, rpctypes.ErrGRPCNotSupportedForLearner):
		code = http.StatusForbidden
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		// etcd's errors read as they do in etcdctl.
		httpError(w, code, st.Message())
		return
	}
	httpError(w, code, strings.TrimPrefix(err.Error(), "server: "))
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// writeCompactJSON writes v on one line, as etcd writes /health and
// /version, for scripts that grep them.
func writeCompactJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
