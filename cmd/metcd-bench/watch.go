package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The watch workload: --watchers watchers, on --watch-streams watch streams
// (clientv3 Watchers, spread over the connections), watcher j on key
// j mod --key-space; --clients writers put keys of the key space (at
// --rate). Each put's value starts with the time the put was started (8
// bytes, nanoseconds since the epoch), so a watcher knows the latency of
// each event it receives: from the start of the put to the event's arrival.
//
// A put acknowledged to its writer owes one event to every watcher of its
// key. Once the writers stop, the watchers get up to --timeout for the
// events still due; those that never come are counted as errors ("watch
// event missing").

// stampSize is the bytes of a put's start time at the front of its value.
const stampSize = 8

// watchKind is the error kind of events that never arrived.
const watchKind = "watch event missing"

func (b *bench) runWatch(stop <-chan struct{}) (*stats, time.Duration, error) {
	cfg := b.cfg
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	streams := make([]clientv3.Watcher, cfg.WatchStreams)
	for i := range streams {
		streams[i] = clientv3.NewWatcher(b.watch[i%len(b.watch)])
	}
	defer func() {
		for _, w := range streams {
			w.Close()
		}
	}()

	// Open every watch and wait until the server has created it, so that
	// no put of the run precedes a watch.
	watchersOf := map[int64]int64{} // key index -> watchers on it
	chans := make([]clientv3.WatchChan, cfg.Watchers)
	var key []byte
	for j := range cfg.Watchers {
		ki := int64(j) % cfg.KeySpace
		key = makeKey(key, cfg.KeyPrefix, cfg.KeySize, ki)
		chans[j] = streams[j%len(streams)].Watch(ctx, string(key), clientv3.WithCreatedNotify())
		select {
		case resp, ok := <-chans[j]:
			switch {
			case !ok:
				return nil, 0, fmt.Errorf("watch %d on %s: closed before it was created", j, key)
			case resp.Err() != nil:
				return nil, 0, fmt.Errorf("watch %d on %s: %w", j, key, resp.Err())
			case !resp.Created:
				return nil, 0, fmt.Errorf("watch %d on %s: first response is not the creation", j, key)
			}
		case <-time.After(cfg.Timeout):
			return nil, 0, fmt.Errorf("watch %d on %s: not created within %v", j, key, cfg.Timeout)
		case <-stop:
			return nil, 0, fmt.Errorf("interrupted while creating the watches")
		}
		watchersOf[ki]++
	}

	var lastEvent atomic.Int64 // unix nanoseconds of the latest event
	watcherStats := make([]*stats, cfg.Watchers)
	var wwg sync.WaitGroup
	for j, ch := range chans {
		s := newStats()
		watcherStats[j] = s
		wwg.Go(func() {
			for resp := range ch {
				if err := resp.Err(); err != nil {
					if ctx.Err() == nil {
						s.fail("watch: "+errorKind(err), err.Error())
						b.prog.failed.Add(1)
					}
					continue
				}
				now := time.Now().UnixNano()
				for _, ev := range resp.Events {
					if ev.Type != clientv3.EventTypePut || len(ev.Kv.Value) < stampSize {
						continue
					}
					sent := int64(binary.LittleEndian.Uint64(ev.Kv.Value))
					s.ok[opWatch]++
					s.lat[opWatch].Record(time.Duration(now - sent))
					b.prog.events.Add(1)
				}
				lastEvent.Store(now)
			}
		})
	}

	// The writers.
	b.start = time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = b.start.Add(cfg.Duration)
	}
	var expected atomic.Int64
	writerStats := make([]*stats, cfg.Clients)
	var pwg sync.WaitGroup
	for w := range cfg.Clients {
		pwg.Go(func() {
			s := newStats()
			writerStats[w] = s
			t := b.targets[w%len(b.targets)]
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1))
			value := append([]byte(nil), b.value...)
			var key []byte
			for b.claim(deadline, stop) {
				i := b.nextKey(r)
				key = makeKey(key, cfg.KeyPrefix, cfg.KeySize, i)
				rctx, rcancel := context.WithTimeout(context.Background(), cfg.Timeout)
				t0 := time.Now()
				binary.LittleEndian.PutUint64(value, uint64(t0.UnixNano()))
				err := t.Put(rctx, key, value)
				lat := time.Since(t0)
				rcancel()
				s.requests[opPut]++
				if err != nil {
					s.fail(errorKind(err), err.Error())
					b.prog.failed.Add(1)
				} else {
					s.ok[opPut]++
					s.lat[opPut].Record(lat)
					expected.Add(watchersOf[i])
				}
				b.prog.done.Add(1)
			}
		})
	}
	pwg.Wait()
	writersDone := time.Now()

	// Wait for the events still due.
	grace := time.NewTimer(cfg.Timeout)
	defer grace.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for b.prog.events.Load() < expected.Load() {
		select {
		case <-grace.C:
			break wait
		case <-tick.C:
		}
	}
	cancel()
	wwg.Wait()

	total := newStats()
	for _, s := range writerStats {
		total.merge(s)
	}
	for _, s := range watcherStats {
		total.merge(s)
	}
	due := expected.Load()
	total.requests[opWatch] = max(due, total.ok[opWatch])
	if missing := due - total.ok[opWatch]; missing > 0 {
		total.fail(watchKind, fmt.Sprintf("%d of %d events due never arrived within %v of the last put", missing, due, cfg.Timeout))
		total.errs[watchKind] = missing
	}
	end := writersDone
	if last := time.Unix(0, lastEvent.Load()); last.After(end) {
		end = last
	}
	return total, end.Sub(b.start), nil
}
