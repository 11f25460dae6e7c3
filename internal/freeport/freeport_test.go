package freeport

import (
	"fmt"
	"testing"
)

// TestTakeNeverRepeats takes ports one and two at a time, each call closing
// its listeners, as members are laid out: no port may come back.
func TestTakeNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for i := range 300 {
		ports, err := Take(1 + i%2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if seen[p] || reserved[p] || p <= 0 {
				t.Fatalf("call %d: bad or repeated port %d", i, p)
			}
			seen[p] = true
		}
	}
}

// TestURLs: URLs are loopback http URLs on distinct ports never handed
// out before.
func TestURLs(t *testing.T) {
	before, err := Take(1)
	if err != nil {
		t.Fatal(err)
	}
	urls, err := URLs(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{fmt.Sprintf("http://127.0.0.1:%d", before[0]): true}
	for _, u := range urls {
		var p int
		if _, err := fmt.Sscanf(u, "http://127.0.0.1:%d", &p); err != nil || p <= 0 || reserved[p] {
			t.Fatalf("bad URL %q", u)
		}
		if seen[u] {
			t.Fatalf("URL %q handed out twice", u)
		}
		seen[u] = true
	}
}
