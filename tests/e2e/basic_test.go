package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/metcd/metcd/storage/engines"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSingleMember starts one member with (almost) default flags: only the
// ports are chosen, and the data dir is the default metcd-<id>.data in the
// working directory. It serves PUT/GET/DELETE, health, status and members,
// and exits 0 on SIGTERM.
func TestSingleMember(t *testing.T) {
	c := NewStoppedCluster(t, Options{Size: 1})
	m := c.Members[0]
	m.DataDir = "" // use the default
	c.Start(0)
	c.WaitReady(20 * time.Second)

	if _, err := os.Stat(filepath.Join(m.WorkDir, "metcd-1.data")); err != nil {
		t.Errorf("default data dir metcd-1.data not created in the working directory: %v", err)
	}

	// health
	r, err := c.Do(0, http.MethodGet, "/health", nil)
	if err != nil || r.Code != http.StatusOK {
		t.Fatalf("GET /health: %v %v, want 200", r, err)
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil || h["health"] != "true" {
		t.Errorf("GET /health body = %q (%v), want {\"health\":\"true\"}", r.Body, err)
	}

	// status
	s, err := c.Status(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.MemberID != 1 || s.Role != "leader" || s.LeaderID != 1 || s.Term == 0 || s.ClusterID == "" || s.Engine != engines.Default {
		t.Errorf("status = %+v, want member 1, leader, term > 0, a cluster id, engine %s (the default)", s, engines.Default)
	}
	if s.AppliedIndex > s.CommitIndex {
		t.Errorf("status: applied_index %d > commit_index %d", s.AppliedIndex, s.CommitIndex)
	}

	// members
	ms, err := c.MemberList(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != 1 || ms[0].PeerURL != m.PeerURL || !ms[0].IsLeader {
		t.Errorf("members = %+v, want [{1 %s true}]", ms, m.PeerURL)
	}

	// put / get / overwrite / delete
	c.MustPut(0, "hello", "world")
	c.MustGet(0, "hello", "world")
	c.MustPut(0, "hello", "again")
	c.MustGet(0, "hello", "again")

	// nested key: /config/db/host is key config/db/host
	c.MustPut(0, "config/db/host", "db.local:5432")
	c.MustGet(0, "config/db/host", "db.local:5432")
	r, err = c.Get(0, "config/db")
	if err != nil || r.Code != http.StatusNotFound {
		t.Errorf("GET config/db (a prefix of an existing key): %v %v, want 404", r, err)
	}

	// escaped characters in the key and binary values
	bin := string([]byte{0, 1, 2, 0xff, 0xfe, '\n', 'x'})
	c.MustPut(0, "sp ace/ü?&#%", bin)
	c.MustGet(0, "sp ace/ü?&#%", bin)

	r, err = c.GetSerializable(0, "hello")
	if err != nil || r.Code != http.StatusOK || r.Body != "again" {
		t.Errorf("serializable GET hello: %v %v, want 200 again", r, err)
	}
	r, err = c.Do(0, http.MethodGet, escapeKey("hello")+"?consistency=linearizable", nil)
	if err != nil || r.Code != http.StatusOK || r.Body != "again" {
		t.Errorf("GET hello?consistency=linearizable: %v %v, want 200 again", r, err)
	}

	r, err = c.Delete(0, "hello")
	if err != nil || r.Code != http.StatusNoContent {
		t.Fatalf("DELETE hello: %v %v, want 204", r, err)
	}
	r, err = c.Get(0, "hello")
	if err != nil || r.Code != http.StatusNotFound {
		t.Errorf("GET hello after delete: %v %v, want 404", r, err)
	}
	r, err = c.Delete(0, "hello")
	if err != nil || r.Code != http.StatusNotFound {
		t.Errorf("second DELETE hello: %v %v, want 404", r, err)
	}

	s2, err := c.Status(0)
	if err != nil {
		t.Fatal(err)
	}
	if s2.CommitIndex <= s.CommitIndex || s2.AppliedIndex <= s.AppliedIndex {
		t.Errorf("commit/applied index did not advance after writes: before %+v after %+v", s, s2)
	}
	if s2.Keys-s.Keys != 2 {
		t.Errorf("status keys went from %d to %d, want +2 (config/db/host and the escaped one)", s.Keys, s2.Keys)
	}

	// clean shutdown, then restart from the default data dir
	c.StopClean(0)
	c.Restart(0)
	c.WaitReady(20 * time.Second)
	c.MustGet(0, "config/db/host", "db.local:5432")
	c.MustGet(0, "sp ace/ü?&#%", bin)
	r, err = c.Get(0, "hello")
	if err != nil || r.Code != http.StatusNotFound {
		t.Errorf("GET hello after restart: %v %v, want 404 (it was deleted)", r, err)
	}
	if code := c.Interrupt(0); code != 0 {
		t.Errorf("exit code after SIGINT = %d, want 0", code)
	}
}

// TestReplicatedReads writes on one member and immediately reads the value
// from every other member with linearizable reads, and from the writer
// itself with a serializable read.
func TestReplicatedReads(t *testing.T) {
	c := NewCluster(t, Options{Size: 3, Extra: []string{"--engine", "memory", "--log-level", "info"}})

	ms, err := c.MemberList(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members = %+v, want 3", ms)
	}
	leaders := 0
	for _, mi := range ms {
		if mi.ID < 1 || mi.ID > 3 || mi.PeerURL != c.Members[mi.ID-1].PeerURL {
			t.Errorf("member entry %+v: want ids 1..3 with their peer URLs", mi)
		}
		if mi.IsLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("members = %+v: %d leaders, want 1", ms, leaders)
	}
	var cid string
	var baseKeys int64
	for i := range c.Members {
		s, err := c.Status(i)
		if err != nil {
			t.Fatal(err)
		}
		if cid == "" {
			baseKeys = s.Keys
			cid = s.ClusterID
		} else if s.ClusterID != cid {
			t.Errorf("member %d cluster_id %q differs from %q", i+1, s.ClusterID, cid)
		}
	}

	const n = 60
	for k := range n {
		w := k % 3
		key := fmt.Sprintf("rr/key-%03d", k)
		val := fmt.Sprintf("value-%03d-from-%d", k, w+1)
		c.MustPut(w, key, val)
		r, err := c.GetSerializable(w, key)
		if err != nil || r.Code != http.StatusOK || r.Body != val {
			t.Fatalf("serializable GET %q on the writer (member %d) right after its PUT returned: %v %v, want 200 %q", key, w+1, r, err, val)
		}
		for o := range 3 {
			if o == w {
				continue
			}
			r, err := c.Get(o, key)
			if err != nil || r.Code != http.StatusOK || r.Body != val {
				t.Fatalf("linearizable GET %q on member %d right after the PUT on member %d returned: %v %v, want 200 %q", key, o+1, w+1, r, err, val)
			}
		}
	}

	// overwrites and deletes are visible everywhere too
	for k := range 10 {
		w := (k + 1) % 3
		key := fmt.Sprintf("rr/key-%03d", k)
		val := fmt.Sprintf("overwritten-%d", k)
		c.MustPut(w, key, val)
		for o := range 3 {
			c.MustGet(o, key, val)
		}
		r, err := c.Delete((w+1)%3, key)
		if err != nil || r.Code != http.StatusNoContent {
			t.Fatalf("DELETE %q on member %d: %v %v, want 204", key, (w+1)%3+1, r, err)
		}
		for o := range 3 {
			r, err := c.Get(o, key)
			if err != nil || r.Code != http.StatusNotFound {
				t.Fatalf("GET %q on member %d after DELETE: %v %v, want 404", key, o+1, r, err)
			}
		}
	}

	// all members converge on the same number of keys
	c.Eventually(10*time.Second, "members report the same key count", func() error {
		var keys []int64
		for i := range c.Members {
			s, err := c.Status(i)
			if err != nil {
				return err
			}
			keys = append(keys, s.Keys)
		}
		for _, k := range keys {
			if k != baseKeys+n-10 {
				return fmt.Errorf("keys per member = %v, want %d each", keys, baseKeys+n-10)
			}
		}
		return nil
	})
}

// TestBadInput checks the error answers of the HTTP API.
func TestBadInput(t *testing.T) {
	// single-dash flags work too (Go flag package)
	c := NewCluster(t, Options{Size: 1, Extra: []string{"-max-request-bytes", "1024", "-log-level", "warn"}})

	check := func(what string, r Resp, err error, want int) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if r.Code != want {
			t.Errorf("%s: %v, want %d", what, r, want)
			return
		}
		if want >= 400 {
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("%s: Content-Type %q, want text/plain", what, ct)
			}
			if strings.TrimSpace(r.Body) == "" {
				t.Errorf("%s: empty error body, want a message", what)
			}
		}
	}

	r, err := c.Do(0, http.MethodPut, "/", []byte("v"))
	check("PUT / (empty key)", r, err, http.StatusBadRequest)

	long := strings.Repeat("k", 16*1024+1)
	r, err = c.Put(0, long, []byte("v"))
	check("PUT 16 KiB + 1 key", r, err, http.StatusBadRequest)
	r, err = c.Get(0, long)
	check("GET 16 KiB + 1 key", r, err, http.StatusBadRequest)
	edge := strings.Repeat("e", 16*1024)
	r, err = c.Put(0, edge, []byte("v"))
	check("PUT 16 KiB key (the limit)", r, err, http.StatusNoContent)
	// The index stores a 0x00 byte as two, and the limit counts them so.
	r, err = c.Put(0, strings.Repeat("\x00", 8*1024+1), []byte("v"))
	check("PUT 8 KiB + 1 key of 0x00 bytes", r, err, http.StatusBadRequest)

	r, err = c.Put(0, "big", make([]byte, 2048))
	check("PUT 2048-byte value with --max-request-bytes 1024", r, err, http.StatusRequestEntityTooLarge)
	r, err = c.Get(0, "big")
	check("GET big after the 413", r, err, http.StatusNotFound)
	r, err = c.Put(0, "fits", make([]byte, 1024))
	check("PUT 1024-byte value with --max-request-bytes 1024", r, err, http.StatusNoContent)

	r, err = c.Do(0, http.MethodPatch, "/somekey", []byte("v"))
	check("PATCH /somekey", r, err, http.StatusMethodNotAllowed)

	c.MustPut(0, "present", "yes")
	r, err = c.Do(0, http.MethodGet, "/present?consistency=bogus", nil)
	check("GET ?consistency=bogus", r, err, http.StatusBadRequest)

	r, err = c.Get(0, "missing")
	check("GET missing key", r, err, http.StatusNotFound)
	r, err = c.Delete(0, "missing")
	check("DELETE missing key", r, err, http.StatusNotFound)

	r, err = c.Do(0, http.MethodPost, "/abc", []byte("http://127.0.0.1:1"))
	check("POST /abc", r, err, http.StatusBadRequest)

	// reserved first path segments are not keys
	for _, p := range []string{"/admin/x", "/v3/x", "/metrics", "/metrics/x", "/health", "/livez", "/readyz/x", "/debug/x", "/version", "/version/x"} {
		r, err := c.Do(0, http.MethodPut, p, []byte("v"))
		if err != nil {
			t.Errorf("PUT %s: %v", p, err)
		} else if r.Code < 400 {
			t.Errorf("PUT %s: %v, want an error status (reserved path, not a key)", p, r)
		}
	}
	if s, err := c.Status(0); err != nil {
		t.Error(err)
	} else if s.Keys != 3 {
		t.Errorf("status keys = %d, want 3 (the 16 KiB key, fits, present)", s.Keys)
	}

	// the member is still healthy and the good writes are there
	c.MustGet(0, "present", "yes")
	r, err = c.Get(0, "fits")
	if err != nil || r.Code != http.StatusOK || len(r.Body) != 1024 {
		t.Errorf("GET fits: %v %v, want 200 with 1024 bytes", r, err)
	}
}

// TestLargeValues writes values up to the default --max-request-bytes
// (1572864) through a follower, so they travel as forwarded proposals and
// replicated entries, and reads them back from every member.
func TestLargeValues(t *testing.T) {
	c := NewCluster(t, Options{Size: 3})
	li := c.WaitLeader(10 * time.Second)
	fol := others(3, li)[0]
	for _, size := range []int{64 * 1024, 1024 * 1024, 1572864} {
		val := make([]byte, size)
		for i := range val {
			val[i] = byte('a' + (i*7+size)%26)
		}
		key := fmt.Sprintf("large/%d", size)
		r, err := c.Put(fol, key, val)
		if err != nil || r.Code != http.StatusNoContent {
			t.Fatalf("PUT %d-byte value via follower %d: %v %v, want 204", size, c.Members[fol].ID, r, err)
		}
		for i := range c.Members {
			r, err := c.Get(i, key)
			if err != nil || r.Code != http.StatusOK || r.Body != string(val) {
				t.Fatalf("GET %s on member %d: code %d, %d bytes, err %v; want 200 with the %d bytes written", key, i+1, r.Code, len(r.Body), err, size)
			}
		}
	}
	r, err := c.Put(fol, "large/over", make([]byte, 1572864+1))
	if err != nil || r.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT 1572865-byte value (default limit + 1): %v %v, want 413", r, err)
	}
}

