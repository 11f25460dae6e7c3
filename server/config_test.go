package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/metcd/metcd/storage"
)

// TestRequestTimeoutDefault checks that an unset request timeout becomes
// etcd's (5 s plus two election timeouts), that a set one is kept and that
// a negative one is refused.
func TestRequestTimeoutDefault(t *testing.T) {
	for _, tc := range []struct {
		election, set, want time.Duration
	}{
		{time.Second, 0, 7 * time.Second},
		{2500 * time.Millisecond, 0, 10 * time.Second},
		{time.Second, 3 * time.Second, 3 * time.Second},
	} {
		cfg := DefaultConfig()
		cfg.Engine = EngineOpener{Name: "none", Open: func(string) (storage.Engine, error) { return nil, nil }}
		cfg.ElectionTimeout = tc.election
		cfg.RequestTimeout = tc.set
		if err := cfg.Validate(); err != nil {
			t.Fatalf("election %v, request timeout %v: %v", tc.election, tc.set, err)
		}
		if cfg.RequestTimeout != tc.want {
			t.Errorf("election %v, request timeout %v: got %v, want %v", tc.election, tc.set, cfg.RequestTimeout, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Engine = EngineOpener{Name: "none", Open: func(string) (storage.Engine, error) { return nil, nil }}
	cfg.RequestTimeout = -time.Second
	if err := cfg.Validate(); err == nil {
		t.Error("a negative request timeout was accepted")
	}
}

func TestReadCacheKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Engine = EngineOpener{Name: "none", Open: func(string) (storage.Engine, error) { return nil, nil }}
	cfg.ReadCacheKeys = -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "read cache") {
		t.Errorf("a negative read cache size: %v, want an error naming it", err)
	}
	cfg.ReadCacheKeys = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("the default read cache size: %v", err)
	}
}

// TestValidatePeerURL: peer URLs are plain http with a host and a port;
// https is refused with the reason (no TLS between members), not accepted
// for a member no other could reach.
func TestValidatePeerURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:2380", "http://h:1/"} {
		if err := ValidatePeerURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for u, want := range map[string]string{
		"https://127.0.0.1:2380":  "no TLS",
		"unix://x:1":              "scheme must be http",
		"http://127.0.0.1":        "host:port",
		"http://127.0.0.1:1/p":    "path",
		"http://127.0.0.1:1/?q=1": "query",
		"http://u@127.0.0.1:1":    "user",
		"127.0.0.1:2380":          "first path segment",
		"ftp://h:1":               "scheme must be http",
	} {
		err := ValidatePeerURL(u)
		if !errors.Is(err, ErrBadMember) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrBadMember mentioning %q", u, err, want)
		}
	}
}
