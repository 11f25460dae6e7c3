package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProbes drives /livez, /readyz and /health the way Kubernetes probes
// and etcd's operators do, through a loss of quorum: a member cut off from
// the quorum is alive (/livez, /health?serializable=true) but not ready
// (/readyz says which check failed; /health fails), and it is ready again
// once the quorum is back. A learner is alive and healthy but not ready.
func TestProbes(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	get := func(i int, path string) Resp {
		t.Helper()
		r, err := c.Do(i, http.MethodGet, path, nil)
		if err != nil {
			t.Fatalf("GET %s on member %d: %v", path, i, err)
		}
		return r
	}
	for i := range c.Members {
		for _, p := range []string{"/livez", "/readyz", "/readyz/linearizable_read"} {
			if r := get(i, p); r.Code != http.StatusOK || r.Body != "ok\n" {
				t.Errorf("member %d, %s: %v, want 200 ok", i, p, r)
			}
		}
		want := "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
		if r := get(i, "/readyz?verbose"); r.Code != http.StatusOK || r.Body != want {
			t.Errorf("member %d, /readyz?verbose: %v, want 200 %q", i, r, want)
		}
	}

	// A learner is healthy and alive, and ready but for non_learner,
	// as in etcd, whose health reads are not refused to learners.
	ln, _ := c.AddMemberV3(t, 0, true)
	c.Start(ln)
	c.Eventually(30*time.Second, "the learner healthy", func() error {
		r, err := c.Do(ln, http.MethodGet, "/health", nil) // the member may not listen yet
		if err != nil || r.Code != http.StatusOK || r.Body != `{"health":"true","reason":""}` {
			return fmt.Errorf("/health: %v %v", r, err)
		}
		return nil
	})
	if r := get(ln, "/readyz"); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, "[-]non_learner failed: not supported for learner") || !strings.Contains(r.Body, "[+]linearizable_read ok") {
		t.Errorf("learner, /readyz: %v, want 503 with only non_learner failed", r)
	}
	for _, p := range []string{"/livez", "/readyz?exclude=non_learner"} {
		if r := get(ln, p); r.Code != http.StatusOK {
			t.Errorf("learner, %s: %v, want 200", p, r)
		}
	}

	c.Kill(1)
	c.Kill(2)
	c.Eventually(30*time.Second, "the survivor not ready, but alive", func() error {
		if r := get(0, "/readyz"); r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, "[-]linearizable_read failed") || !strings.Contains(r.Body, "[+]serializable_read ok") {
			return fmt.Errorf("/readyz: %v", r)
		}
		if r := get(0, "/health"); r.Code != http.StatusServiceUnavailable {
			return fmt.Errorf("/health: %v", r)
		}
		return nil
	})
	for _, p := range []string{"/livez", "/health?serializable=true", "/readyz/serializable_read", "/readyz?exclude=linearizable_read"} {
		if r := get(0, p); r.Code != http.StatusOK {
			t.Errorf("alone, %s: %v, want 200", p, r)
		}
	}

	c.Restart(1)
	c.Eventually(30*time.Second, "the survivor ready again", func() error {
		if r := get(0, "/readyz"); r.Code != http.StatusOK {
			return fmt.Errorf("/readyz: %v", r)
		}
		return nil
	})
}
