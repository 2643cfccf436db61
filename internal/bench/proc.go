package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU is the CPU time a process used, with that of the children it has
// waited for (herd's in-process workers wait for every ffmpeg they start).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and brackets: fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unreadable /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, k := range f[11:15] { // utime stime cutime cstime
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// peakRSS is the most resident memory a process has had (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// measured is one command's wall and CPU time.
type measured struct {
	Wall, CPU time.Duration
}

// runCmd runs a command to its end and measures it; its output is kept in
// log (a file) and the error quotes the tail.
func runCmd(ctx context.Context, log string, name string, args ...string) (measured, error) {
	f, err := os.Create(log)
	if err != nil {
		return measured{}, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	t0 := time.Now()
	err = cmd.Run()
	m := measured{Wall: time.Since(t0)}
	if cmd.ProcessState != nil {
		m.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", name, err, tailFile(log, 1500))
	}
	return m, nil
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// The shim stands in for ffmpeg and ffprobe under herd in the overhead and
// pertitle scenarios: links named ffmpeg and ffprobe to the bench's own
// binary, beside a file (shimConf) that names the real tools and the log. It
// runs the real tool with the same argv, standard streams and exit status,
// and appends "tool start end cpu argv" to the log: Unix nanoseconds, the
// tool's CPU time (user and system, nanoseconds) and argvKey of its
// arguments; tool is the conf's label where it has one. The file, not the
// environment, says so: herd runs its tools with a reduced environment.
const shimConf = "herd-bench-shim.conf"

// Shim runs as the shim when it is started through such a link, and never
// returns then. Call it first thing in main (and TestMain).
func Shim() {
	tool := filepath.Base(os.Args[0])
	if tool != "ffmpeg" && tool != "ffprobe" {
		return
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(os.Args[0]), shimConf))
	if err != nil {
		return
	}
	conf := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			conf[k] = v
		}
	}
	logPath, real := conf["log"], conf[tool]
	if logPath == "" || real == "" {
		fmt.Fprintf(os.Stderr, "bench shim: %s names no log or no %s\n", shimConf, tool)
		os.Exit(127)
	}
	start := time.Now()
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	code := 0
	if err := cmd.Wait(); err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() >= 0 {
			code = ee.ExitCode()
		}
	}
	end := time.Now()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	label := tool
	if l := conf["label"]; l != "" {
		label = l
	}
	if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		// One short write with O_APPEND: lines of tools ending together do not mix.
		_, _ = fmt.Fprintf(f, "%s %d %d %d %s\n", label, start.UnixNano(), end.UnixNano(), cpu.Nanoseconds(), argvKey(os.Args[1:]))
		_ = f.Close()
	}
	os.Exit(code)
}

// shimDir makes the links herd runs instead of ffmpeg and ffprobe, and the
// file beside them that makes them log to logPath.
func shimDir(dir, logPath string) (ffmpeg, ffprobe string, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	conf := "log=" + logPath + "\n"
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			return "", "", err
		}
		if err := os.Symlink(self, filepath.Join(dir, tool)); err != nil {
			return "", "", err
		}
		conf += tool + "=" + real + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, shimConf), []byte(conf), 0o644); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "ffmpeg"), filepath.Join(dir, "ffprobe"), nil
}

// shimMeasure makes a link named ffmpeg in dir/measure that runs real (the
// measuring ffmpeg, --measure-ffmpeg) through the shim, logging to logPath
// as "measure".
func shimMeasure(dir, logPath, real string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	d := filepath.Join(dir, "measure")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	if err := os.Symlink(self, filepath.Join(d, "ffmpeg")); err != nil {
		return "", err
	}
	conf := "log=" + logPath + "\nlabel=measure\nffmpeg=" + real + "\n"
	if err := os.WriteFile(filepath.Join(d, shimConf), []byte(conf), 0o644); err != nil {
		return "", err
	}
	return filepath.Join(d, "ffmpeg"), nil
}

