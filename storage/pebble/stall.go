package pebble

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// stallReportAfter is how long Pebble's writes must have been stalled
// before the stall is reported. Stalls of a few milliseconds are part of
// an LSM's normal work under load and not worth a line each.
const stallReportAfter = time.Second

// stallReporter reports write stalls that last. Pebble stops taking writes
// while its memtables wait for a flush or level 0 holds too many files;
// every commit, and so every write a member applies, then waits. A member
// whose writes hang for seconds should say why, and say when it recovers.
type stallReporter struct {
	lg    pebble.Logger
	after time.Duration

	mu     sync.Mutex
	gen    uint64 // counts stalls, so a late timer knows whether its stall ended
	start  time.Time
	reason string
	timer  *time.Timer
	told   bool // the current stall has been reported
}

func (r *stallReporter) listen(el *pebble.EventListener) {
	el.WriteStallBegin = r.begin
	el.WriteStallEnd = r.end
}

func (r *stallReporter) begin(info pebble.WriteStallBeginInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	gen := r.gen
	r.start, r.reason, r.told = time.Now(), info.Reason, false
	r.timer = time.AfterFunc(r.after, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.gen != gen || r.start.IsZero() {
			return // that stall is over
		}
		r.told = true
		r.lg.Errorf("writes stalled for %v so far: %s", time.Since(r.start).Round(time.Millisecond), r.reason)
	})
}

func (r *stallReporter) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.told {
		r.lg.Errorf("writes resumed after a stall of %v (%s)", time.Since(r.start).Round(time.Millisecond), r.reason)
	}
	r.start, r.told = time.Time{}, false
}
