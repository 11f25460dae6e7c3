// Package failpoint injects I/O failures at a few named places of metcd's
// write path, for fault tests against real processes. It has no
// dependencies and does nothing unless the METCD_FAILPOINTS environment
// variable is set when the process starts: the variable is read once, at
// init, and an unarmed Inject is one atomic load.
//
// # Failpoints
//
//	wal-save       consensus.Disk.Save, before entries and the hard state are appended to the WAL
//	snap-save      consensus.Disk.SaveSnap, before a raft snapshot file is written
//	state-save     consensus.Disk.SaveStateFrom, before a state stream (snap/*.snap.db) is written
//	engine-commit  kvstore.Txn.Commit, before a Ready's batch is committed to the engine
//
// An injected failure is an error that reads
//
//	failpoint wal-save: injected I/O error (ENOSPC)
//
// and wraps the errno (errors.Is(err, syscall.ENOSPC) holds), so the
// ordinary error path of the call site runs, as it would for a full or
// failing disk.
//
// # Syntax
//
//	METCD_FAILPOINTS="<name>=<term>[;<name>=<term>...]"
//
// A term is zero or more modifiers followed by an action:
//
//	error            fail with ENOSPC
//	error(<errno>)   fail with ENOSPC, EIO, EROFS or EDQUOT
//	off              never fail (the same as leaving the name out)
//
//	after(<n>)       let the first n evaluations pass, then act
//	<n>*             act at most n times, then pass again
//	file(<path>)     act only while <path> exists: a test arms the
//	                 failpoint of a running process by creating the file
//
// Modifiers combine in any order; evaluations that file() lets pass are
// not counted by after(). Examples:
//
//	METCD_FAILPOINTS="wal-save=error"                    every WAL append fails
//	METCD_FAILPOINTS="wal-save=after(50)error(EIO)"      the 51st append and every later one fail with EIO
//	METCD_FAILPOINTS="engine-commit=1*error"             only the first engine commit fails
//	METCD_FAILPOINTS="wal-save=file(/tmp/m1-fail)error;snap-save=error"
//
// A malformed value or an unknown name is a programming error in a test:
// the process stops at start-up (init panics) with a message saying what
// is wrong, instead of running with the failpoint silently unarmed. A
// process that armed failpoints says so once on stderr.
//
// Unit tests in one process arm failpoints with Enable.
package failpoint
