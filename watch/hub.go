package watch

import (
	"bytes"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
)

// History is what the hub needs from the MVCC store.
type History interface {
	// Events calls fn for each event with mod_revision >= from (and <= the
	// store's current revision) on keys in [key, end), in revision order,
	// until fn returns false. end follows etcd's range_end rules: empty is
	// the single key, "\x00" every key >= key. A PUT event carries the
	// written KeyValue, a DELETE event the key and its mod_revision; both
	// carry PrevKv (nil when the key did not exist before or its previous
	// version is compacted). The hub never mutates the events.
	//
	// It fails with an error that errors.Is ErrCompacted when the events
	// from revision from are no longer available. The hub does not deliver
	// any event of a call that fails, so an implementation may notice the
	// compaction after having called fn.
	Events(from int64, key, end []byte, fn func(ev *mvccpb.Event) bool) error
	// CompactRevision returns the revision of the latest compaction, which
	// a watcher canceled for compaction is told as compact_revision.
	CompactRevision() int64
}

var (
	// ErrCompacted is etcd's mvcc.ErrCompacted, the error History returns
	// for a compacted start revision.
	ErrCompacted = etcdmvcc.ErrCompacted
	// ErrClosed is returned by Watch once the hub is closed.
	ErrClosed = errors.New("watch: hub closed")
	// ErrEmptyRange is etcd's answer to a range_end not above key.
	ErrEmptyRange = etcdmvcc.ErrEmptyWatcherRange
	// ErrInvalidRevision is returned for a negative start_revision.
	ErrInvalidRevision = errors.New("watch: negative start revision")
)

// Options tunes a Hub. The zero value gives etcd's defaults.
type Options struct {
	// BufferSize is how many responses a watcher's channel holds before the
	// watcher is considered slow (default 128, etcd's chanBufLen).
	BufferSize int
	// MaxRevsPerBatch bounds the number of revisions in one catch-up
	// response (default 1000, etcd's watchBatchMaxRevs).
	MaxRevsPerBatch int
	// MaxBatchBytes bounds the size of the events of one catch-up
	// response: it ends at the first revision boundary past it (default
	// 8 MiB). Each catching-up watcher reads history on its own, so
	// without it every one could hold a copy of a history of large values.
	MaxBatchBytes int
	// SyncInterval is how often watchers that are behind (or whose channel
	// was full) are retried (default 100ms).
	SyncInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.BufferSize <= 0 {
		o.BufferSize = 128
	}
	if o.MaxRevsPerBatch <= 0 {
		o.MaxRevsPerBatch = 1000
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 8 << 20
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 100 * time.Millisecond
	}
	return o
}

// InvalidWatchID is the watch id of a progress response that speaks for
// every watcher of a stream (clientv3.InvalidWatchID; see
// Stream.RequestProgress).
const InvalidWatchID = -1

// Hub fans the events of committed revisions out to watchers. See the
// package documentation for the design.
type Hub struct {
	hist History
	opts Options

	kick chan struct{} // wakes the sync loop; capacity 1
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	rev    int64 // last revision passed to Notify (or given to NewHub)
	closed bool
	nextID int64
	// synced watchers, reached by Notify: single keys by key, ranges in a set.
	keys   map[string]map[*Watcher]struct{}
	ranges map[*Watcher]struct{}
	// unsynced watchers, served by the sync loop from History.
	unsynced map[*Watcher]struct{}
	streams  map[*Stream]struct{} // open streams, closed with the hub
	// prevWatchers counts the watchers of either group that ask for
	// prev_kv (Interest).
	prevWatchers int
}

// NewHub returns a hub whose store is at currentRev and starts its
// background loop. Close stops it.
func NewHub(h History, currentRev int64, opts Options) *Hub {
	hub := &Hub{
		hist:     h,
		opts:     opts.withDefaults(),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		rev:      currentRev,
		keys:     make(map[string]map[*Watcher]struct{}),
		ranges:   make(map[*Watcher]struct{}),
		unsynced: make(map[*Watcher]struct{}),
		streams:  make(map[*Stream]struct{}),
	}
	hub.wg.Add(1)
	go hub.loop()
	return hub
}

