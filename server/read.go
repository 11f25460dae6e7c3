package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"
)

// readBatch is one ReadIndex round shared by every linearizable read that
// arrived before it started.
type readBatch struct {
	done chan struct{}
	err  error // set before done is closed
}

func newReadBatch() *readBatch { return &readBatch{done: make(chan struct{})} }

// readRetry is how long to wait for a ReadIndex answer before asking again:
// raft drops requests silently while leadership is in flux.
const readRetry = 300 * time.Millisecond

// LinearizableRead returns once this member's state reflects every write
// that completed before the call: the read that follows is linearizable.
func (s *Server) LinearizableRead(ctx context.Context) error {
	s.readMu.Lock()
	b := s.readNext
	s.readMu.Unlock()
	select {
	case s.readwaitc <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return ErrStopped
	}
}

// readLoop serves read batches one ReadIndex round at a time. A read that
// arrives during a round joins the next one, so its index is requested
// after the read began.
func (s *Server) readLoop() {
	for {
		select {
		case <-s.readwaitc:
		case <-s.stopc:
			return
		}
		s.readMu.Lock()
		b := s.readNext
		s.readNext = newReadBatch()
		s.readMu.Unlock()

		deadline := time.Now().Add(s.cfg.RequestTimeout)
		idx, err := s.readIndex(deadline)
		if err == nil {
			err = s.waitApplied(idx, deadline)
		}
		b.err = err
		close(b.done)
	}
}

func (s *Server) readIndex(deadline time.Time) (uint64, error) {
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for {
		if err := s.waitLeader(deadline); err != nil {
			return 0, err
		}
		rctx := make([]byte, 8)
		binary.BigEndian.PutUint64(rctx, s.reqIDs.Next())
		changed := s.node.LeaderChanged()
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := s.node.ReadIndex(ctx, rctx)
		cancel()
		if err != nil {
			select {
			case <-s.stopc:
				return 0, ErrStopped
			default:
			}
			if time.Now().After(deadline) {
				return 0, s.noProgress(ErrReadTimeout)
			}
			continue
		}
		retry := time.NewTimer(readRetry)
	wait:
		for {
			select {
			case rs := <-s.node.ReadStates():
				if bytes.Equal(rs.RequestCtx, rctx) {
					retry.Stop()
					return rs.Index, nil
				}
				// An answer to an earlier, abandoned request.
			case <-changed:
				break wait
			case <-retry.C:
				break wait
			case <-timeout.C:
				retry.Stop()
				return 0, s.noProgress(ErrReadTimeout)
			case <-s.stopc:
				retry.Stop()
				return 0, ErrStopped
			}
		}
		retry.Stop()
	}
}

// noProgress picks the error that explains best why a request could not
// finish: no leader, or just slowness.
func (s *Server) noProgress(slow error) error {
	if s.node.Leader() == 0 {
		return ErrNoLeader
	}
	return slow
}

// waitLeader waits until a leader is known, at most LeaderWait and never
// past deadline.
func (s *Server) waitLeader(deadline time.Time) error {
	if s.node.Leader() != 0 {
		return nil
	}
	if d := time.Now().Add(s.cfg.LeaderWait); d.Before(deadline) {
		deadline = d
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for {
		changed := s.node.LeaderChanged()
		if s.node.Leader() != 0 {
			return nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return ErrNoLeader
		case <-s.stopc:
			return ErrStopped
		}
	}
}

func (s *Server) waitApplied(idx uint64, deadline time.Time) error {
	if s.store.Applied() >= idx {
		return nil
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	select {
	case <-s.appliedWait.Wait(idx):
		return nil
	case <-timeout.C:
		return s.noProgress(ErrReadTimeout)
	case <-s.stopc:
		return ErrStopped
	}
}

// ReadCheck reports whether this member can serve a read: a linearizable
// one first waits for a ReadIndex round, as a read does. It is the read of
// the health checks, which etcd makes below its learner refusal, so a
// learner is checked like any member (a learner's ReadIndex is served by
// the leader).
func (s *Server) ReadCheck(ctx context.Context, linearizable bool) error {
	if linearizable {
		if err := s.LinearizableRead(ctx); err != nil {
			return err
		}
	}
	_, err := s.keyCount() // a read of the engine
	return err
}
