package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	stats "go.etcd.io/etcd/server/v3/etcdserver/api/v2stats"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// ClusterPath serves ClusterInfo on the peer port.
const ClusterPath = "/metcd/cluster"

// ClusterInfo is what a member tells a member that wants to join.
type ClusterInfo struct {
	ClusterID uint64   `json:"cluster_id,string"`
	Members   []Member `json:"members"`
}

// Member is one entry of ClusterInfo.
type Member struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peer_url"`
}

// Config configures a Transport.
type Config struct {
	Logger    *zap.Logger
	ID        uint64
	ClusterID uint64
	// PeerURL is this member's own peer URL; the listener binds its
	// host:port unless ListenAddr is set (when peers reach this member
	// through something in between, a proxy in fault tests).
	PeerURL     string
	ListenAddr  string
	Raft        rafthttp.Raft
	Snapshotter *snap.Snapshotter
	// Info reports the cluster to joining members.
	Info func() ClusterInfo
	// Handlers are served on the peer port too, by path (requests that
	// followers forward to the leader).
	Handlers map[string]http.Handler
}

// Transport sends raft messages to peers and serves theirs.
type Transport struct {
	lg  *zap.Logger
	rt  *rafthttp.Transport
	ln  net.Listener
	srv *http.Server
}

// New starts listening on the peer URL and starts the raft transport.
func New(cfg Config) (*Transport, error) {
	u, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("transport: parse peer URL %q: %w", cfg.PeerURL, err)
	}
	urls, err := types.NewURLs([]string{cfg.PeerURL})
	if err != nil {
		return nil, fmt.Errorf("transport: peer URL %q: %w", cfg.PeerURL, err)
	}
	id := strconv.FormatUint(cfg.ID, 16)
	rt := &rafthttp.Transport{
		Logger:      cfg.Logger,
		DialTimeout: time.Second,
		ID:          types.ID(cfg.ID),
		URLs:        urls,
		ClusterID:   types.ID(cfg.ClusterID),
		Raft:        cfg.Raft,
		Snapshotter: cfg.Snapshotter,
		ServerStats: stats.NewServerStats(id, id),
		LeaderStats: stats.NewLeaderStats(cfg.Logger, id),
		ErrorC:      make(chan error, 1),
	}
	if err := rt.Start(); err != nil {
		return nil, fmt.Errorf("transport: start: %w", err)
	}
	listen := u.Host
	if cfg.ListenAddr != "" {
		listen = cfg.ListenAddr
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		rt.Stop()
		return nil, fmt.Errorf("transport: listen on peer URL %s: %w", cfg.PeerURL, err)
	}
	mux := http.NewServeMux()
	raftHandler := rt.Handler()
	mux.Handle(rafthttp.RaftPrefix, raftHandler)
	mux.Handle(rafthttp.RaftPrefix+"/", raftHandler)
	mux.HandleFunc(ClusterPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(cfg.Info())
	})
	for path, h := range cfg.Handlers {
		mux.Handle(path, h)
	}
	t := &Transport{lg: cfg.Logger, rt: rt, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.lg.Error("peer listener failed", zap.Error(err))
		}
	}()
	return t, nil
}

// Send sends messages; unknown destinations are dropped.
func (t *Transport) Send(msgs []*raftpb.Message) { t.rt.Send(msgs) }

// SendSnapshot streams a snapshot message and its state.
func (t *Transport) SendSnapshot(m *snap.Message) { t.rt.SendSnapshot(m) }

// AddPeer starts talking to a member; adding a known member does nothing.
func (t *Transport) AddPeer(id uint64, peerURL string) {
	t.rt.AddPeer(types.ID(id), []string{peerURL})
}

// RemovePeer stops talking to a member.
func (t *Transport) RemovePeer(id uint64) {
	if t.rt.Get(types.ID(id)) != nil {
		t.rt.RemovePeer(types.ID(id))
	}
}

// UpdatePeer changes the peer URL of a known peer.
func (t *Transport) UpdatePeer(id uint64, peerURL string) {
	t.rt.UpdatePeer(types.ID(id), []string{peerURL})
}

// ActiveSince is when the stream to peer id last became active; zero if
// it is not active now (the peer is down, unreachable or unknown).
func (t *Transport) ActiveSince(id uint64) time.Time {
	return t.rt.ActiveSince(types.ID(id))
}

// Errors reports critical transport errors, such as this member having
// been removed from the cluster.
func (t *Transport) Errors() <-chan error { return t.rt.ErrorC }

// Addr is the peer listener's address.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Stop closes the listener and all peer connections. Peer streams are
// long-lived requests that never go idle, so the server is closed rather
// than shut down gracefully (which would wait them out).
func (t *Transport) Stop() {
	t.rt.Stop()
	t.srv.Close()
}

// FetchCluster asks the members at peerURLs, in turn, for the cluster they
// form, until one gives an answer that accept takes (a member may not have
// applied the latest membership change yet) or ctx ends.
func FetchCluster(ctx context.Context, peerURLs []string, accept func(*ClusterInfo) error) (*ClusterInfo, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for {
		for _, u := range peerURLs {
			info, err := fetchOne(ctx, client, u)
			if err == nil {
				if err = accept(info); err == nil {
					return info, nil
				}
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transport: asking members for the cluster's state: %w", lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fetchOne(ctx context.Context, client *http.Client, peerURL string) (*ClusterInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL+ClusterPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", peerURL, resp.Status)
	}
	var info ClusterInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("%s: decode cluster info: %w", peerURL, err)
	}
	return &info, nil
}