// Rev returns the last revision the hub was notified of: the header
// revision of a created response.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

type state int

const (
	stateSynced state = iota
	stateUnsynced
	stateDone
)

// Watcher is one watch. Its responses arrive in revision order, on C for
// a watcher made by Hub.Watch, on its stream's queue for one made by
// Stream.Watch.
type Watcher struct {
	hub *Hub
	id  int64
	s   *Stream // nil: the watcher has its own channel ch

	key      []byte
	end      []byte // as History takes it: nil single key, "\x00" from key
	fromKey  bool
	noPut    bool
	noDelete bool
	prevKV   bool
	progress bool
	fragment bool
	startRev int64
	// createdRev is the hub's revision when the watcher was made: a
	// watch from "now" gets only events above it.
	createdRev int64

	ch chan *pb.WatchResponse // nil for a stream's watcher

	// guarded by hub.mu
	state     state
	minRev    int64 // the next revision this watcher has to receive
	compacted int64 // != 0: a compaction cancel waits for room in ch
	sent      bool  // a response was sent since the last progress tick
	// batchBytes is the size of the last catch-up response's events (a
	// stream keeps its own).
	batchBytes int
}

// eventBytes is about the memory an event holds: its keys and values,
// plus a little for the rest.
func eventBytes(ev *mvccpb.Event) int {
	n := 64 + len(ev.GetKv().GetKey()) + len(ev.GetKv().GetValue())
	if p := ev.GetPrevKv(); p != nil {
		n += 64 + len(p.GetKey()) + len(p.GetValue())
	}
	return n
}

// maxQueuedBatchBytes bounds what catch-up responses a watcher's channel
// holds, estimated from the last one's size: a reader that does not keep
// up stops the catch-up there, and does not make the hub read history
// ahead into memory.
const maxQueuedBatchBytes = 8 << 20

// ID returns the watch id.
func (w *Watcher) ID() int64 { return w.id }

// CreatedRev is the hub's revision when the watcher was made, the
// revision of its created response: a watcher from revision 0 gets only
// events above it (etcd's header is the store's revision, and its start
// the next one).
func (w *Watcher) CreatedRev() int64 { return w.createdRev }

// Fragment reports whether the watcher asked for fragmented responses
// (see Fragments).
func (w *Watcher) Fragment() bool { return w.fragment }

// C returns the responses of a watcher made by Hub.Watch (nil for a
// stream's): event batches (Header.Revision is the
// hub's revision when the batch was made), progress notifications (no
// events), and at most one final compaction cancel (Canceled, with
// CompactRevision). It is closed after Cancel, Close or the compaction
// cancel. Responses and their events are shared with other watchers and
// must not be modified, except that the receiver owns Header.
func (w *Watcher) C() <-chan *pb.WatchResponse { return w.ch }

// Cancel stops the watcher and closes its channel (responses already in
// it stay readable). It is idempotent. A stream's watcher is canceled
// with Stream.Cancel.
func (w *Watcher) Cancel() {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finish(w)
}

func (w *Watcher) matches(k []byte) bool {
	if bytes.Compare(k, w.key) < 0 {
		return false
	}
	return w.fromKey || bytes.Compare(k, w.end) < 0
}

// shape applies the watcher's filters and prev_kv choice to one event; nil
// means filtered out.
func (w *Watcher) shape(ev *mvccpb.Event) *mvccpb.Event {
	switch ev.Type {
	case mvccpb.Event_PUT:
		if w.noPut {
			return nil
		}
	case mvccpb.Event_DELETE:
		if w.noDelete {
			return nil
		}
	}
	if !w.prevKV && ev.PrevKv != nil {
		return &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
	}
	return ev
}

// Watch creates a watcher with its own channel. start_revision 0 (or
// above the current revision) watches from the next revision; a start
// revision at or below the current one first catches up from History. A
// non-zero watch_id is used as is (the caller keeps ids unique); zero lets
// the hub pick one unique on the hub.
func (h *Hub) Watch(req *pb.WatchCreateRequest) (*Watcher, error) {
	w, err := h.newWatcher(req)
	if err != nil {
		return nil, err
	}
	w.ch = make(chan *pb.WatchResponse, h.opts.BufferSize)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if req.WatchId != 0 {
		w.id = req.WatchId
	} else {
		h.nextID++
		w.id = h.nextID
	}
	h.register(w)
	return w, nil
}

