package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/metcd/metcd/internal/failpoint"
	"github.com/metcd/metcd/internal/fsutil"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Disk is the durable raft log of one member: a WAL directory and a
// snapshot directory. Its methods may be called from the Node goroutine
// and from the snapshotting goroutine at once; the WAL serializes them.
type Disk struct {
	lg      *zap.Logger
	walDir  string
	snapDir string
	w       *wal.WAL
	ss      *snap.Snapshotter
}

// Bootstrap is what a member finds on disk when it starts.
type Bootstrap struct {
	// Fresh is true when there was no WAL: the member has never run.
	Fresh bool
	// Metadata is the opaque blob given to OpenDisk when the WAL was made.
	Metadata []byte
	// Snapshot is the newest usable snapshot, or nil.
	Snapshot  *raftpb.Snapshot
	HardState *raftpb.HardState
	Entries   []*raftpb.Entry
}

// SnapshotIndex is the index of the bootstrap snapshot, 0 if none.
func (b *Bootstrap) SnapshotIndex() uint64 {
	if b.Snapshot == nil {
		return 0
	}
	return b.Snapshot.GetMetadata().GetIndex()
}

// OpenDisk opens (creating if needed) the WAL under dir/wal and the
// snapshots under dir/snap and reads back what they hold. metadata is
// written into a new WAL and returned from an existing one.
func OpenDisk(lg *zap.Logger, dir string, metadata []byte) (*Disk, *Bootstrap, error) {
	d := &Disk{lg: lg, walDir: filepath.Join(dir, "wal"), snapDir: filepath.Join(dir, "snap")}
	if err := fileutil.TouchDirAll(lg, d.snapDir); err != nil {
		return nil, nil, fmt.Errorf("consensus: create snapshot dir: %w", err)
	}
	d.ss = snap.New(lg, d.snapDir)

	if !wal.Exist(d.walDir) {
		w, err := wal.Create(lg, d.walDir, metadata)
		if err != nil {
			return nil, nil, fmt.Errorf("consensus: create WAL: %w", err)
		}
		d.w = w
		return d, &Bootstrap{Fresh: true, Metadata: metadata}, nil
	}

	walSnaps, err := wal.ValidSnapshotEntries(lg, d.walDir)
	if err != nil {
		return nil, nil, fmt.Errorf("consensus: scan WAL for snapshots: %w", err)
	}
	snapshot, err := d.ss.LoadNewestAvailable(walSnaps)
	if err != nil && !errors.Is(err, snap.ErrNoSnapshot) {
		return nil, nil, fmt.Errorf("consensus: load snapshot: %w", err)
	}
	b := &Bootstrap{Snapshot: snapshot}
	walsnap := &walpb.Snapshot{}
	if snapshot != nil {
		md := snapshot.GetMetadata()
		walsnap.Index, walsnap.Term, walsnap.ConfState = proto.Uint64(md.GetIndex()), proto.Uint64(md.GetTerm()), md.GetConfState()
	}
	// A torn last record (power lost mid-write) is cut off and the WAL read
	// again; any other damage stops the member.
	for repaired := false; ; repaired = true {
		w, err := wal.Open(lg, d.walDir, walsnap)
		if err != nil {
			return nil, nil, fmt.Errorf("consensus: open WAL: %w", err)
		}
		md, hs, ents, err := w.ReadAll()
		if err == nil {
			if gerr := checkContinuity(walsnap.GetIndex(), hs, ents); gerr != nil {
				w.Close()
				return nil, nil, fmt.Errorf("consensus: %w: the snapshot files in %s are damaged or missing; the member cannot rebuild its state", gerr, d.snapDir)
			}
			d.w = w
			b.Metadata, b.HardState, b.Entries = md, hs, ents
			return d, b, nil
		}
		w.Close()
		if repaired || !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fmt.Errorf("consensus: read WAL in %s: %w", d.walDir, err)
		}
		torn, terr := tornTail(d.walDir)
		if terr != nil {
			return nil, nil, fmt.Errorf("consensus: inspect damaged WAL in %s: %w", d.walDir, terr)
		}
		if !torn {
			return nil, nil, fmt.Errorf("consensus: WAL in %s is damaged before its end (not a torn last write); refusing to cut it: %w", d.walDir, err)
		}
		lg.Warn("WAL ends in a torn record; repairing", zap.String("dir", d.walDir))
		if !wal.Repair(lg, d.walDir) {
			return nil, nil, fmt.Errorf("consensus: repair WAL in %s: %w", d.walDir, err)
		}
	}
}

