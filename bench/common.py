"""What the benchmark scripts (supervisor.py, logs.py, memory.py) share.

Paths (bench/.peers, bench/results, L4CTL, the local pm2), /proc readers, waits with deadlines,
subprocess runs, the l4ctl and PM2 daemons as each script drives them (the scripts subclass
them for their workloads), the cleanup every run goes through (signals unwind into it; every
daemon is stopped, leftovers of this run are SIGKILLed by pid), the Markdown table and the JSON
result file.  Not a script: the entry points are the *.sh next to it.
"""
import json, os, shlex, shutil, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, ".peers")
RESULTS = os.path.join(HERE, "results")
PM2_BIN = os.path.join(PEERS, "node_modules", ".bin", "pm2")
L4CTL = os.environ.get("L4CTL", os.path.join(HERE, "..", "target", "release", "l4ctl"))


# ------------------------------------------------------------------ /proc
def parse_status(text):
    """The fields of a /proc/PID/status text, {key: value stripped}."""
    return dict((k, v.strip()) for k, _, v in (l.partition(":") for l in text.splitlines()))


def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return parse_status(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def is_dead(pid):
    s = proc_status(pid)
    return s is None or s.get("State", "")[:1] in ("Z", "X")


def kib(s, key):  # a "<n> kB" field of a parsed status, or None
    return int(s[key].split()[0]) if s and key in s else None


def rss_kib(pid):
    return kib(proc_status(pid), "VmRSS")


def hwm_kib(pid):
    return kib(proc_status(pid), "VmHWM")


def rss_mib(pid):  # VmRSS, MiB
    return rss_kib(pid) / 1024


def thread_ns(pid):
    """{tid: ns on CPU} from /proc/PID/task/*/schedstat (field 1)."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                out[t] = int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass  # thread exited between listdir and open
    return out


def ticks(pid):  # utime+stime incl. exited threads, 1/CLK_TCK s resolution (cross-check only)
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_window(pids, seconds, every=0.1):
    """ms on CPU per pid over one shared window.  Threads are sampled every 0.1 s, so a
    thread that exits mid-window (e.g. a blocking pool thread) loses at most its last 0.1 s."""
    first = {p: thread_ns(p) for p in pids}
    last = {p: dict(first[p]) for p in pids}
    t0, k0 = time.monotonic(), {p: ticks(p) for p in pids}
    while time.monotonic() - t0 < seconds:
        time.sleep(every)
        for p in pids:
            last[p].update(thread_ns(p))
    hz = os.sysconf("SC_CLK_TCK")
    return time.monotonic() - t0, {p: {
        "ms": sum(ns - first[p].get(tid, 0) for tid, ns in last[p].items()) / 1e6,
        "tick_ms": (ticks(p) - k0[p]) * 1000 / hz, "threads": [len(first[p]), len(last[p])]} for p in pids}


def descends_from(pid, ancestor):
    for _ in range(8):
        s = proc_status(pid)
        if not s:
            return False
        pid = int(s["PPid"])
        if pid == ancestor:
            return True
    return False


# ------------------------------------------------------------------ waits and commands
def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port):
    """Whether something accepts connections on 127.0.0.1:port."""
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def free_ports(n):
    """The first of n consecutive TCP ports free on 127.0.0.1 right now."""
    import socket
    while True:
        base = free_port()
        ok = True
        for p in range(base + 1, base + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok and base + n < 65536:
            return base


def wait_for(pred, timeout, interval=0.01, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))


def run(argv, env=None, timeout=60, check=True):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (shlex.join(argv), r.returncode, r.stderr + r.stdout))
    return r


def node_version():
    return run(["node", "--version"]).stdout.strip()


def require_executables(pairs):
    """Exit with a message unless every (path, what) is an executable file."""
    for path, what in pairs:
        if not os.access(path, os.X_OK):
            sys.exit("missing %s: %s" % (what, path))


# ------------------------------------------------------------------ the daemons
class ChildDaemon:
    """A daemon that runs as our child (self.proc), stopped by its own ctl command."""
    proc = None
    stop_args = ("kill",)  # self.ctl(*stop_args) asks the daemon to exit
    exit_wait = 15  # s to wait for it to exit after that, before SIGTERM

    def shutdown(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.ctl(*self.stop_args, check=False)
        try:
            self.proc.wait(self.exit_wait)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # our own child, by pid
            self.proc.wait(10)


class L4Daemon(ChildDaemon):
    """l4ctl's daemon in the foreground as our child (`l4ctl -c CFG daemon --log-file`).  Its
    configs live in self.dir (which must exist), all with home = "run" and log_dir = "logs"
    relative to it, so they talk to one daemon."""
    name = "l4ctl"
    daemon_extra = ""  # more [daemon] keys, one "key = value\n" each
    preexec = None  # run in the daemon's process before exec (e.g. a resource limit)

    def __init__(self, d):
        self.dir = d
        self.proc = self.pid = None
        self.cfg0 = self.write_config("daemon", "")
        self.status_argv = [L4CTL, "-c", self.cfg0, "status", "--json"]

    def write_config(self, name, apps):
        path = os.path.join(self.dir, name + ".toml")
        with open(path, "w") as f:  # home and log_dir are relative to the config file
            f.write('[daemon]\nhome = "run"\nlog_dir = "logs"\n' + self.daemon_extra + apps)
        return path

    def ctl(self, *args, check=True, timeout=60):
        return run([L4CTL, "-c", self.cfg0, *args], check=check, timeout=timeout)

    def version(self):
        return run([L4CTL, "--version"]).stdout.strip().splitlines()[0]

    def start_daemon(self):
        with open(os.path.join(self.dir, "daemon.stderr"), "w") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen([L4CTL, "-c", self.cfg0, "daemon", "--log-file"],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         preexec_fn=self.preexec)
        self.pid = self.proc.pid
        pidfile = os.path.join(self.dir, "run", "l4ctl.pid")

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("l4ctl daemon exited %d, see %s" % (self.proc.returncode, self.dir))
            try:
                with open(pidfile) as f:
                    mine = f.read().strip() == str(self.pid)
            except FileNotFoundError:
                return False
            return mine and self.ctl("status", "--json", check=False).returncode == 0
        wait_for(up, 20, 0.02, what="l4ctl daemon")


class PM2Daemon:
    """A PM2 daemon in a PM2_HOME of its own (wiped at start if wipe), spawned by `pm2 ping`,
    its pid from pm2.pid."""
    name = "PM2"
    kill_timeout, exit_wait = 30, 10  # s for `pm2 kill`, then for the daemon to be gone

    def __init__(self, home, wipe=True):
        self.home, self.wipe = home, wipe
        self.env = dict(os.environ, PM2_HOME=home)
        self.pid = None

    def ctl(self, *args, check=True, timeout=60):
        return run([PM2_BIN, *args], env=self.env, check=check, timeout=timeout)

    def version(self):  # from package.json: `pm2 --version` may spawn a daemon
        with open(os.path.join(PEERS, "node_modules", "pm2", "package.json")) as f:
            return json.load(f)["version"]

    def read_pid(self):
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                pid = int(f.read().strip())
            return None if is_dead(pid) else pid
        except (FileNotFoundError, ValueError):
            return None

    def jlist(self):
        out = self.ctl("jlist").stdout
        return json.loads(out[out.index("["):]) if "[" in out else []

    def start_daemon(self):
        if self.read_pid():  # a daemon left over in our own home from an aborted run
            self.ctl("kill", check=False)
        if self.wipe:
            shutil.rmtree(self.home, ignore_errors=True)
        os.makedirs(self.home, exist_ok=True)
        self.ctl("ping")
        self.pid = wait_for(self.read_pid, 20, what="PM2 daemon pid")

    def shutdown(self):
        pid = self.read_pid()
        if not pid:  # not running: `pm2 kill` would spawn a daemon just to stop it
            return
        self.ctl("kill", check=False, timeout=self.kill_timeout)
        try:
            wait_for(lambda: is_dead(pid), self.exit_wait, 0.05, what="PM2 daemon exit")
        except TimeoutError:
            os.kill(pid, signal.SIGTERM)  # the daemon this run spawned in its own PM2_HOME


# ------------------------------------------------------------------ cleanup
def install_signal_handlers():
    """SIGINT/SIGTERM unwind (KeyboardInterrupt, SystemExit 143) through measure_and_clean_up's
    finally, so every daemon is stopped.  SIGINT explicitly: a background job would otherwise
    inherit it as ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def sweep(match, exe=None):
    """SIGKILL every live process but this one whose environment (a list of b"KEY=value")
    match accepts, and, if exe is given, whose /proc/PID/exe is exe.  Returns their pids."""
    killed = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        pid = int(d)
        try:
            if exe is not None and os.readlink("/proc/%d/exe" % pid) != exe:
                continue
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if match(env) and not is_dead(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def measure_and_clean_up(measure, daemons, tmp, kept_note, leftovers=None, leftovers_note=None):
    """measure()'s result.  Afterwards, also on error, SIGINT or SIGTERM: every daemon in daemons
    (a list measure may still fill) is shut down, each even if another fails; leftovers() (which
    SIGKILLs this run's stray processes and returns their pids) runs; tmp is removed, or kept
    and named on stderr after kept_note when measure() did not finish."""
    ok = False
    try:
        raw = measure()
        ok = True
        return raw
    finally:
        for t in daemons:
            try:
                t.shutdown()
            except Exception as e:  # keep going: the others must be stopped too
                print("warning: %s shutdown: %s" % (t.name, e), file=sys.stderr)
        if leftovers:
            left = leftovers()
            if left:
                print(leftovers_note % (len(left), left), file=sys.stderr)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(kept_note, tmp, file=sys.stderr)


# ------------------------------------------------------------------ nginx
class Nginx:
    """A private nginx in folder d (one worker process, no access log, its temp files in d) with
    `http` inside its http block; started at once, stopped by stop()."""

    def __init__(self, d, http):
        self.dir = d
        conf = ("worker_processes 1;\nworker_rlimit_nofile 65536;\npid %(d)s/nginx.pid;\nerror_log %(d)s/error.log;\n"
                "events { worker_connections 16384; }\nhttp {\n  access_log off;\n"
                "  client_body_temp_path %(d)s/body; proxy_temp_path %(d)s/proxy;\n"
                "  fastcgi_temp_path %(d)s/f; uwsgi_temp_path %(d)s/u; scgi_temp_path %(d)s/s;\n%(http)s}\n"
                % {"d": d, "http": http})
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.args = ["nginx", "-p", d + "/", "-e", d + "/error.log", "-c", d + "/nginx.conf"]
        run(self.args)

    def pids(self):
        with open(os.path.join(self.dir, "nginx.pid")) as f:
            master = int(f.read())
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        return [master] + [int(k) for k in kids]

    def stop(self):
        subprocess.run(self.args + ["-s", "stop"], capture_output=True)


# ------------------------------------------------------------------ report
def print_markdown_table(head, body):
    """After an empty line: head, a separator and the body rows, each column as wide as its widest cell."""
    w = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cells)) + " |"
    print("\n" + line(head) + "\n|" + "|".join("-" * (x + 2) for x in w) + "|")
    for b in body:
        print(line(b))


def write_results(kind, stamp, meta, rows, raw):
    """bench/results/<kind>-<stamp>.json with meta, summary (the rows) and raw; returns its path."""
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, "%s-%s.json" % (kind, stamp))
    with open(out, "w") as f:
        json.dump({"meta": meta, "summary": rows, "raw": raw}, f, indent=1)
    return out
