package enginetest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metcd/metcd/storage"
)

// skipUnlessDurable opens the engine once to ask whether it is durable.
func skipUnlessDurable(t *testing.T, f Factory) {
	t.Helper()
	e := f.Open(t, t.TempDir())
	durable := e.Durable()
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !durable {
		t.Skipf("%s is not durable", f.Name)
	}
}

// testReopen writes, closes and reopens twice, checking the content each
// time and that a reopened engine accepts writes.
func testReopen(t *testing.T, f Factory) {
	skipUnlessDurable(t, f)
	dir := t.TempDir()
	m := model{}
	key := func(i int) []byte { return fmt.Appendf(nil, "reopen/%05d", i) }

	e := openDir(t, f, dir)
	for n := range 10 {
		commit(t, e, false, func(b storage.Batch) {
			for i := n * 100; i < (n+1)*100; i++ {
				m[string(key(i))] = fmt.Appendf(nil, "gen1-%d", i)
				b.Put(key(i), m[string(key(i))])
			}
			for i := n * 100; i < (n+1)*100; i += 7 {
				delete(m, string(key(i)))
				b.Delete(key(i))
			}
		})
	}
	if err := e.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	commit(t, e, true, func(b storage.Batch) {
		m["meta"] = []byte("synced")
		b.Put([]byte("meta"), m["meta"])
	})
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for gen := 2; gen <= 3; gen++ {
		e = openDir(t, f, dir)
		if err := checkModel(e, m, storage.IterOptions{}); err != nil {
			t.Fatalf("after reopen %d: %v", gen-1, err)
		}
		if st, err := e.Stats(); err != nil {
			t.Fatalf("Stats: %v", err)
		} else if st.Keys != -1 && st.Keys != int64(len(m)) {
			t.Errorf("after reopen Stats.Keys = %d, want %d", st.Keys, len(m))
		}
		commit(t, e, true, func(b storage.Batch) {
			for i := gen; i < 1200; i += 3 {
				if i%2 == 0 {
					delete(m, string(key(i)))
					b.Delete(key(i))
				} else {
					m[string(key(i))] = fmt.Appendf(nil, "gen%d-%d", gen, i)
					b.Put(key(i), m[string(key(i))])
				}
			}
		})
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	e = openDir(t, f, dir)
	if err := checkModel(e, m, storage.IterOptions{}); err != nil {
		t.Fatalf("final reopen: %v", err)
	}
}

// The crash test runs its writer in a child process: the test binary
// re-executed with -test.run narrowed to the crash subtest and crashEnv
// naming the data directory. The child commits numbered batches until the
// parent kills it with SIGKILL; the parent then reopens the directory and
// checks that the state is exactly that after some whole batch.
const (
	crashEnv    = "METCD_ENGINETEST_CRASH_DIR"
	crashSynced = "enginetest-synced "
	crashRounds = 5
	crashSlots  = 50  // data keys, overwritten round-robin
	crashLogLen = 100 // log keys kept; older ones are deleted
	crashSyncEv = 16  // every crashSyncEv-th batch is committed with sync
)

var crashApplied = []byte("crash/applied")

func crashSlotKey(j uint64) []byte { return fmt.Appendf(nil, "crash/data/%02d", j) }

func crashLogKey(i uint64) []byte { return binary.BigEndian.AppendUint64([]byte("crash/log/"), i) }

// crashPayload is batch i's value for its data key: large and of varying
// size, so a batch spans several pages or blocks of the engine's files.
func crashPayload(i uint64) []byte {
	n := 512 + int(i%7)*256
	return bytes.Repeat(binary.BigEndian.AppendUint64(nil, i), n/8)
}

func testCrash(t *testing.T, f Factory) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(t, f, dir) // never returns
	}
	if testing.Short() {
		t.Skip("crash test skipped in short mode")
	}
	skipUnlessDurable(t, f)
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	dir := t.TempDir()
	var synced uint64
	for round := 1; round <= crashRounds; round++ {
		synced = crashRound(t, exe, dir, synced)
		e := openDir(t, f, dir)
		applied, err := verifyCrashState(e, synced)
		if err != nil {
			t.Fatalf("round %d after SIGKILL: %v", round, err)
		}
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		t.Logf("round %d: killed after batch %d was synced, recovered at batch %d", round, synced, applied)
	}
}

