package server

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReadBatchInterval checks Config.ReadBatchInterval: a read alone in
// its round does not hold the next round back, rounds shared by several
// reads are spaced by the interval, and reads stay linearizable.
func TestReadBatchInterval(t *testing.T) {
	const iv = time.Second
	c := newTestClusterWith(t, 3, func(cfg *Config) {
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.ElectionTimeout = 3 * time.Second
		cfg.RequestTimeout = 10 * time.Second
		cfg.ReadBatchInterval = iv
	})
	lead := c.waitLeader()
	var leader, f *Server
	for _, s := range c.members {
		if s.ID() == lead {
			leader = s
		} else {
			f = s
		}
	}

	// Each write is seen by the next linearizable read on a follower.
	for i := 0; i < 5; i++ {
		if err := putKey(leader, ctx(t), []byte("k"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		v, err := getKey(f, ctx(t), []byte("k"), true)
		if err != nil || string(v) != fmt.Sprint(i) {
			t.Fatalf("linearizable get after put %d: %q, %v", i, v, err)
		}
	}

	// One read at a time: every round serves one read and none waits, so
	// five take far less than the four intervals they would if they did.
	start := time.Now()
	for i := 0; i < 5; i++ {
		if _, err := getKey(f, ctx(t), []byte("k"), true); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el >= iv {
		t.Fatalf("5 sequential linearizable reads took %v: a lone read was held back by the %v interval", el, iv)
	}

	// Four readers at once, three reads each: the rounds gather several
	// reads, and the round after a shared one waits out the interval.
	before := f.MemberStatus()
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 3; j++ {
				v, err := getKey(f, ctx(t), []byte("k"), true)
				if err == nil && string(v) != "4" {
					err = fmt.Errorf("read %q, want the last acknowledged write %q", v, "4")
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	el := time.Since(start)
	after := f.MemberStatus()
	reads := after.LinearizableReads - before.LinearizableReads
	rounds := after.ReadIndexRounds - before.ReadIndexRounds
	if reads != 12 {
		t.Fatalf("status counted %d linearizable reads, want 12", reads)
	}
	if rounds >= reads {
		t.Fatalf("%d rounds for %d concurrent reads: no round was shared", rounds, reads)
	}
	if el < iv {
		t.Fatalf("12 reads by 4 concurrent readers took %v in %d rounds: a round after a shared one started sooner than the %v interval", el, rounds, iv)
	}
	t.Logf("12 reads in %d rounds, %v", rounds, el)
}

func TestReadBatchIntervalValidated(t *testing.T) {
	base := memConfig(t, 1, []string{freeURL(t)}, t.TempDir())
	for _, iv := range []time.Duration{-time.Millisecond, base.ElectionTimeout} {
		cfg := base
		cfg.ReadBatchInterval = iv
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "read batch interval") {
			t.Errorf("read batch interval %v with a %v election timeout: error %v, want one about the interval", iv, cfg.ElectionTimeout, err)
		}
	}
	cfg := base
	cfg.ReadBatchInterval = 4 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Errorf("read batch interval 4ms: %v", err)
	}
}
