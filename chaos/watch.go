package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one watch event.
type Event struct {
	Rev    int64  `json:"rev"`
	Delete bool   `json:"delete,omitempty"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
}

func (e Event) String() string {
	if e.Delete {
		return fmt.Sprintf("@%d delete %s", e.Rev, e.Key)
	}
	return fmt.Sprintf("@%d put %s=%q", e.Rev, e.Key, e.Value)
}

// Watcher watches the workload's key prefix on one member, from a start
// revision, for the whole run. clientv3 resumes a broken watch stream from
// the revision after the last one it delivered; when the watch is cancelled
// (an error the client does not retry), the watcher opens a new one from
// there itself and counts it.
type Watcher struct {
	Slot     int
	endpoint string
	cli      *clientv3.Client
	prefix   string

	mu       sync.Mutex
	events   []Event
	next     int64 // the revision to resume from
	rewatch  int
	errs     []string
	progress chan struct{}
}

func newWatcher(slot int, endpoint, prefix string, start int64) (*Watcher, error) {
	cli, err := newClient([]string{endpoint})
	if err != nil {
		return nil, err
	}
	return &Watcher{Slot: slot, endpoint: endpoint, cli: cli, prefix: prefix, next: start, progress: make(chan struct{}, 1)}, nil
}

func (w *Watcher) run(ctx context.Context) {
	defer w.cli.Close()
	for ctx.Err() == nil {
		w.mu.Lock()
		from := w.next
		w.mu.Unlock()
		wch := w.cli.Watch(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, err.Error())
				w.mu.Unlock()
				break
			}
			w.mu.Lock()
			for _, ev := range resp.Events {
				e := Event{Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Delete: ev.Type == mvccpb.DELETE}
				w.events = append(w.events, e)
				if e.Rev >= w.next {
					w.next = e.Rev + 1
				}
			}
			w.mu.Unlock()
			select {
			case w.progress <- struct{}{}:
			default:
			}
		}
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.rewatch++
		w.mu.Unlock()
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// Seen is the revision after the last event received.
func (w *Watcher) Seen() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next - 1
}

// Events returns a copy of the events received.
func (w *Watcher) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Event(nil), w.events...)
}

// Rewatches is how many times the watch had to be opened again.
func (w *Watcher) Rewatches() (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rewatch, append([]string(nil), w.errs...)
}

// waitFor waits until the watcher has seen revision rev, or ctx ends.
func (w *Watcher) waitFor(ctx context.Context, rev int64) error {
	for {
		if w.Seen() >= rev {
			return nil
		}
		select {
		case <-w.progress:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("watcher on slot %d saw up to revision %d, not %d: %w", w.Slot, w.Seen(), rev, ctx.Err())
		}
	}
}
