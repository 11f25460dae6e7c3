package pebble

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

type recordingLogger struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordingLogger) Infof(string, ...any) {}
func (l *recordingLogger) Errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, fmt.Sprintf(format, args...))
}
func (l *recordingLogger) Fatalf(format string, args ...any) { l.Errorf(format, args...) }

func (l *recordingLogger) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// TestStallReport: a stall that lasts is reported with Pebble's reason
// while it lasts and again when it ends; a short one is not reported.
func TestStallReport(t *testing.T) {
	lg := &recordingLogger{}
	var el pebble.EventListener
	(&stallReporter{lg: lg, after: 20 * time.Millisecond}).listen(&el)

	el.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	el.WriteStallEnd()
	time.Sleep(60 * time.Millisecond) // past the threshold: a late timer must stay quiet
	if got := lg.lines(); len(got) != 0 {
		t.Fatalf("a stall shorter than the threshold was reported: %q", got)
	}

	el.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "L0 file count limit exceeded"})
	for deadline := time.Now().Add(10 * time.Second); len(lg.lines()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a stall longer than the threshold was not reported")
		}
	}
	el.WriteStallEnd()
	got := lg.lines()
	if len(got) != 2 || !strings.Contains(got[0], "writes stalled") || !strings.Contains(got[0], "L0 file count limit exceeded") ||
		!strings.Contains(got[1], "writes resumed") {
		t.Fatalf("reported %q; want a stall with its reason, then its end", got)
	}
}