// argvKey identifies a tool's arguments (argv without its program) in a
// word: the FNV-1a hash of them, NUL-separated, in hex.
func argvKey(args []string) string {
	h := fnv.New64a()
	for _, a := range args {
		_, _ = h.Write([]byte(a))
		_, _ = h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// interval is a span of time.
type interval struct{ from, to time.Time }

// toolRun is one run of a tool the shim recorded.
type toolRun struct {
	tool string // ffmpeg, ffprobe, or the conf's label
	interval
	cpu time.Duration // user and system
	key string        // argvKey of its arguments
}

// readShimRuns reads the runs the shim recorded, in the order they ended.
func readShimRuns(path string) ([]toolRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []toolRun
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		a, err1 := strconv.ParseInt(f[1], 10, 64)
		z, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("shim log: bad line %q", line)
		}
		r := toolRun{tool: f[0], interval: interval{time.Unix(0, a), time.Unix(0, z)}}
		if len(f) >= 5 {
			c, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("shim log: bad line %q", line)
			}
			r.cpu, r.key = time.Duration(c), f[4]
		}
		out = append(out, r)
	}
	return out, nil
}

// readShimLog reads the spans the shim recorded, per tool.
func readShimLog(path string) (map[string][]interval, error) {
	runs, err := readShimRuns(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]interval{}
	for _, r := range runs {
		out[r.tool] = append(out[r.tool], r.interval)
	}
	return out, nil
}

// covered is how much of [from, to] at least one interval covers.
func covered(ivs []interval, from, to time.Time) time.Duration {
	ivs = slices.Clone(ivs)
	slices.SortFunc(ivs, func(a, b interval) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur interval
	for _, iv := range ivs {
		if iv.from.Before(from) {
			iv.from = from
		}
		if iv.to.After(to) {
			iv.to = to
		}
		if !iv.to.After(iv.from) {
			continue
		}
		if cur.to.IsZero() || iv.from.After(cur.to) {
			total += cur.to.Sub(cur.from)
			cur = iv
			continue
		}
		if iv.to.After(cur.to) {
			cur.to = iv.to
		}
	}
	return total + cur.to.Sub(cur.from)
}

// median of a non-empty list.
func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile p (0–100) of a sorted list, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func ratio(a, b float64) string   { return fmt.Sprintf("%.2f ×", a/b) }
func mib(n int64) string          { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// machine describes where the run happened.
func machine() []string {
	var out []string
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	out = append(out, fmt.Sprintf("CPU: %s, %d cores visible to Go (%s/%s)", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		out = append(out, "Memory: "+strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " "))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				out = append(out, "OS: "+strings.Trim(v, `"`))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out = append(out, "Kernel: "+strings.TrimSpace(string(b)))
	}
	return out
}

// versions lists the programs compared, as each reports itself.
func versions(ctx context.Context, herd string) []string {
	first := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil && len(b) == 0 {
			return "not found"
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			// HandBrakeCLI prints log lines around its version.
			if strings.ContainsAny(l, "0123456789") && !strings.HasPrefix(l, "[") && !strings.HasPrefix(l, "Cannot load") {
				return l
			}
		}
		return "unknown"
	}
	return []string{
		"herd: " + first(herd, "version"),
		"Go: " + runtime.Version(),
		"ffmpeg: " + first("ffmpeg", "-hide_banner", "-version"),
		"HandBrakeCLI: " + first("HandBrakeCLI", "--version"),
		"SQLite: the pure-Go driver herd links (modernc.org/sqlite)",
		"PostgreSQL: " + first(pgVersionBin(), "--version"),
		"dd: " + first("dd", "--version"),
	}
}

// pgVersionBin is the postgres binary of Debian's newest cluster version.
func pgVersionBin() string {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return "postgres"
	}
	slices.Sort(m)
	return m[len(m)-1]
}
