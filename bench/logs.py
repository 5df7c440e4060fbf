#!/usr/bin/env python3
"""Log capture under a flood: l4ctl vs PM2 (+ pm2-logrotate) vs supervisord vs a direct write.

Usage: L4CTL=target/release/l4ctl bench/logs.sh [--quick] [--strict] [--flood-reps N] ...
logs.sh installs the peers into the git-ignored bench/.peers (PM2 and a PM2_HOME with
pm2-logrotate via npm, supervisord via pip in a venv, all once) and compiles workloads/spam.c.

The worker (spam.c) writes N numbered 64-byte lines "%08d " + 54 x 'x' + "\\n" to stdout through
a 64 KiB stdio buffer, as fast as it can or paced by SPAM_RATE (lines/s, in 1000-line steps),
writes its own start/end wall-clock times (t0, t1) to $SPAM_TIMES, then pause()s forever (so no
supervisor restarts it; it is killed when its app is deleted, and at the end of the run).

Tools, all measured in the same run, reps interleaved (the order rotates each rep):
  l4ctl   daemon in the foreground as our child (`l4ctl -c CFG daemon --log-file`), home and
          log_dir in a temp dir; one app per rep (`l4ctl start <app>.toml`, `delete` after).
          Log: <log_dir>/<app>-out.log, lines prefixed with "<ISO time> [0] " (~29 bytes), so
          lines are counted, not bytes.  l4ctl also writes the combined <app>.log.
  PM2     fork mode, interpreter none, autorestart false, out_file in the temp dir; flood in a
          fresh PM2_HOME (bench/.peers/pm2home-logs, wiped at start); rotation in
          bench/.peers/pm2home-logrotate, where logs.sh installed pm2-logrotate (kept).
  sv      supervisord (pip), nodaemon=true as our child; one [program] per rep, autostart=false,
          started with `supervisorctl start` (which blocks for startsecs=1 s, so it runs
          concurrently with the measurement).
  direct  `spam > file`: no supervisor; the limit.

Metrics (median over reps unless noted; ratios are l4ctl/peer, lower is better):
  a. flood: N = 1,000,000 lines unpaced.  flood_s = from the writer's own t0 until all N lines
     are in the app's out log on disk (the page cache: a later read sees them), polled every
     ~5 ms by the same poller for every tool.  Default (--poll tail): fstat of the out log, and
     when it grew, a pread of its last 64 bytes: done when they are line N.  Every pipeline here
     is in order, so line N last means lines 1..N-1 came before it, and that is then verified:
     every line is parsed and checked against 1..N (a rep that lost lines shows it).
     --poll count reads the file incrementally and counts newlines instead (l4ctl's lines carry
     a ~29-byte timestamp prefix, so bytes would not do); it must read every byte, ~25 % of a
     core here, which on 2 cores slows the tool under test: l4ctl 0.127 s vs 0.091 s with tail,
     supervisord 0.095 vs 0.072, direct 0.067 vs 0.065 (6 reps each, 2026-11-29).
     Rotation is kept out of the way (l4ctl
     max_size 1G, supervisord stdout_logfile_maxbytes=0, PM2 without pm2-logrotate).
     Also: writer_s = t1 - t0 (a slow reader back-pressures the writer through the pipe);
     the daemon's peak VmRSS (sampled every 10 ms) and its growth over the RSS just before the
     rep; the daemon's CPU seconds from the start request until the last line is on disk
     (sum over /proc/PID/task/*/schedstat, sampled every 10 ms so threads that exit count too;
     utime+stime ticks kept in the JSON as a cross-check); every line is then parsed and checked
     against 1..N (lost, duplicated, malformed).
     Targets: flood_s l4ctl <= PM2/5, < supervisord, <= 2x direct; RSS growth < 10 MiB (max of
     reps); 0 lines lost.
  b. paced rotation loss: SPAM_RATE=50000 for 1,000,000 lines (20 s) with rotation at 1 MiB:
     l4ctl [apps.log_rotate] max_size "1M", retain 10000, compress false; PM2 with
     pm2-logrotate max_size 1M, workerInterval 1, retain 1000; supervisord
     stdout_logfile_maxbytes=1MB, stdout_logfile_backups=10000.  After the writer is done and
     the files are quiet for 3 s, every number 1..N is counted across the current and all
     rotated files: lines lost and duplicated (max over reps).  Target: 0 lost, 0 duplicated.
  c. responsiveness: while spam floods l4ctl unpaced (5,000,000 lines, default rotation
     max_size 10M, retain 3), `l4ctl -c CFG status --json` is timed (perf_counter around
     subprocess.run, ~1 ms of fork/exec included) 20 times, 20 ms apart; only calls that ended
     while the writer was still writing count (another flood is started if needed).  Median
     and max; target < 50 ms.  The same command on the idle daemon is reported for context.

Between runs: the run's files are deleted, then sync(), then 0.5 s of quiet, so one run's
page-cache writeback does not land in the next.  Every wait has a deadline; no sockets are
opened (PM2, supervisord and l4ctl use Unix sockets in their own homes); only processes this
run started are signalled, by pid; at the end (also on error, SIGINT, SIGTERM) every daemon is
stopped and every spam process still alive that this run started (exe = bench/.peers/bin/spam
and SPAM_TIMES inside this run's temp dir) is SIGKILLed.  On a 2-core box the writer, the
daemon and the poller share the CPUs: expect +-20 %.  Exit status 0 when every measurement
ran; with --strict, 1 if a target is missed.
"""
import argparse, glob, json, os, re, statistics, subprocess, sys
import tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (PEERS, PM2_BIN, L4CTL, ChildDaemon, L4Daemon, PM2Daemon, hwm_kib,  # noqa: E402
                    install_signal_handlers, is_dead, measure_and_clean_up, node_version, print_markdown_table,
                    require_executables, rss_kib, run, sweep, thread_ns, ticks, wait_for, write_results)

