package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dirListing describes every file under dir: path, size and content hash.
func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out = append(out, rel+"/")
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out = append(out, fmt.Sprintf("%s %d %s", rel, info.Size(), hex.EncodeToString(sum[:8])))
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	slices.Sort(out)
	return out
}

// lastRunLog returns what the member wrote in its latest run (without the
// harness's own header line).
func lastRunLog(c *Cluster, i int) string {
	s := c.Log(i)
	if j := strings.LastIndex(s, "=== e2e: start #"); j >= 0 {
		s = s[j:]
		if k := strings.IndexByte(s, '\n'); k >= 0 {
			s = s[k+1:]
		} else {
			s = ""
		}
	}
	return s
}

// withFlag returns args with the value of flag replaced.
func withFlag(args []string, flag, value string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == flag {
			out[i+1] = value
			return out
		}
	}
	return append(out, flag, value)
}

// TestContradictoryFlags checks start-up errors: an --id that is not in
// --cluster, and a data dir that belongs to another member id. Both must
// exit non-zero with a message and leave the data dir as it was.
func TestContradictoryFlags(t *testing.T) {
	t.Run("id-not-in-cluster", func(t *testing.T) {
		c := NewStoppedCluster(t, Options{Size: 3})
		args := withFlag(c.Args(0), "--id", "4")
		c.StartArgs(0, args)
		code, err := c.WaitExit(0, 15*time.Second)
		if err != nil {
			t.Fatalf("--id 4 with a 3-member --cluster: %v", err)
		}
		if code == 0 {
			t.Errorf("--id 4 with a 3-member --cluster exited 0, want non-zero")
		}
		out := lastRunLog(c, 0)
		t.Logf("stderr: %s", strings.TrimSpace(out))
		if !strings.Contains(strings.ToLower(out), "id") || !strings.Contains(out, "4") {
			t.Errorf("stderr %q does not mention the id 4", out)
		}
		if ents, err := os.ReadDir(c.Members[0].DataDir); err == nil && len(ents) > 0 {
			t.Errorf("failed start left files in the data dir: %v", dirListing(t, c.Members[0].DataDir))
		}
	})

	t.Run("data-dir-of-another-member", func(t *testing.T) {
		c := NewCluster(t, Options{Size: 3})
		c.MustPut(0, "flags/k", "v")
		li := c.WaitLeader(10 * time.Second)
		for i := range c.Members {
			c.WaitCaughtUp(i, li, 10*time.Second)
		}
		for i := range c.Members {
			c.StopClean(i)
		}
		dir := c.Members[0].DataDir
		before := dirListing(t, dir)
		if len(before) <= 1 {
			t.Fatalf("member 1's data dir is empty after a run: %v", before)
		}

		// member 2's flags, but member 1's data dir
		args := withFlag(c.Args(1), "--data-dir", dir)
		c.StartArgs(1, args)
		code, err := c.WaitExit(1, 15*time.Second)
		if err != nil {
			t.Fatalf("--id 2 on member 1's data dir: %v", err)
		}
		if code == 0 {
			t.Errorf("--id 2 on member 1's data dir exited 0, want non-zero")
		}
		out := lastRunLog(c, 1)
		t.Logf("stderr: %s", strings.TrimSpace(out))
		if strings.TrimSpace(out) == "" {
			t.Errorf("no message on stderr")
		}
		after := dirListing(t, dir)
		if !slices.Equal(before, after) {
			t.Errorf("data dir changed by the failed start:\nbefore %v\nafter  %v", before, after)
		}

		// the data dir still works for its owner
		for i := range c.Members {
			c.Restart(i)
		}
		c.WaitReady(30 * time.Second)
		r, err := c.GetSerializable(0, "flags/k")
		if err != nil || r.Code != 200 || r.Body != "v" {
			t.Errorf("member 1 after restart: serializable GET flags/k = %v %v, want 200 v", r, err)
		}
		c.MustGet(1, "flags/k", "v")
	})

	t.Run("data-dir-of-another-cluster", func(t *testing.T) {
		c := NewCluster(t, Options{Size: 1})
		c.MustPut(0, "flags/k", "v")
		c.StopClean(0)
		dir := c.Members[0].DataDir
		before := dirListing(t, dir)

		// same id and data dir, but a different cluster (another peer URL)
		other := freeURL(t)
		c.StartArgs(0, withFlag(c.Args(0), "--cluster", other))
		code, err := c.WaitExit(0, 15*time.Second)
		if err != nil {
			t.Fatalf("data dir of another cluster: %v", err)
		}
		if code == 0 {
			t.Errorf("data dir of another cluster: exited 0, want non-zero")
		}
		out := lastRunLog(c, 0)
		t.Logf("stderr: %s", strings.TrimSpace(out))
		if strings.TrimSpace(out) == "" {
			t.Errorf("no message on stderr")
		}
		if after := dirListing(t, dir); !slices.Equal(before, after) {
			t.Errorf("data dir changed by the failed start:\nbefore %v\nafter  %v", before, after)
		}
		c.Start(0)
		c.WaitReady(20 * time.Second)
		c.MustGet(0, "flags/k", "v")
	})

	t.Run("id-zero", func(t *testing.T) {
		c := NewStoppedCluster(t, Options{Size: 1})
		c.StartArgs(0, withFlag(c.Args(0), "--id", strconv.Itoa(0)))
		code, err := c.WaitExit(0, 15*time.Second)
		if err != nil {
			t.Fatalf("--id 0: %v", err)
		}
		if code == 0 {
			t.Errorf("--id 0 exited 0, want non-zero")
		}
	})
}