// tornTail reports whether the first undecodable record of the last WAL
// file is the trace of a write cut short, which wal.Repair may drop. The
// decoder says "unexpected EOF" both for that and for a damaged length
// field in the middle of the file. A torn write leaves either a zeroed
// sector inside a record that fits in the (preallocated) file, or a file
// that ends inside a record of plausible length; a record that claims more
// than a whole segment can hold was damaged, and cutting the WAL there
// would silently drop what follows it. (A damaged length that still looks
// plausible is not told apart here.)
func tornTail(walDir string) (bool, error) {
	names, err := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if err != nil || len(names) == 0 {
		return false, fmt.Errorf("no WAL files: %v", err)
	}
	sort.Strings(names)
	f, err := os.Open(names[len(names)-1])
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	dec := wal.NewDecoder(fileutil.NewFileReader(f))
	rec := &walpb.Record{}
	for {
		err = dec.Decode(rec)
		if err != nil {
			break
		}
		if rec.GetType() == wal.CrcType {
			dec.UpdateCRC(rec.GetCrc())
		}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	}
	off := dec.LastOffset()
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		// Not even a whole length field: cut short at the very end.
		return true, nil
	}
	lenField := binary.LittleEndian.Uint64(hdr[:])
	recBytes := int64(lenField &^ (uint64(0xff) << 56))
	if off+8+recBytes <= st.Size() {
		return true, nil
	}
	return recBytes <= wal.SegmentSizeBytes, nil
}

// Save appends entries and the hard state to the WAL and fsyncs it when
// raft says it must.
func (d *Disk) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	if err := failpoint.Inject(failpoint.WALSave); err != nil {
		return fmt.Errorf("consensus: save to WAL: %w", err)
	}
	if err := d.w.Save(hs, ents); err != nil {
		return fmt.Errorf("consensus: save to WAL: %w", err)
	}
	return nil
}

// SaveSnap writes the snapshot file and then its WAL record, in that order,
// so the WAL never names a snapshot that is not on disk.
func (d *Disk) SaveSnap(s *raftpb.Snapshot) error {
	md := s.GetMetadata()
	if err := failpoint.Inject(failpoint.SnapSave); err != nil {
		return fmt.Errorf("consensus: save snapshot %d: %w", md.GetIndex(), err)
	}
	if err := d.ss.SaveSnap(s); err != nil {
		return fmt.Errorf("consensus: save snapshot %d: %w", md.GetIndex(), err)
	}
	ws := &walpb.Snapshot{Index: proto.Uint64(md.GetIndex()), Term: proto.Uint64(md.GetTerm()), ConfState: md.GetConfState()}
	if err := d.w.SaveSnapshot(ws); err != nil {
		return fmt.Errorf("consensus: record snapshot %d in WAL: %w", md.GetIndex(), err)
	}
	return nil
}

// Sync flushes and fsyncs the WAL. Save syncs only when raft says it must,
// and raft does not count a commit-index change as a must.
func (d *Disk) Sync() error {
	if err := d.w.Sync(); err != nil {
		return fmt.Errorf("consensus: sync WAL: %w", err)
	}
	return nil
}

// Release lets WAL segments and state files older than the snapshot go.
func (d *Disk) Release(s *raftpb.Snapshot) error {
	if err := d.w.ReleaseLockTo(s.GetMetadata().GetIndex()); err != nil {
		return fmt.Errorf("consensus: release WAL: %w", err)
	}
	return nil
}