// TestConcurrentWriters has clients on every member overwrite a small set
// of keys at the same time; afterwards every member holds the same value
// for every key, and linearizable reads return it.
func TestConcurrentWriters(t *testing.T) {
	c := NewCluster(t, Options{Size: 3})
	const writers, rounds, keys = 6, 40, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range rounds {
				key := fmt.Sprintf("cw/%d", (w+n)%keys)
				val := fmt.Sprintf("w%d-n%d", w, n)
				r, err := c.Put(w%3, key, []byte(val))
				if err != nil || r.Code != http.StatusNoContent {
					errs <- fmt.Errorf("PUT %s=%s on member %d: %v %v", key, val, w%3+1, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	li := c.WaitLeader(10 * time.Second)
	for i := range c.Members {
		c.WaitCaughtUp(i, li, 10*time.Second)
	}
	for k := range keys {
		key := fmt.Sprintf("cw/%d", k)
		var vals []string
		for i := range c.Members {
			r, err := c.GetSerializable(i, key)
			if err != nil || r.Code != http.StatusOK {
				t.Fatalf("serializable GET %s on member %d: %v %v", key, i+1, r, err)
			}
			vals = append(vals, r.Body)
		}
		if vals[0] != vals[1] || vals[1] != vals[2] {
			t.Errorf("members disagree on %s: %q", key, vals)
		}
		r, err := c.Get(0, key)
		if err != nil || r.Code != http.StatusOK || r.Body != vals[0] {
			t.Errorf("linearizable GET %s = %v %v, members hold %q", key, r, err, vals[0])
		}
	}
}
