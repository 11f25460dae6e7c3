package freeport

import "testing"

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