// runPattern is a -test.run pattern matching exactly the test t.
func runPattern(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// crashRound runs the child until it has synced at least 2*crashSyncEv
// more batches, kills it at a random moment after that, and returns the
// highest batch the child reported as synced.
func crashRound(t *testing.T, exe, dir string, synced uint64) uint64 {
	t.Helper()
	cmd := exec.Command(exe, "-test.run="+runPattern(t), "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting crash child: %v", err)
	}
	var last atomic.Uint64
	last.Store(synced)
	eof := make(chan struct{})
	var childOut bytes.Buffer // what the child printed besides progress
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, crashSynced); ok {
				if i, err := strconv.ParseUint(n, 10, 64); err == nil {
					last.Store(i)
					continue
				}
			}
			childOut.WriteString(line + "\n")
		}
	}()

	target := synced + 2*crashSyncEv
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for last.Load() < target {
		select {
		case <-eof:
			err := cmd.Wait()
			t.Fatalf("crash child exited before being killed (%v)\nstdout:\n%s\nstderr:\n%s", err, childOut.String(), stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			<-eof
			cmd.Wait()
			t.Fatalf("crash child made no progress past batch %d\nstderr:\n%s", last.Load(), stderr.String())
		case <-tick.C:
		}
	}
	// A random delay makes the kill land at different points of a commit.
	time.Sleep(time.Duration(rand.IntN(20_000)) * time.Microsecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("killing crash child: %v", err)
	}
	<-eof
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Exited() {
		t.Fatalf("crash child was not killed by a signal: %v\nstderr:\n%s", err, stderr.String())
	}
	return last.Load()
}

// crashChild is the child side: it resumes after the last applied batch
// and commits until killed.
func crashChild(t *testing.T, f Factory, dir string) {
	e := f.Open(t, dir)
	var i uint64
	switch v, err := e.Get(crashApplied); {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		fmt.Fprintf(os.Stderr, "crash child: reading applied index: %v\n", err)
		os.Exit(2)
	default:
		i = binary.BigEndian.Uint64(v)
	}
	for {
		i++
		b := e.NewBatch()
		b.Put(crashApplied, binary.BigEndian.AppendUint64(nil, i))
		b.Put(crashSlotKey(i%crashSlots), crashPayload(i))
		b.Put(crashLogKey(i), binary.BigEndian.AppendUint64(nil, i))
		if i > crashLogLen {
			b.Delete(crashLogKey(i - crashLogLen))
		}
		sync := i%crashSyncEv == 0
		if err := b.Commit(sync); err != nil {
			fmt.Fprintf(os.Stderr, "crash child: committing batch %d: %v\n", i, err)
			os.Exit(2)
		}
		if sync {
			// os.Stdout is unbuffered, so the parent learns of the sync
			// before the next batch starts.
			fmt.Fprintf(os.Stdout, "%s%d\n", crashSynced, i)
		}
	}
}

// verifyCrashState checks that the engine holds exactly the state after
// batch "applied", for an applied index of at least synced, and returns
// that index.
func verifyCrashState(e storage.Engine, synced uint64) (uint64, error) {
	v, err := e.Get(crashApplied)
	if err != nil {
		return 0, fmt.Errorf("reading applied index: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("applied index is %q, want 8 bytes", v)
	}
	a := binary.BigEndian.Uint64(v)
	if a < synced {
		return a, fmt.Errorf("applied index %d is behind batch %d, which was committed with sync", a, synced)
	}
	for j := range uint64(crashSlots) {
		// The last batch at or before a that wrote slot j.
		key := crashSlotKey(j)
		got, err := e.Get(key)
		if a < j || (j == 0 && a < crashSlots) {
			if !errors.Is(err, storage.ErrNotFound) {
				return a, fmt.Errorf("at applied %d, Get(%q) = %d bytes, %v; want ErrNotFound", a, key, len(got), err)
			}
			continue
		}
		want := a - (a-j)%crashSlots
		if err != nil {
			return a, fmt.Errorf("at applied %d, Get(%q): %w", a, key, err)
		}
		if !bytes.Equal(got, crashPayload(want)) {
			return a, fmt.Errorf("at applied %d, %q holds %d bytes not from batch %d: partial batch", a, key, len(got), want)
		}
	}
	logs, err := scan(e, prefixRange("crash/log/"))
	if err != nil {
		return a, err
	}
	from := uint64(1)
	if a > crashLogLen {
		from = a - crashLogLen + 1
	}
	if uint64(len(logs)) != a-from+1 {
		return a, fmt.Errorf("at applied %d, %d log keys, want %d (batches %d..%d): partial batch", a, len(logs), a-from+1, from, a)
	}
	for n, p := range logs {
		if want := crashLogKey(from + uint64(n)); !bytes.Equal(p.k, want) {
			return a, fmt.Errorf("at applied %d, log key %d is %q, want %q", a, n, p.k, want)
		}
	}
	return a, nil
}
