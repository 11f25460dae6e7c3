package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// etcdModule is the etcd server we compare with: the line metcd claims
// compatibility with. Its main package is the etcd binary.
const (
	etcdModule  = "go.etcd.io/etcd/server/v3"
	etcdVersion = "v3.7.3"
)

// EtcdInfo says which etcd was measured and where it came from.
type EtcdInfo struct {
	Path         string   `json:"path"`
	Version      string   `json:"version"` // from etcd --version, e.g. "3.7.3"
	Source       string   `json:"source"`
	BuildSeconds float64  `json:"build_seconds,omitempty"`
	Attempts     []string `json:"attempts,omitempty"` // what failed before
}

// goCmd runs the go command in dir with extra environment, returning its
// combined output.
func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("go %s: %v: %s\n%s", strings.Join(args, " "), err, tail(string(out), 1), tail(string(out), 20))
	}
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// obtainEtcd gets an etcd server binary into binDir, trying in turn:
//
//  1. the binary given with --etcd;
//  2. building etcd's main package at v3.7.3 in a temporary module of its
//     own (through the module proxy; etcd's own dependency versions; our
//     go.mod is not touched): `go install go.etcd.io/etcd/v3@...` cannot
//     be used, etcd's modules have replace directives;
//  3. building it inside metcd's module, whose go.mod already requires
//     go.etcd.io/etcd/server/v3 v3.7.3 (works offline from the module
//     cache; a few dependencies at metcd's newer versions);
//  4. an etcd on $PATH;
//  5. with --apt, Debian's etcd-server package (v3.4 on current Debian).
func obtainEtcd(ctx context.Context, o *options, work, binDir, root string, logf func(string, ...any)) (EtcdInfo, error) {
	var info EtcdInfo
	if o.etcd != "" {
		p, err := filepath.Abs(o.etcd)
		if err != nil {
			return info, err
		}
		info.Path, info.Source = p, "given with --etcd"
		return withVersion(ctx, info)
	}
	out := filepath.Join(binDir, "etcd")
	gomod := fmt.Sprintf("module metcd-benchcompare-etcd\n\ngo %s\n", goLangVersion())

	// 2: a temporary module.
	t0 := time.Now()
	logf("building etcd %s from %s@%s in a temporary module (module proxy)", etcdVersion, etcdModule, etcdVersion)
	modDir := filepath.Join(work, "etcd-module")
	err := func() error {
		if err := os.MkdirAll(modDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(modDir, "go.mod"), []byte(gomod), 0o644); err != nil {
			return err
		}
		env := []string{"GOFLAGS=-mod=mod", "GOWORK=off"}
		bctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
		defer cancel()
		if _, err := goCmd(bctx, modDir, env, "get", etcdModule+"@"+etcdVersion); err != nil {
			return err
		}
		_, err := goCmd(bctx, modDir, env, "build", "-trimpath", "-o", out, etcdModule)
		return err
	}()
	if err == nil {
		info.Path, info.BuildSeconds = out, time.Since(t0).Seconds()
		info.Source = fmt.Sprintf("built from %s@%s (etcd's main package) in a temporary module, with etcd's own dependency versions", etcdModule, etcdVersion)
		return withVersion(ctx, info)
	}
	logf("that failed: %s", firstLine(err.Error()))
	info.Attempts = append(info.Attempts, "temporary module: "+firstLine(err.Error()))
	if ctx.Err() != nil {
		return info, ctx.Err()
	}

	// 3: inside metcd's module.
	t0 = time.Now()
	logf("building etcd from %s in metcd's module (its go.mod requires %s)", etcdModule, etcdVersion)
	bctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	_, err = goCmd(bctx, root, []string{"GOFLAGS=-mod=readonly", "GOWORK=off"}, "build", "-trimpath", "-o", out, etcdModule)
	cancel()
	if err == nil {
		info.Path, info.BuildSeconds = out, time.Since(t0).Seconds()
		info.Source = fmt.Sprintf("built from %s@%s (etcd's main package) inside metcd's module (metcd's go.sum; a few dependencies at newer versions than etcd's release)", etcdModule, etcdVersion)
		return withVersion(ctx, info)
	}
	logf("that failed: %s", firstLine(err.Error()))
	info.Attempts = append(info.Attempts, "metcd's module: "+firstLine(err.Error()))

	// 4: $PATH.
	if p, err := exec.LookPath("etcd"); err == nil {
		info.Path, info.Source = p, "found on $PATH (could not build "+etcdVersion+")"
		return withVersion(ctx, info)
	}
	info.Attempts = append(info.Attempts, "$PATH: no etcd")

	// 5: Debian.
	if !o.apt {
		return info, fmt.Errorf("no etcd: %s; pass --etcd, or --apt to install Debian's etcd-server", strings.Join(info.Attempts, "; "))
	}
	logf("installing Debian's etcd-server (apt-get install -y etcd-server)")
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(actx, "apt-get", "install", "-y", "etcd-server")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if b, err := cmd.CombinedOutput(); err != nil {
		return info, fmt.Errorf("apt-get install -y etcd-server: %v\n%s", err, tail(string(b), 10))
	}
	for _, p := range []string{"/usr/bin/etcd", "/usr/sbin/etcd"} {
		if _, err := os.Stat(p); err == nil {
			info.Path, info.Source = p, "Debian's etcd-server package (could not build "+etcdVersion+")"
			return withVersion(ctx, info)
		}
	}
	return info, errors.New("etcd-server installed, but no /usr/bin/etcd")
}