SPAM = os.path.join(PEERS, "bin", "spam")
PM2_FLOOD_HOME = os.path.join(PEERS, "pm2home-logs")
PM2_LR_HOME = os.path.join(PEERS, "pm2home-logrotate")
LR_PKG = os.path.join(PM2_LR_HOME, "modules", "pm2-logrotate", "node_modules", "pm2-logrotate")
SVD = os.path.join(PEERS, "venv", "bin", "supervisord")
SVCTL = os.path.join(PEERS, "venv", "bin", "supervisorctl")
PAD = b"x" * 54
MIB = 1024 * 1024


# ------------------------------------------------------------------ helpers
def read_times(path):
    with open(path) as f:
        t0, t1 = map(float, f.read().split())
    return t0, t1


def times_ready(path):
    try:
        return read_times(path)
    except (FileNotFoundError, ValueError):
        return None  # not written yet, or caught mid-write


def sweep_spam(tmp):
    """SIGKILL every spam process this run started: our binary, SPAM_TIMES inside our temp dir."""
    mark = b"SPAM_TIMES=" + tmp.encode()
    return sweep(lambda env: any(e.startswith(mark) for e in env), exe=os.path.realpath(SPAM))


class TailWatch:
    """Done when the file's last 64 bytes are line N: one fstat per poll, plus a 64-byte pread
    when the file grew.  O(1) per poll, so the poller costs the same for every tool."""

    def __init__(self, path, n):
        self.path, self.fd, self.size, self.lines = path, None, -1, 0
        self.last, self.n = b"%08d %s\n" % (n, PAD), n

    def opened(self):
        """Open the file once it exists; False until then."""
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return False
        return True

    def done(self):
        if not self.opened():
            return False
        size = os.fstat(self.fd).st_size
        if size == self.size or size < 64:
            return False
        self.size = size
        if os.pread(self.fd, 64, size - 64) == self.last:
            self.lines = self.n  # verified afterwards by check_lines
            return True
        return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class LineCounter(TailWatch):
    """Done when the file holds N newlines; each poll reads (and counts) only what is new.
    Reads every byte the tool wrote, so it costs more for tools that write more (--poll count)."""

    def __init__(self, path, n):
        super().__init__(path, n)

    def done(self):
        if not self.opened():
            return False
        while True:
            b = os.read(self.fd, 1 << 22)
            if not b:
                return self.lines >= self.n
            self.lines += b.count(b"\n")


def check_lines(files, n, prefix):
    """Every line must be <prefix>%08d + 54 x + newline with 1 <= number <= n."""
    line_re = re.compile(rb"^" + prefix + rb"(\d{8}) x{54}$", re.M)
    seen = bytearray(n + 1)
    total = ok = dup = bad_num = 0
    for fn in files:
        if fn.endswith(".gz"):
            import gzip
            with gzip.open(fn, "rb") as f:
                data = f.read()
        else:
            with open(fn, "rb") as f:
                data = f.read()
        total += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        for m in line_re.finditer(data):
            i = int(m.group(1))
            ok += 1
            if i < 1 or i > n:
                bad_num += 1
            elif seen[i]:
                dup += 1
            else:
                seen[i] = 1
    distinct = seen.count(1)
    return {"lines_read": total, "distinct": distinct, "lost": n - distinct, "duplicated": dup,
            "malformed": total - ok + bad_num}


