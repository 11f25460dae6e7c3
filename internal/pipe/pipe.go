package pipe

import (
	"io"
	"sync"
)

// New returns the two ends of a pipe holding up to blocks buffers of
// blockSize bytes each, which is its read-ahead.
func New(blocks, blockSize int) (*Reader, *Writer) {
	if blocks < 1 {
		blocks = 1
	}
	if blockSize < 1 {
		blockSize = 1
	}
	p := &pipe{
		full:  make(chan []byte, blocks),
		free:  make(chan []byte, blocks+1),
		gone:  make(chan struct{}),
		size:  blockSize,
		limit: blocks + 1,
	}
	return &Reader{p: p}, &Writer{p: p}
}

// pipe is shared by the two ends. Filled blocks travel on full and come
// back empty on free; at most limit blocks are ever made, so free never
// fills up and the memory a pipe holds is bounded.
type pipe struct {
	full chan []byte
	free chan []byte
	size int

	// Owned by the writer.
	cur     []byte
	made    int
	limit   int
	wclosed bool

	// Owned by the reader.
	rcur []byte
	rbuf []byte // the block rcur points into, to recycle

	mu   sync.Mutex
	werr error // set before full is closed
	rerr error // set before gone is closed
	gone chan struct{}
	once sync.Once
}

// Writer is the writing end. One goroutine uses it.
type Writer struct{ p *pipe }

// Write copies b into the pipe, blocking while the pipe is full. It fails
// with the reader's error (io.ErrClosedPipe by default) once the reader has
// closed its end.
func (w *Writer) Write(b []byte) (int, error) {
	p := w.p
	if p.wclosed {
		return 0, io.ErrClosedPipe
	}
	select {
	case <-p.gone:
		return 0, p.readErr()
	default:
	}
	n := 0
	for len(b) > 0 {
		if p.cur == nil {
			blk, err := p.block()
			if err != nil {
				return n, err
			}
			p.cur = blk
		}
		c := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur = p.cur[:len(p.cur)+c]
		b = b[c:]
		n += c
		if len(p.cur) == cap(p.cur) {
			if err := p.send(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// block returns an empty block: a new one while fewer than limit exist,
// else one the reader gave back.
func (p *pipe) block() ([]byte, error) {
	select {
	case blk := <-p.free:
		return blk[:0], nil
	default:
	}
	if p.made < p.limit {
		p.made++
		return make([]byte, 0, p.size), nil
	}
	select {
	case blk := <-p.free:
		return blk[:0], nil
	case <-p.gone:
		return nil, p.readErr()
	}
}

// send queues the block being filled.
func (p *pipe) send() error {
	select {
	case p.full <- p.cur:
		p.cur = nil
		return nil
	case <-p.gone:
		return p.readErr()
	}
}

func (p *pipe) readErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rerr
}

// Close closes the writing end: the reader gets io.EOF once it has read
// everything written.
func (w *Writer) Close() error { return w.CloseWithError(nil) }

// CloseWithError closes the writing end: the reader gets err (io.EOF when
// nil) once it has read everything written. It waits while the pipe is full
// to queue the last block, unless the reader has gone. Later calls do
// nothing.
func (w *Writer) CloseWithError(err error) error {
	p := w.p
	if p.wclosed {
		return nil
	}
	p.wclosed = true
	if err == nil {
		err = io.EOF
	}
	if len(p.cur) > 0 {
		if serr := p.send(); serr != nil {
			err = serr
		}
	}
	p.mu.Lock()
	p.werr = err
	p.mu.Unlock()
	close(p.full)
	return nil
}

// Reader is the reading end. One goroutine uses it.
type Reader struct{ p *pipe }

// Read reads what the writer wrote, blocking until there is some. After
// the writer has closed and everything is read it returns the writer's
// error, io.EOF for a plain Close.
func (r *Reader) Read(b []byte) (int, error) {
	p := r.p
	select {
	case <-p.gone:
		return 0, p.readErr()
	default:
	}
	if len(b) == 0 {
		return 0, nil
	}
	for len(p.rcur) == 0 {
		if p.rbuf != nil {
			p.free <- p.rbuf // never blocks: free has room for every block made
			p.rbuf = nil
		}
		select {
		case blk, ok := <-p.full:
			if !ok {
				p.mu.Lock()
				defer p.mu.Unlock()
				return 0, p.werr
			}
			p.rbuf, p.rcur = blk, blk
		case <-p.gone:
			return 0, p.readErr()
		}
	}
	n := copy(b, p.rcur)
	p.rcur = p.rcur[n:]
	return n, nil
}

// Close closes the reading end: the writer's next write fails with
// io.ErrClosedPipe, and so do later reads. It may be called while a Read or
// Write is blocked, from another goroutine, and unblocks it.
func (r *Reader) Close() error { return r.CloseWithError(nil) }

// CloseWithError closes the reading end: the writer's next write fails
// with err (io.ErrClosedPipe when nil). Later calls do nothing.
func (r *Reader) CloseWithError(err error) error {
	p := r.p
	if err == nil {
		err = io.ErrClosedPipe
	}
	p.once.Do(func() {
		p.mu.Lock()
		p.rerr = err
		p.mu.Unlock()
		close(p.gone)
	})
	return nil
}
