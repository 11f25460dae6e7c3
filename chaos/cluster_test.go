package chaos

import (
	"slices"
	"testing"
)

// ClusterConfig.Extra (metcd-chaos --member-args) reaches every member's
// command line after the flags the harness sets, so it can also override
// them.
func TestExtraMemberArgs(t *testing.T) {
	net := NewNetwork(1)
	defer net.Close()
	extra := []string{"--read-cache-keys", "100", "--snapshot-count", "50"}
	c := &Cluster{
		cfg: ClusterConfig{Dir: t.TempDir(), Engine: "memory", SnapshotCount: 300, Extra: extra},
		Net: net,
	}
	for i, join := range []bool{false, true} {
		s := &Slot{Index: i, PrivAddr: "127.0.0.1:1", ClientPort: 2}
		c.newMember(s, uint64(i+1), []string{"http://127.0.0.1:3"}, join)
		if !slices.Equal(s.args[len(s.args)-len(extra):], extra) {
			t.Errorf("member %d (join %v): args %q do not end with %q", i+1, join, s.args, extra)
		}
		if !slices.Contains(s.args, "--engine") || !slices.Contains(s.args, "300") {
			t.Errorf("member %d: args %q lost the harness's own flags", i+1, s.args)
		}
	}
}