// newWatcher checks req and returns its watcher, not yet registered.
func (h *Hub) newWatcher(req *pb.WatchCreateRequest) (*Watcher, error) {
	if req.StartRevision < 0 {
		return nil, ErrInvalidRevision
	}
	w := &Watcher{
		hub:      h,
		key:      bytes.Clone(req.Key),
		prevKV:   req.PrevKv,
		progress: req.ProgressNotify,
		fragment: req.Fragment,
		startRev: req.StartRevision,
	}
	if w.key == nil {
		w.key = []byte{}
	}
	switch {
	case len(req.RangeEnd) == 0:
	case len(req.RangeEnd) == 1 && req.RangeEnd[0] == 0:
		w.fromKey = true
		w.end = []byte{0}
	default:
		if bytes.Compare(req.Key, req.RangeEnd) >= 0 {
			return nil, ErrEmptyRange
		}
		w.end = bytes.Clone(req.RangeEnd)
	}
	for _, f := range req.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	return w, nil
}

// register puts a new watcher in the synced or the unsynced group. h.mu
// held.
func (h *Hub) register(w *Watcher) {
	w.createdRev = h.rev
	if w.prevKV {
		h.prevWatchers++
	}
	if w.startRev == 0 || w.startRev > h.rev {
		w.minRev = max(h.rev+1, w.startRev)
		h.addSynced(w)
		return
	}
	w.minRev = w.startRev
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
	h.wake()
}