// goLangVersion is the language version for the temporary module's go
// directive: this toolchain's, e.g. "1.26".
func goLangVersion() string {
	v := strings.TrimPrefix(runtime.Version(), "go")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 && parts[0] != "" {
		minor := parts[1]
		if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			minor = minor[:i]
		}
		return parts[0] + "." + minor
	}
	return "1.26"
}

var etcdVersionRE = regexp.MustCompile(`(?m)^etcd Version:\s*(\S+)`)

// withVersion fills info.Version from `etcd --version`.
func withVersion(ctx context.Context, info EtcdInfo) (EtcdInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, info.Path, "--version").CombinedOutput()
	if err != nil {
		return info, fmt.Errorf("%s --version: %v: %s", info.Path, err, tail(string(b), 5))
	}
	m := etcdVersionRE.FindSubmatch(b)
	if m == nil {
		return info, fmt.Errorf("%s --version: no \"etcd Version:\" in %q", info.Path, tail(string(b), 5))
	}
	info.Version = string(m[1])
	return info, nil
}

// Machine describes the machine the measurements ran on.
type Machine struct {
	Hostname   string `json:"hostname"`
	CPUs       int    `json:"cpus"` // runtime.NumCPU: what nproc prints
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	OS         string `json:"os"`
	GoVersion  string `json:"go_version"`
	WorkDirFS  string `json:"work_dir_fs"` // file system of the data dirs
	GOMAXPROCS int    `json:"gomaxprocs"`
}

func machineFacts(workDir string) Machine {
	host, _ := os.Hostname()
	m := Machine{
		Hostname: host, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: procField("/proc/cpuinfo", "model name"),
		MemTotal: memTotal(procField("/proc/meminfo", "MemTotal")),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.WorkDirFS = mountOf(workDir)
	return m
}

// memTotal turns meminfo's "24684084 kB" into "23.5 GiB".
func memTotal(s string) string {
	f := strings.Fields(s)
	if len(f) != 2 || f[1] != "kB" {
		return s
	}
	kib, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	return findField(f, key)
}

func findField(r io.Reader, key string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}

// mountOf describes the file system dir is on: "ext4 on /dev/sda1 (/)".
func mountOf(dir string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return ""
	}
	best, desc := -1, ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, desc = len(mp), fmt.Sprintf("%s on %s (%s)", f[2], f[0], mp)
		}
	}
	return desc
}

// gitDescribe names the metcd source: `git describe --always --dirty`.
func gitDescribe(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	if cmd.Run() != nil {
		return ""
	}
	return strings.TrimSpace(out.String())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
