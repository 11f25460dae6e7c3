package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func enable(t *testing.T, v string) {
	t.Helper()
	restore, err := Enable(v)
	if err != nil {
		t.Fatalf("Enable(%q): %v", v, err)
	}
	t.Cleanup(restore)
}

// pattern runs name n times and returns "x" for a failure, "." otherwise.
func pattern(t *testing.T, name string, n int) string {
	t.Helper()
	var b strings.Builder
	for range n {
		if err := Inject(name); err != nil {
			b.WriteByte('x')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func TestUnarmedIsNil(t *testing.T) {
	if os.Getenv(EnvVar) != "" {
		t.Skipf("%s is set in the test environment", EnvVar)
	}
	for _, n := range append(Names(), "no-such-point") {
		if err := Inject(n); err != nil {
			t.Fatalf("Inject(%q) unarmed = %v", n, err)
		}
	}
}

func TestTerms(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"wal-save=error", "xxxxxx"},
		{"wal-save=off", "......"},
		{"wal-save=after(2)error", "..xxxx"},
		{"wal-save=2*error", "xx...."},
		{"wal-save=after(1)2*error(EIO)", ".xx..."},
		{"wal-save=2*after(1)error", ".xx..."},
		{"engine-commit=error", "......"}, // another point
		{" wal-save = after(0)error ; ", "xxxxxx"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			enable(t, tc.value)
			if got := pattern(t, WALSave, 6); got != tc.want {
				t.Fatalf("pattern %s, want %s", got, tc.want)
			}
		})
	}
}

func TestErrorMessageAndErrno(t *testing.T) {
	enable(t, "wal-save=error;engine-commit=error(EIO)")
	err := Inject(WALSave)
	if err == nil || err.Error() != "failpoint wal-save: injected I/O error (ENOSPC)" {
		t.Fatalf("wal-save: %v", err)
	}
	if !errors.Is(err, syscall.ENOSPC) || !IsInjected(err) {
		t.Fatalf("wal-save error %v does not unwrap to ENOSPC", err)
	}
	err = Inject(EngineCommit)
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "engine-commit") || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("engine-commit: %v", err)
	}
	if IsInjected(errors.New("other")) {
		t.Fatal("IsInjected on a plain error")
	}
}

func TestFileTrigger(t *testing.T) {
	trigger := filepath.Join(t.TempDir(), "armed")
	enable(t, "snap-save=file("+trigger+")after(1)error")
	if got := pattern(t, SnapSave, 3); got != "..." {
		t.Fatalf("before the file exists: %s", got)
	}
	if err := os.WriteFile(trigger, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// after(1) counts only evaluations while the file exists.
	if got := pattern(t, SnapSave, 3); got != ".xx" {
		t.Fatalf("with the file: %s", got)
	}
	os.Remove(trigger)
	if got := pattern(t, SnapSave, 2); got != ".." {
		t.Fatalf("after removing the file: %s", got)
	}
}

func TestRejects(t *testing.T) {
	for _, v := range []string{
		"wal-save", "wal-save=", "=error", "nope=error", "wal-save=error;wal-save=off",
		"wal-save=fail", "wal-save=error(EAGAIN)", "wal-save=after(x)error", "wal-save=after(-1)error",
		"wal-save=after(1", "wal-save=0*error", "wal-save=after(1)after(2)error", "wal-save=file()error",
		"wal-save=error(EIO)x", "wal-save=2*3*error",
	} {
		if _, err := Enable(v); err == nil {
			t.Errorf("Enable(%q) accepted", v)
		}
	}
}

func TestRestore(t *testing.T) {
	restore, err := Enable("wal-save=error")
	if err != nil {
		t.Fatal(err)
	}
	inner, err := Enable("state-save=error")
	if err != nil {
		t.Fatal(err)
	}
	if Inject(WALSave) != nil || Inject(StateSave) == nil {
		t.Fatal("Enable does not replace the armed set")
	}
	inner()
	if Inject(WALSave) == nil || Inject(StateSave) != nil {
		t.Fatal("restore does not bring the previous set back")
	}
	restore()
	if os.Getenv(EnvVar) == "" && Inject(WALSave) != nil {
		t.Fatal("restore does not disarm")
	}
}

func TestConcurrentCount(t *testing.T) {
	enable(t, "engine-commit=after(10)5*error")
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fails int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if Inject(EngineCommit) != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if fails != 5 {
		t.Fatalf("%d failures, want 5", fails)
	}
}

// TestEnvAtInit runs this test binary again with METCD_FAILPOINTS set: a
// good value arms the point at init (and says so on stderr), a bad one
// stops the process at init with a message.
func TestEnvAtInit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		if err := Inject(WALSave); err == nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	run := func(value string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestEnvAtInit$")
		cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", EnvVar+"="+value)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("wal-save=error")
	if err != nil {
		t.Fatalf("child with a good value: %v\n%s", err, out)
	}
	if !strings.Contains(out, "failpoints armed from METCD_FAILPOINTS: wal-save=error") {
		t.Errorf("child did not announce the armed failpoints:\n%s", out)
	}
	out, err = run("wal-save=bogus")
	if err == nil {
		t.Fatalf("child with a bad value ran:\n%s", out)
	}
	if !strings.Contains(out, "METCD_FAILPOINTS") || !strings.Contains(out, "bogus") {
		t.Errorf("child with a bad value did not say why:\n%s", out)
	}
}

// BenchmarkInjectUnarmed is the cost on the write path when
// METCD_FAILPOINTS is not set: one atomic load.
func BenchmarkInjectUnarmed(b *testing.B) {
	if os.Getenv(EnvVar) != "" {
		b.Skipf("%s is set", EnvVar)
	}
	for range b.N {
		if Inject(WALSave) != nil {
			b.Fatal("armed")
		}
	}
}