func (h *Hub) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// addSynced, removeSynced, finish: h.mu held.
func (h *Hub) addSynced(w *Watcher) {
	w.state = stateSynced
	if w.end == nil {
		set := h.keys[string(w.key)]
		if set == nil {
			set = make(map[*Watcher]struct{})
			h.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	h.ranges[w] = struct{}{}
}

func (h *Hub) removeSynced(w *Watcher) {
	if w.end == nil {
		set := h.keys[string(w.key)]
		delete(set, w)
		if len(set) == 0 {
			delete(h.keys, string(w.key))
		}
		return
	}
	delete(h.ranges, w)
}

func (h *Hub) finish(w *Watcher) {
	switch w.state {
	case stateDone:
		return
	case stateSynced:
		h.removeSynced(w)
	case stateUnsynced:
		delete(h.unsynced, w)
	}
	if w.prevKV {
		h.prevWatchers--
	}
	w.state = stateDone
	if w.s != nil {
		w.s.ended(w)
		return
	}
	close(w.ch)
}

// full reports whether w's queue has no room for another response of the
// hub's. h.mu held.
func (w *Watcher) full() bool {
	if w.s != nil {
		return w.s.queued() >= w.hub.opts.BufferSize
	}
	return len(w.ch) == cap(w.ch)
}

// put queues resp for w if there is room. h.mu held.
func (w *Watcher) put(resp *pb.WatchResponse) bool {
	if w.s != nil {
		return w.s.offer(w, resp, w.hub.opts.BufferSize)
	}
	select {
	case w.ch <- resp:
		return true
	default:
		return false
	}
}

// backlogTooBig reports whether the catch-up responses queued ahead of
// w's next one hold about maxQueuedBatchBytes already, estimated from the
// last one's size. h.mu held.
func (w *Watcher) backlogTooBig() bool {
	if w.s != nil {
		return w.s.queued()*w.s.batchBytes >= maxQueuedBatchBytes
	}
	return len(w.ch)*w.batchBytes >= maxQueuedBatchBytes
}

// noteBatch records the size of a catch-up response queued for w. h.mu
// held.
func (w *Watcher) noteBatch(size int) {
	if w.s != nil {
		w.s.batchBytes = size
		return
	}
	w.batchBytes = size
}

// Notify hands the hub the events of the write transaction that committed
// revision rev, in order. The apply loop calls it once per revision, in
// revision order, after the revision is readable through History; a
// revision not above the last one notified is ignored. It never blocks on
// a watcher: a watcher whose channel is full is moved to catch-up and
// reads this revision from History later.
func (h *Hub) Notify(rev int64, evs []*mvccpb.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notify(rev, evs)
}

// Interest reports, in one hold of the hub's lock, whether any watcher
// exists and whether one asks for prev_kv. The apply loop reads a batch's
// events only if one exists, and each event's previous version (a read of
// the key's prior record, seconds for a delete of 500k keys) only if one
// asks for it. It then hands them over with NotifyBatch.
func (h *Hub) Interest() (watching, prevKV bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watching(), h.prevWatchers > 0
}

// NotifyBatch hands the hub the committed revisions first..last, read as
// Interest asked: revs holds the events of first, first+1, ..., with
// PrevKv if withPrev, or is empty if they were not read. If they do not
// serve the watchers that exist now, because one made since Interest
// answered needs events that were not read or their PrevKv, it does
// nothing and reports false: the caller reads them again, as the watchers
// now need them, and hands them over again. A watcher that needs them
// stays synced that way, as etcd keeps one created with
// start_revision 0, so a compaction right after cannot cancel it (it
// could, had it been sent to read them from History). The check and the
// hand-over are one step under the hub's lock, so no watcher is made
// between them, and one made afterwards starts after last.
func (h *Hub) NotifyBatch(first, last int64, revs [][]*mvccpb.Event, withPrev bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || last <= h.rev {
		return true
	}
	if int64(len(revs)) < last-first+1 && h.expectsBy(last) {
		return false
	}
	if !withPrev && h.prevWatchers > 0 {
		return false
	}
	for i, evs := range revs {
		h.notify(first+int64(i), evs)
	}
	h.advance(last)
	return true
}

// expectsBy reports whether a synced watcher expects a revision at or
// below rev. With h.mu held.
func (h *Hub) expectsBy(rev int64) bool {
	for _, set := range h.keys {
		for w := range set {
			if w.minRev <= rev {
				return true
			}
		}
	}
	for w := range h.ranges {
		if w.minRev <= rev {
			return true
		}
	}
	return false
}

// minSortedEvents is the number of events in a revision from which Notify
// sorts them by key for its range watchers.
const minSortedEvents = 64

// notify is Notify with h.mu held.
func (h *Hub) notify(rev int64, evs []*mvccpb.Event) {
	if h.closed || rev <= h.rev {
		return
	}
	h.rev = rev
	if len(h.keys) == 0 && len(h.ranges) == 0 {
		return
	}
	var order []*Watcher
	batches := make(map[*Watcher][]*mvccpb.Event)
	add := func(w *Watcher, ev *mvccpb.Event) {
		if w.minRev > rev {
			return
		}
		if ev = w.shape(ev); ev == nil {
			return
		}
		b, ok := batches[w]
		if !ok {
			order = append(order, w)
		}
		batches[w] = append(b, ev)
	}
	// Range watchers find a large revision's events through the events
	// sorted by key rather than by testing each event.
	sorted := len(h.ranges) > 0 && len(evs) >= minSortedEvents
	var valid []*mvccpb.Event
	for _, ev := range evs {
		if ev == nil || ev.Kv == nil {
			continue
		}
		for w := range h.keys[string(ev.Kv.Key)] {
			add(w, ev)
		}
		if sorted {
			valid = append(valid, ev)
			continue
		}
		for w := range h.ranges {
			if w.matches(ev.Kv.Key) {
				add(w, ev)
			}
		}
	}
	if sorted {
		byKey := newKeyOrder(valid)
		for w := range h.ranges {
			for _, ev := range byKey.in(w) {
				if w.matches(ev.Kv.Key) {
					add(w, ev)
				}
			}
		}
	}
	for _, w := range order {
		resp := &pb.WatchResponse{
			Header:  &pb.ResponseHeader{Revision: rev},
			WatchId: w.id,
			Events:  batches[w],
		}
		if w.put(resp) {
			w.sent = true
			w.minRev = rev + 1
			continue
		}
		// Slow watcher: it reads rev and later from History.
		h.removeSynced(w)
		w.state = stateUnsynced
		w.minRev = rev
		h.unsynced[w] = struct{}{}
		h.wake()
	}
}

// Watching reports whether any watcher exists.
func (h *Hub) Watching() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watching()
}

// watching is Watching with h.mu held.
func (h *Hub) watching() bool {
	return len(h.keys) > 0 || len(h.ranges) > 0 || len(h.unsynced) > 0
}

// Advance tells the hub that the store reached rev (committed, readable
// through History) without handing it the events: after a snapshot
// install, or when the apply loop could not read them. Every synced
// watcher that still expects one of those revisions moves to catch-up and
// reads them from History, or is canceled as compacted if they are gone,
// as etcd's watchable store does on restore.
func (h *Hub) Advance(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || rev <= h.rev {
		return
	}
	h.advance(rev)
}

// advance is Advance with h.mu held.
func (h *Hub) advance(rev int64) {
	if rev <= h.rev {
		return
	}
	var moved bool
	move := func(w *Watcher) {
		if w.minRev > rev {
			return
		}
		h.removeSynced(w)
		w.state = stateUnsynced
		h.unsynced[w] = struct{}{}
		moved = true
	}
	for _, set := range h.keys {
		for w := range set {
			move(w)
		}
	}
	for w := range h.ranges {
		move(w)
	}
	h.rev = rev
	if moved {
		h.wake()
	}
}

// loop is the background goroutine: catch-up of unsynced watchers.
func (h *Hub) loop() {
	defer h.wg.Done()
	syncT := time.NewTicker(h.opts.SyncInterval)
	defer syncT.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-h.kick:
		case <-syncT.C:
		}
		for h.syncPass() {
			select {
			case <-h.done:
				return
			default:
			}
		}
	}
}

