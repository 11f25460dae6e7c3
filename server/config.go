package server

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/metcd/metcd/storage"
	"go.uber.org/zap"
)

// EngineOpener opens the storage engine kept in dir. The server calls it at
// start-up and again for a fresh, empty engine when it installs a snapshot.
type EngineOpener struct {
	Name string
	Open func(dir string) (storage.Engine, error)
}

// Config configures a member. DefaultConfig gives the defaults; Validate
// checks one.
type Config struct {
	// ID is this member's raft id (1-based position in InitialCluster).
	ID uint64
	// InitialCluster lists the peer URLs of the members, in id order.
	InitialCluster []string
	// Join makes the member join an existing cluster instead of forming one.
	Join bool
	// DataDir holds the WAL, snapshots and engine files.
	DataDir string
	Engine  EngineOpener

	// SnapshotCount is the number of applied entries between snapshots.
	SnapshotCount uint64
	// CatchUpEntries is how many entries the raft log keeps behind a
	// snapshot for followers that lag a little.
	CatchUpEntries uint64

	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// RequestTimeout bounds how long a write waits to be applied
	// (0: etcd's, 5 s plus two election timeouts).
	RequestTimeout time.Duration
	// LeaderWait bounds how long a request waits for a leader to appear.
	LeaderWait time.Duration

	// MaxSnapshots and MaxWALs are how many old files the purger keeps.
	// PeerListenAddr is the host:port the peer listener binds, when it
	// differs from the host:port of this member's URL in InitialCluster.
	PeerListenAddr string
	// Name is the member's name, published to the cluster with
	// ClientURLs once the member runs (etcd's member attributes).
	Name       string
	ClientURLs []string
	// MaxRequestBytes bounds a client request (etcd's
	// --max-request-bytes); MaxTxnOps the operations in one txn.
	MaxRequestBytes int
	MaxTxnOps       int
	// QuotaBackendBytes raises the NOSPACE alarm when the engine grows
	// past it (0: etcd's default, 2 GiB; negative: no quota).
	QuotaBackendBytes int64
	// RestoreFrom is a backup file (Maintenance.Snapshot) a fresh member
	// starts from instead of an empty key space.
	RestoreFrom string
	// CompactionBatchLimit bounds the history records physical
	// compaction removes per engine batch (0: 1000, as etcd).
	CompactionBatchLimit int
	// CompactionSleepInterval is the pause between those batches, which
	// leaves the engine to the apply loop and the member's reads (0: 10ms,
	// as etcd; negative: none).
	CompactionSleepInterval time.Duration
	// ReadCacheKeys bounds the keys whose current record the apply path
	// keeps in memory on a disk engine, 70-120 bytes each with short
	// keys (0: kvstore.DefaultCacheEntries). A put of a key outside it
	// reads the key's record from the engine. While all the keys fit, it
	// holds them all (read in the background at start-up), so a miss is
	// an absent key.
	ReadCacheKeys int

	MaxSnapshots uint
	MaxWALs      uint

	Logger *zap.Logger
}

// DefaultRequestTimeout is etcd's request timeout for an election
// timeout: 5 s plus two election timeouts (7 s with the default 1 s), so
// that a write proposed just before a leader change can still be applied
// once the next leader is elected, and one waiting on a follower that
// lags under load is not reported unknown sooner than etcd would.
func DefaultRequestTimeout(election time.Duration) time.Duration {
	return 5*time.Second + 2*election
}

// DefaultConfig returns a single-member configuration.
func DefaultConfig() Config {
	return Config{
		ID:                1,
		InitialCluster:    []string{"http://127.0.0.1:12379"},
		DataDir:           "metcd-1.data",
		SnapshotCount:     10000,
		CatchUpEntries:    5000,
		HeartbeatInterval: 100 * time.Millisecond,
		ElectionTimeout:   1000 * time.Millisecond,
		MaxRequestBytes:   1536 * 1024,
		MaxTxnOps:         128,
		MaxSnapshots:      5,
		MaxWALs:           5,
	}
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("member id must be at least 1"))
	}
	if len(c.InitialCluster) == 0 {
		errs = append(errs, errors.New("the cluster must list at least one peer URL"))
	} else if c.ID > uint64(len(c.InitialCluster)) {
		errs = append(errs, fmt.Errorf("member id %d is not in the cluster: --cluster lists %d peer URL(s), one per member in id order", c.ID, len(c.InitialCluster)))
	}
	seen := map[string]bool{}
	for i, u := range c.InitialCluster {
		if err := ValidatePeerURL(u); err != nil {
			errs = append(errs, fmt.Errorf("peer URL %d: %w", i+1, err))
		}
		// A joining member's list only names members to ask and, at its
		// id, its own URL, which may be that of a member removed before
		// (a machine replaced on the same address).
		if seen[u] && !c.Join {
			errs = append(errs, fmt.Errorf("peer URL %q is listed twice", u))
		}
		seen[u] = true
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir must be set"))
	}
	if c.Join && c.RestoreFrom != "" {
		errs = append(errs, errors.New("--restore-from starts a new cluster and cannot be combined with --join: a joining member gets its state from the cluster"))
	}
	if c.Engine.Open == nil {
		errs = append(errs, errors.New("no storage engine"))
	}
	if c.SnapshotCount == 0 {
		errs = append(errs, errors.New("snapshot count must be at least 1"))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, errors.New("heartbeat interval must be positive"))
	} else if c.ElectionTimeout < 5*c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("election timeout (%v) must be at least 5 heartbeat intervals (%v)", c.ElectionTimeout, c.HeartbeatInterval))
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, errors.New("request timeout must not be negative"))
	}
	if c.ReadCacheKeys < 0 {
		errs = append(errs, errors.New("read cache keys must not be negative"))
	}
	if c.CompactionBatchLimit < 0 {
		errs = append(errs, errors.New("compaction batch limit must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.CatchUpEntries == 0 || c.CatchUpEntries > c.SnapshotCount {
		c.CatchUpEntries = c.SnapshotCount
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout(c.ElectionTimeout)
	}
	if c.LeaderWait == 0 {
		c.LeaderWait = 2 * c.ElectionTimeout
	}
	if c.CompactionSleepInterval == 0 {
		c.CompactionSleepInterval = 10 * time.Millisecond
	}
	if c.MaxSnapshots == 0 {
		c.MaxSnapshots = 5
	}
	if c.MaxWALs == 0 {
		c.MaxWALs = 5
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return nil
}

// ValidatePeerURL checks that u is an absolute http URL with a host and
// port and nothing else. https is refused: the peer transport has no TLS,
// so no member could reach a member added at such a URL.
func ValidatePeerURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%w: peer URL %q: %v", ErrBadMember, u, err)
	}
	if p.Scheme == "https" {
		return fmt.Errorf("%w: peer URL %q: metcd has no TLS between members; use http", ErrBadMember, u)
	}
	if p.Scheme != "http" {
		return fmt.Errorf("%w: peer URL %q: scheme must be http", ErrBadMember, u)
	}
	if p.Host == "" || p.Port() == "" {
		return fmt.Errorf("%w: peer URL %q: needs host:port", ErrBadMember, u)
	}
	if (p.Path != "" && p.Path != "/") || p.RawQuery != "" || p.User != nil {
		return fmt.Errorf("%w: peer URL %q: must not carry a path, query or user", ErrBadMember, u)
	}
	return nil
}