// Snapshotter exposes the snapshot directory to the transport, which saves
// incoming state streams there.
func (d *Disk) Snapshotter() *snap.Snapshotter { return d.ss }

// SnapDir and WALDir name the directories, for purging.
func (d *Disk) SnapDir() string { return d.snapDir }

// WALDir is the WAL directory.
func (d *Disk) WALDir() string { return d.walDir }

// Close closes the WAL.
func (d *Disk) Close() error { return d.w.Close() }

// StateFile is the path of the state stream saved with snapshot index i.
func (d *Disk) StateFile(i uint64) string {
	return filepath.Join(d.snapDir, fmt.Sprintf("%016x.snap.db", i))
}

// SaveStateFrom saves a state stream for snapshot index i atomically.
func (d *Disk) SaveStateFrom(r io.Reader, i uint64) (int64, error) {
	if err := failpoint.Inject(failpoint.StateSave); err != nil {
		return 0, fmt.Errorf("consensus: save state for snapshot %d: %w", i, err)
	}
	n, err := saveFile(d.snapDir, d.StateFile(i), r)
	if err != nil {
		return n, fmt.Errorf("consensus: save state for snapshot %d: %w", i, err)
	}
	return n, nil
}

// saveFile writes r to a temporary file in dir, fsyncs it, renames it to
// name and fsyncs dir. Unlike snap.Snapshotter.SaveDBFrom it starts the
// writeback of every few MiB as it goes: a state file can be hundreds of
// MiB, and leaving all of it dirty until the final fsync makes that fsync
// a burst of writes that the WAL's own fsyncs queue behind.
func saveFile(dir, name string, r io.Reader) (int64, error) {
	f, err := os.CreateTemp(dir, "state-*.tmp")
	if err != nil {
		return 0, err
	}
	w := &writebackWriter{f: f}
	n, err := io.Copy(w, r)
	if err == nil {
		err = fileutil.Fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
		return n, err
	}
	return n, fsutil.SyncDir(dir)
}

// OpenState opens the state stream saved for snapshot index i.
func (d *Disk) OpenState(i uint64) (*os.File, error) {
	f, err := os.Open(d.StateFile(i))
	if err != nil {
		return nil, fmt.Errorf("consensus: open state for snapshot %d: %w", i, err)
	}
	return f, nil
}

// NewMemoryStorage loads what Bootstrap found into raft's in-memory log.
func (b *Bootstrap) NewMemoryStorage() (*raft.MemoryStorage, error) {
	ms := raft.NewMemoryStorage()
	if b.Snapshot != nil {
		if err := ms.ApplySnapshot(b.Snapshot); err != nil {
			return nil, fmt.Errorf("consensus: load snapshot into raft log: %w", err)
		}
	}
	if b.HardState != nil {
		if err := ms.SetHardState(b.HardState); err != nil {
			return nil, fmt.Errorf("consensus: load hard state: %w", err)
		}
	}
	if err := ms.Append(b.Entries); err != nil {
		return nil, fmt.Errorf("consensus: load WAL entries into raft log: %w", err)
	}
	return ms, nil
}

// checkContinuity refuses a log that does not follow the snapshot it was
// opened at: entries that start later, or a commit index past the last
// entry. Both mean the snapshot the WAL was cut at is gone, and raft would
// otherwise panic on the hole.
func checkContinuity(snapIndex uint64, hs *raftpb.HardState, ents []*raftpb.Entry) error {
	if len(ents) > 0 && ents[0].GetIndex() != snapIndex+1 {
		return fmt.Errorf("WAL entries start at index %d, but the newest readable snapshot is at %d", ents[0].GetIndex(), snapIndex)
	}
	last := snapIndex + uint64(len(ents))
	if c := hs.GetCommit(); c > last {
		return fmt.Errorf("WAL commit index %d is past its last entry %d (newest readable snapshot at %d)", c, last, snapIndex)
	}
	return nil
}