// sendCompacted delivers the compaction cancel if there is room and ends
// the watcher; otherwise it is retried on the next tick. As in etcd, its
// header carries revision 0: the cancel reports no revision of the store.
// h.mu held.
func (h *Hub) sendCompacted(w *Watcher) {
	resp := &pb.WatchResponse{
		Header:          &pb.ResponseHeader{},
		WatchId:         w.id,
		Canceled:        true,
		CompactRevision: w.compacted,
	}
	if w.put(resp) {
		h.finish(w)
	}
}

// progress sends w a progress notification at the hub's revision if w is
// synced, not waiting for a future start revision, and has room. h.mu held.
func (h *Hub) progress(w *Watcher, id int64) bool {
	if w.state != stateSynced || h.rev < w.startRev {
		return false
	}
	return w.put(&pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: id})
}

// ProgressTick ends a period of w's progress notifications, which the
// caller times (etcd times them per watch stream): a watcher created with
// progress_notify that got no response during the period gets a progress
// notification, as RequestProgress sends it. Watchers without
// progress_notify are left alone.
func (w *Watcher) ProgressTick() {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tick(w)
}

// tick is ProgressTick with h.mu held.
func (h *Hub) tick(w *Watcher) {
	if !w.progress {
		return
	}
	if !w.sent {
		h.progress(w, w.id)
	}
	w.sent = false
}

// RequestProgress sends w a progress notification (no events, header
// revision = the hub's revision, which every later event exceeds). Like
// etcd it does nothing for a watcher that is catching up (its events come
// soon) and reports false then, or when w's channel is full.
func (w *Watcher) RequestProgress() bool {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.progress(w, w.id)
}

// Close stops the hub: every watcher's channel is closed, Watch fails with
// ErrClosed and Notify does nothing.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	var all []*Watcher
	for _, set := range h.keys {
		for w := range set {
			all = append(all, w)
		}
	}
	for w := range h.ranges {
		all = append(all, w)
	}
	for w := range h.unsynced {
		all = append(all, w)
	}
	for _, w := range all {
		h.finish(w)
	}
	for st := range h.streams {
		st.shut()
	}
	h.mu.Unlock()
	h.wg.Wait()
}