def spam_env(n, rate, times):
    return {"SPAM_N": str(n), "SPAM_RATE": str(rate), "SPAM_TIMES": times}


# ------------------------------------------------------------------ the tools
class L4(L4Daemon):
    prefix = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[0\] "

    def __init__(self, tmp):
        d = os.path.join(tmp, "l4")
        self.logs = os.path.join(d, "logs")
        os.makedirs(self.logs)
        super().__init__(d)

    def alive(self):
        return self.proc.poll() is None

    def launch(self, app, n, rate, times, mode):
        """Start the app; returns the CLI (still running).  mode: flood | rotate | default."""
        rot = {"flood": 'max_size = "1G"\n',
               "rotate": 'max_size = "1M"\nretain = 10000\ncompress = false\n',
               "default": 'retain = 3\n'}[mode]
        env = "".join('%s = "%s"\n' % kv for kv in spam_env(n, rate, times).items())
        cfg = self.write_config(app, '\n[[apps]]\nname = "%s"\nscript = "%s"\n[apps.env]\n%s'
                                     '[apps.log_rotate]\n%s' % (app, SPAM, env, rot))
        return subprocess.Popen([L4CTL, "start", cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def out_path(self, app):
        return os.path.join(self.logs, app + "-out.log")

    def files(self, app):  # current + rotated <app>-out.<stamp>-<seq>.log[.gz]
        return sorted(glob.glob(os.path.join(self.logs, app + "-out.*")))

    def worker_pids(self, app):
        st = json.loads(self.ctl("status", "--json").stdout)
        return [i["pid"] for i in st["instances"] if i["app"] == app and i.get("pid")]

    def stop_app(self, app):
        self.ctl("delete", app)
        for f in glob.glob(os.path.join(self.logs, app + "[.-]*")):
            os.unlink(f)


class PM2(PM2Daemon):
    prefix = b""

    def __init__(self, tmp, home, wipe):
        super().__init__(home, wipe)
        self.logs = os.path.join(tmp, "pm2-" + os.path.basename(home), "logs")
        os.makedirs(self.logs)

    def alive(self):
        return not is_dead(self.pid)

    def setup_logrotate(self):
        """pm2-logrotate max_size 1M, workerInterval 1, retain 1000; checked in the module's env."""
        want = {"max_size": "1M", "workerInterval": "1", "retain": "1000"}
        wait_for(lambda: any(p["name"] == "pm2-logrotate" for p in self.jlist()), 20, 0.5,
                 what="pm2-logrotate in `pm2 jlist` (PM2_HOME=%s)" % self.home)
        for k, v in want.items():
            self.ctl("set", "pm2-logrotate:" + k, v)

        def applied():  # `pm2 set` restarts the module with the new conf in its env
            mods = [p for p in self.jlist() if p["name"] == "pm2-logrotate"]
            if not mods or mods[0]["pm2_env"]["status"] != "online" or not mods[0].get("pid"):
                return None
            try:
                with open("/proc/%d/environ" % mods[0]["pid"], "rb") as f:
                    env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
                conf = json.loads(env[b"pm2-logrotate"])
            except (OSError, KeyError, ValueError):
                return None
            return conf if all(str(conf.get(k)) == v for k, v in want.items()) else None
        conf = wait_for(applied, 30, 0.5, what="pm2-logrotate running with max_size 1M, workerInterval 1")
        time.sleep(2)  # let the module connect and start its 1 s interval
        return conf

    def launch(self, app, n, rate, times, mode):
        path = os.path.join(self.logs, "..", app + ".json")
        spec = {"name": app, "script": SPAM, "interpreter": "none", "exec_mode": "fork",
                "autorestart": False, "out_file": self.out_path(app),
                "error_file": os.path.join(self.logs, app + "-err.log"), "env": spam_env(n, rate, times)}
        with open(path, "w") as f:
            json.dump({"apps": [spec]}, f)
        return subprocess.Popen([PM2_BIN, "start", path], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def out_path(self, app):
        return os.path.join(self.logs, app + "-out.log")

    def files(self, app):  # current + pm2-logrotate's <app>-out__<date>.log
        return sorted(glob.glob(os.path.join(self.logs, app + "-out*")))

    def worker_pids(self, app):
        return [p["pid"] for p in self.jlist() if p["name"] == app and p.get("pid")]

    def stop_app(self, app):
        self.ctl("delete", app)
        for f in glob.glob(os.path.join(self.logs, app + "-*")):
            os.unlink(f)


class SV(ChildDaemon):
    name, prefix = "supervisord", b""
    stop_args = ("shutdown",)

    def __init__(self, tmp, programs):
        """programs: [(name, n, rate, times, mode)], all declared up front (autostart=false)."""
        self.dir = os.path.join(tmp, "sv")
        self.logs = os.path.join(self.dir, "logs")
        os.makedirs(self.logs)
        self.conf = os.path.join(self.dir, "supervisord.conf")
        text = ("[unix_http_server]\nfile={d}/sv.sock\n\n[supervisord]\nlogfile={d}/supervisord.log\n"
                "pidfile={d}/supervisord.pid\nchildlogdir={d}\nnodaemon=true\nloglevel=info\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                "[supervisorctl]\nserverurl=unix://{d}/sv.sock\n").format(d=self.dir)
        for name, n, rate, times, mode in programs:
            rot = ("stdout_logfile_maxbytes=0\n" if mode == "flood" else
                   "stdout_logfile_maxbytes=1MB\nstdout_logfile_backups=10000\n")
            env = ",".join('%s="%s"' % kv for kv in spam_env(n, rate, times).items())
            text += ("\n[program:%s]\ncommand=%s\nenvironment=%s\nautostart=false\nautorestart=false\n"
                     "stdout_logfile=%s\n%sstderr_logfile=%s\n"
                     % (name, SPAM, env, self.out_path(name), rot, os.path.join(self.logs, name + "-err.log")))
        with open(self.conf, "w") as f:
            f.write(text)
        self.proc = self.pid = None

    def ctl(self, *args, check=True, timeout=60):
        return run([SVCTL, "-c", self.conf, *args], check=check, timeout=timeout)

    def start_daemon(self):
        with open(os.path.join(self.dir, "daemon.stderr"), "w") as log:
            self.proc = subprocess.Popen([SVD, "-c", self.conf], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("supervisord exited %d, see %s" % (self.proc.returncode, self.dir))
            return self.ctl("pid", check=False).stdout.strip() == str(self.pid)
        wait_for(up, 20, 0.1, what="supervisord")

    def alive(self):
        return self.proc.poll() is None

    def launch(self, app, n, rate, times, mode):  # n, rate, times, mode: fixed in the conf
        return subprocess.Popen([SVCTL, "-c", self.conf, "start", app],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def out_path(self, app):
        return os.path.join(self.logs, app + "-out.log")

    def files(self, app):  # current + <app>-out.log.1 .. .N
        return sorted(glob.glob(os.path.join(self.logs, app + "-out.log*")))

    def worker_pids(self, app):
        out = self.ctl("pid", app, check=False).stdout.strip()
        return [int(out)] if out.isdigit() and out != "0" else []

    def stop_app(self, app):
        self.ctl("stop", app)
        for f in glob.glob(os.path.join(self.logs, app + "-*")):
            os.unlink(f)

    def version(self):
        return run([SVD, "--version"]).stdout.strip()


class Direct:
    """spam > file: no supervisor."""
    name, prefix, pid = "direct", b"", None

    def __init__(self, tmp):
        self.logs = os.path.join(tmp, "direct")
        os.makedirs(self.logs)
        self.procs = {}

    def start_daemon(self):
        pass

    def alive(self):
        return True

    def launch(self, app, n, rate, times, mode):
        with open(self.out_path(app), "wb") as out:
            self.procs[app] = subprocess.Popen([SPAM], stdout=out, stderr=subprocess.DEVNULL,
                                               stdin=subprocess.DEVNULL,
                                               env=dict(os.environ, **spam_env(n, rate, times)))
        return None

    def out_path(self, app):
        return os.path.join(self.logs, app + "-out.log")

    def files(self, app):
        return [self.out_path(app)]

    def worker_pids(self, app):
        return [self.procs[app].pid]

    def stop_app(self, app):
        p = self.procs.pop(app)
        p.kill()  # our own child, by pid
        p.wait(10)
        os.unlink(self.out_path(app))

    def shutdown(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


# ------------------------------------------------------------------ measurements
def finish_cli(cli, tool, what):
    if cli is None:
        return
    try:
        out, _ = cli.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        cli.kill()  # our own child
        cli.wait(10)
        raise TimeoutError("%s: %s did not return within 60 s" % (tool.name, what))
    if cli.returncode != 0:
        raise RuntimeError("%s: %s exited %d: %s" % (tool.name, what, cli.returncode, out.decode(errors="replace")))


def quiet():
    os.sync()  # the previous run's page-cache writeback must not land in the next run
    time.sleep(0.5)


def flood_once(tool, app, n, tmp, spawned, poll="tail"):
    times = os.path.join(tmp, "times", "%s-%s" % (tool.name, app))
    dpid = tool.pid
    pre = rss_kib(dpid) if dpid else None
    ns0 = thread_ns(dpid) if dpid else {}
    ns_last, k0 = dict(ns0), (ticks(dpid) if dpid else 0)
    peak, samples = pre or 0, 0
    counter = (TailWatch if poll == "tail" else LineCounter)(tool.out_path(app), n)
    cli = tool.launch(app, n, 0, times, "flood")
    deadline, next_sample, t_done = time.monotonic() + 180, 0.0, None
    try:
        while True:
            if counter.done():
                t_done = time.time()
                break
            now = time.monotonic()
            if dpid and now >= next_sample:  # RSS and CPU every 10 ms
                r = rss_kib(dpid)
                if r is None:
                    raise RuntimeError("%s daemon (pid %d) died during the flood" % (tool.name, dpid))
                peak, samples = max(peak, r), samples + 1
                ns_last.update(thread_ns(dpid))
                next_sample = now + 0.010
            if now > deadline:
                raise TimeoutError("%s: line %d not in %s after 180 s (%s lines counted)"
                                   % (tool.name, n, counter.path, counter.lines if poll == "count" else "no"))
            time.sleep(0.005)
    finally:
        counter.close()
    cpu_s = tick_s = post = None
    if dpid:
        ns_last.update(thread_ns(dpid))
        peak = max(peak, rss_kib(dpid))
        post = rss_kib(dpid)
        cpu_s = sum(v - ns0.get(t, 0) for t, v in ns_last.items()) / 1e9
        tick_s = (ticks(dpid) - k0) / os.sysconf("SC_CLK_TCK")
    t0, t1 = wait_for(lambda: times_ready(times), 30, what="%s: spam times file" % tool.name)
    finish_cli(cli, tool, "start")
    spawned.extend(tool.worker_pids(app))
    chk = check_lines(tool.files(app), n, tool.prefix)
    r = {"flood_s": t_done - t0, "writer_s": t1 - t0, "lines_per_s": n / (t_done - t0),
         "files": len(tool.files(app)), **chk}
    if dpid:
        r.update({"rss_pre_mib": pre / 1024, "rss_peak_mib": peak / 1024, "rss_growth_mib": (peak - pre) / 1024,
                  "rss_post_mib": post / 1024, "rss_samples": samples, "cpu_s": cpu_s, "cpu_ticks_s": tick_s,
                  "hwm_mib": hwm_kib(dpid) / 1024})
    tool.stop_app(app)
    return r


def rotate_once(tool, app, n, rate, tmp, spawned):
    times = os.path.join(tmp, "times", "%s-%s" % (tool.name, app))
    dpid, peak = tool.pid, 0
    cli = tool.launch(app, n, rate, times, "rotate")
    deadline = time.monotonic() + n / rate * 1.5 + 60
    while not times_ready(times):
        if tool.pid:
            peak = max(peak, rss_kib(dpid) or 0)
        if time.monotonic() > deadline:
            raise TimeoutError("%s: paced writer not done in time" % tool.name)
        time.sleep(0.05)
    t0, t1 = times_ready(times)
    finish_cli(cli, tool, "start")
    spawned.extend(tool.worker_pids(app))
    # quiet: the same files with the same sizes for 3 s (pm2-logrotate checks every 1 s)
    sig, since, deadline = None, time.monotonic(), time.monotonic() + 60
    while time.monotonic() - since < 3:
        now_sig = tuple((f, os.path.getsize(f)) for f in tool.files(app) if os.path.exists(f))
        if now_sig != sig:
            sig, since = now_sig, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError("%s: log files still changing 60 s after the writer ended" % tool.name)
        if dpid:
            peak = max(peak, rss_kib(dpid) or 0)
        time.sleep(0.1)
    files = tool.files(app)
    chk = check_lines(files, n, tool.prefix)
    r = {"writer_s": t1 - t0, "files": len(files), "bytes": sum(os.path.getsize(f) for f in files), **chk}
    if dpid:
        r["rss_peak_mib"] = peak / 1024
    tool.stop_app(app)
    return r


def responsiveness(l4, runs, n, gap, tmp, spawned):
    """`status --json` timed while a flood runs; calls that ended after the writer did are dropped."""
    def timed():
        t = time.perf_counter()
        r = subprocess.run(l4.status_argv, capture_output=True, timeout=30)
        dt = (time.perf_counter() - t) * 1e3
        if r.returncode != 0:
            raise RuntimeError("status --json exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
        return dt, json.loads(r.stdout)

    for _ in range(3):  # warm-ups
        timed()
    idle = [timed()[0] for _ in range(runs)]
    during, after, floods = [], [], []
    for k in range(5):
        if len(during) >= runs:
            break
        app, times = "resp-%d" % k, os.path.join(tmp, "times", "l4ctl-resp-%d" % k)
        cli = l4.launch(app, n, 0, times, "default")
        out = l4.out_path(app)
        wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > MIB, 20, 0.002,
                 what="the flood to reach the log")
        while len(during) < runs:
            dt, st = timed()
            if times_ready(times):  # the writer finished during (or before the end of) this call
                after.append(dt)
                break
            if not any(i["app"] == app and i["state"] == "online" for i in st["instances"]):
                raise RuntimeError("status --json during the flood does not show %s online" % app)
            during.append(dt)
            time.sleep(gap)
        t0, t1 = wait_for(lambda: times_ready(times), 120, what="the responsiveness flood to end")
        floods.append({"lines": n, "writer_s": t1 - t0, "calls_during": len(during)})
        finish_cli(cli, l4, "start")
        spawned.extend(l4.worker_pids(app))
        l4.stop_app(app)
        quiet()
    if len(during) < runs:
        raise RuntimeError("only %d status calls landed inside %d floods" % (len(during), len(floods)))
    return {"idle_ms": idle, "during_ms": during, "after_ms": after, "floods": floods}


def rotated_order(tools, rep):
    k = rep % len(tools)
    return tools[k:] + tools[:k]


def measure(a, tmp, spawned, daemons):
    os.makedirs(os.path.join(tmp, "times"))
    flood_apps = ["flood-r%d" % r for r in range(a.flood_reps)]
    rot_apps = ["rot-r%d" % r for r in range(a.rot_reps)]
    sv_programs = ([(x, a.flood_lines, 0, os.path.join(tmp, "times", "supervisord-" + x), "flood") for x in flood_apps]
                   + [(x, a.rot_lines, a.rate, os.path.join(tmp, "times", "supervisord-" + x), "rotate")
                      for x in rot_apps])
    l4, pm2, sv, direct = L4(tmp), PM2(tmp, PM2_FLOOD_HOME, True), SV(tmp, sv_programs), Direct(tmp)
    pm2lr = PM2(tmp, PM2_LR_HOME, False)
    daemons.extend([l4, pm2, pm2lr, sv, direct])
    raw = {"versions": {"l4ctl": l4.version(), "PM2": pm2.version(), "supervisord": sv.version()}}
    with open(os.path.join(LR_PKG, "package.json")) as f:
        raw["versions"]["pm2-logrotate"] = json.load(f)["version"]
    print("versions:", raw["versions"], flush=True)

    # a. flood -------------------------------------------------------------------------------
    tools = [l4, pm2, sv, direct]
    for t in tools:
        t.start_daemon()
    time.sleep(a.settle)
    raw["rss_idle_mib"] = {t.name: rss_kib(t.pid) / 1024 for t in tools if t.pid}
    print("daemon RSS before the floods (MiB):", {k: round(v, 1) for k, v in raw["rss_idle_mib"].items()}, flush=True)
    raw["flood"] = {t.name: [] for t in tools}
    for rep, app in enumerate(flood_apps):
        for t in rotated_order(tools, rep):
            quiet()
            raw["flood"][t.name].append(flood_once(t, app, a.flood_lines, tmp, spawned, a.poll))
        print("flood rep %d:" % rep, "  ".join(
            "%s %.3f s (writer %.3f, lost %d)" % (k, v[-1]["flood_s"], v[-1]["writer_s"], v[-1]["lost"])
            for k, v in raw["flood"].items()), flush=True)
    raw["rss_after_floods_mib"] = {t.name: rss_kib(t.pid) / 1024 for t in tools if t.pid}
    print("daemon RSS after the floods (MiB):", {k: round(v, 1) for k, v in raw["rss_after_floods_mib"].items()},
          flush=True)
    pm2.shutdown()  # its pm2-logrotate twin takes over for b.

    # c. responsiveness during a flood (l4ctl) -------------------------------------------------
    raw["status"] = responsiveness(l4, a.status_runs, a.resp_lines, a.status_gap, tmp, spawned)
    print("status --json: idle median %.2f ms; during flood median %.2f ms, max %.2f ms (%d calls, %d floods)" % (
        statistics.median(raw["status"]["idle_ms"]), statistics.median(raw["status"]["during_ms"]),
        max(raw["status"]["during_ms"]), len(raw["status"]["during_ms"]), len(raw["status"]["floods"])), flush=True)

    # b. paced rotation -----------------------------------------------------------------------
    pm2lr.start_daemon()
    raw["pm2_logrotate_conf"] = pm2lr.setup_logrotate()
    tools = [l4, pm2lr, sv]
    raw["rotate"] = {t.name: [] for t in tools}
    for rep, app in enumerate(rot_apps):
        for t in rotated_order(tools, rep):
            quiet()
            raw["rotate"][t.name].append(rotate_once(t, app, a.rot_lines, a.rate, tmp, spawned))
        print("rotation rep %d:" % rep, "  ".join(
            "%s lost %d dup %d files %d" % (k, v[-1]["lost"], v[-1]["duplicated"], v[-1]["files"])
            for k, v in raw["rotate"].items()), flush=True)
    return raw


# ------------------------------------------------------------------ report
COLS = ("l4ctl", "PM2", "supervisord", "direct")


def summarize(raw, a):
    rows = []
    med = lambda xs: statistics.median(xs) if xs else None
    fl, rt, st = raw["flood"], raw["rotate"], raw["status"]

    def col(data, key, agg=med):
        return {k: agg([r[key] for r in v]) for k, v in data.items() if v and key in v[0]}

    def row(label, vals, ratios=(), target="", ok=None, key=None, verdict=None):
        rows.append({"metric": key, "label": label, "values": vals, "ratios": list(ratios),
                     "target": target, "pass": ok,
                     "verdict": verdict or {True: "PASS", False: "FAIL", None: ""}[ok]})

    f = col(fl, "flood_s")
    rs = [("l4ctl/PM2", f["l4ctl"] / f["PM2"], 0.2, "<="), ("l4ctl/sv", f["l4ctl"] / f["supervisord"], 1.0, "<"),
          ("l4ctl/direct", f["l4ctl"] / f["direct"], 2.0, "<=")]
    oks = [v <= lim if op == "<=" else v < lim for _, v, lim, op in rs]
    row("flood %s lines: t0 -> all on disk (s, poll %s)" % (format(a.flood_lines, ","), a.poll), f,
        ["%s %.3f" % (k, v) for k, v, _, _ in rs], "<=0.2 / <1 / <=2", all(oks), "flood_s",
        " / ".join("PASS" if x else "FAIL" for x in oks))
    w = col(fl, "writer_s")
    row("flood: writer's own t1 - t0 (s)", w, ["l4ctl/direct %.2f" % (w["l4ctl"] / w["direct"])], key="writer_s")
    lps = {k: a.flood_lines / v for k, v in f.items()}
    row("flood: lines/s to disk (million)", {k: v / 1e6 for k, v in lps.items()}, key="lines_per_s")
    p = col(fl, "rss_peak_mib", max)
    row("flood: daemon peak RSS, max of reps (MiB)", p,
        ["l4ctl/PM2 %.3f" % (p["l4ctl"] / p["PM2"]), "l4ctl/sv %.2f" % (p["l4ctl"] / p["supervisord"])],
        key="rss_peak_mib")
    g = col(fl, "rss_growth_mib", max)
    row("flood: daemon RSS growth over pre-flood, max of reps (MiB)", g, [], "l4ctl < 10 MiB",
        g["l4ctl"] < 10, "rss_growth_mib")
    ret = {k: raw["rss_after_floods_mib"][k] - raw["rss_idle_mib"][k] for k in raw["rss_idle_mib"]}
    row("flood: daemon RSS after all reps - before the first (MiB)", ret, key="rss_retained_mib")
    c = col(fl, "cpu_s")
    row("flood: daemon CPU, start request -> last line (s)", c,
        ["l4ctl/PM2 %.3f" % (c["l4ctl"] / c["PM2"]), "l4ctl/sv %.2f" % (c["l4ctl"] / c["supervisord"])],
        key="cpu_s")
    lost = {k: max(r["lost"] + r["duplicated"] + r["malformed"] for r in v) for k, v in fl.items()}
    row("flood: lines lost+dup+malformed, max of reps", lost, [], "l4ctl 0", lost["l4ctl"] == 0, "flood_lost")

    head = "paced %s lines @ %s/s, rotate at 1 MiB:" % (format(a.rot_lines, ","), format(a.rate, ","))
    lost = col(rt, "lost", max)
    row(head + " lines lost, max of reps", lost, [], "l4ctl 0", lost["l4ctl"] == 0, "rotate_lost")
    dup = col(rt, "duplicated", max)
    row("  lines duplicated, max of reps", dup, [], "l4ctl 0", dup["l4ctl"] == 0, "rotate_dup")
    bad = col(rt, "malformed", max)
    row("  lines malformed, max of reps", bad, [], "l4ctl 0", bad["l4ctl"] == 0, "rotate_malformed")
    row("  lines lost per rep", {k: "/".join(str(r["lost"]) for r in v) for k, v in rt.items()}, key="rotate_lost_reps")
    row("  files (current + rotated), median", col(rt, "files"), key="rotate_files")

    sm, sx = statistics.median(st["during_ms"]), max(st["during_ms"])
    row("status --json during a flood, median of %d (ms)" % len(st["during_ms"]), {"l4ctl": sm}, [], "< 50 ms",
        sm < 50, "status_median_ms")
    row("status --json during a flood, max (ms)", {"l4ctl": sx}, [], "< 50 ms", sx < 50, "status_max_ms")
    row("status --json, idle daemon, median (ms)", {"l4ctl": statistics.median(st["idle_ms"])}, key="status_idle_ms")
    return rows


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1:
        return str(int(x))
    return "%.3f" % x if abs(x) < 10 else "%.1f" % x


def print_table(rows):
    print_markdown_table(("metric",) + COLS + ("ratio(s)", "target", "pass/fail"),
                         [(r["label"],) + tuple(fmt(r["values"].get(c)) for c in COLS)
                          + (", ".join(r["ratios"]), r["target"], r["verdict"])
                          for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 flood reps, 1 rotation rep of 250,000 lines (5 s) instead of 5 and 3 x 1,000,000")
    ap.add_argument("--flood-reps", type=int)
    ap.add_argument("--flood-lines", type=int, default=1_000_000)
    ap.add_argument("--rot-reps", type=int)
    ap.add_argument("--rot-lines", type=int)
    ap.add_argument("--poll", choices=("tail", "count"), default="tail",
                    help="flood done when: the file ends with line N (tail, O(1) per poll) or holds N newlines "
                         "(count, reads every byte: slows the tool under test on 2 cores)")
    ap.add_argument("--rate", type=int, default=50_000, help="paced writer, lines/s")
    ap.add_argument("--status-runs", type=int, default=20)
    ap.add_argument("--status-gap", type=float, default=0.02, help="seconds between status calls")
    ap.add_argument("--resp-lines", type=int, default=5_000_000)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds after the daemons start")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args()
    a.flood_reps = a.flood_reps or (2 if a.quick else 5)
    a.rot_reps = a.rot_reps or (1 if a.quick else 3)
    a.rot_lines = a.rot_lines or (250_000 if a.quick else 1_000_000)
    require_executables(((L4CTL, "L4CTL"), (PM2_BIN, "pm2 (run logs.sh)"), (SPAM, "spam (run logs.sh)"),
                         (SVD, "supervisord (run logs.sh)")))
    if not os.path.exists(os.path.join(LR_PKG, "app.js")):
        sys.exit("pm2-logrotate is not installed in %s (run logs.sh)" % PM2_LR_HOME)

    install_signal_handlers()  # every daemon and spam is stopped on SIGINT/SIGTERM too
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4bench-logs-")
    meta = {"timestamp": stamp, "l4ctl": os.path.abspath(L4CTL), "debug_build": "/debug/" in os.path.abspath(L4CTL),
            "node_version": node_version(), "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "args": vars(a), "tmp": tmp}
    print("l4ctl: %s  cpus %d  load %.2f  tmp %s" % (meta["l4ctl"], meta["cpus"], meta["loadavg_start"][0], tmp),
          flush=True)
    spawned, daemons = [], []  # measure fills daemons as it creates them
    raw = measure_and_clean_up(lambda: measure(a, tmp, spawned, daemons), daemons, tmp,
                               "temp dir (homes, logs) kept:", lambda: sweep_spam(tmp),
                               "killed %d spam process(es) still alive: %s")
    meta["loadavg_end"] = os.getloadavg()
    meta["spam_pids"] = spawned
    rows = summarize(raw, a)
    print_table(rows)
    print("\nflood per rep (s): " + "; ".join("%s %s" % (k, " ".join("%.3f" % r["flood_s"] for r in v))
                                              for k, v in raw["flood"].items()))
    print("pm2-logrotate conf in the module's env:", raw["pm2_logrotate_conf"])
    print("load average start %.2f, end %.2f" % (meta["loadavg_start"][0], meta["loadavg_end"][0]))
    out = write_results("logs", stamp, meta, rows, raw)
    print("raw numbers:", out, "(debug l4ctl build)" if meta["debug_build"] else "")
    return 1 if a.strict and not all(r["pass"] for r in rows if r["pass"] is not None) else 0


if __name__ == "__main__":
    sys.exit(main())
