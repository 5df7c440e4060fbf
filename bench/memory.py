#!/usr/bin/env python3
"""Memory ceiling reaction and sampling cost: l4ctl vs PM2, side by side in one run.

Usage: L4CTL=target/release/l4ctl bench/memory.sh [--quick] [--strict] [--l4-reps N] [--pm2-reps N] ...
memory.sh installs PM2 (bench/.peers, npm, local, once).  Both daemons run at the same time, each
with its own home: PM2_HOME = bench/.peers/pm2home-memory (wiped at start), the l4ctl home in a
temp dir (`api_listen = "off"`).  The l4ctl daemon runs in the foreground as our child
(`l4ctl -c CFG daemon --log-file`); the PM2 daemon is spawned by `pm2 ping`, pid from pm2.pid.

a. Memory ceiling reaction.  workloads/hog.py (sleeps HOG_START_DELAY = 2 s, then allocates 20 MiB
   of touched memory every 100 ms, capped at HOG_CAP_MB = 1536) under a 100 MiB ceiling in both
   tools: l4ctl `max_memory_restart = "100M"` (kill_timeout 5 s; the other settings default:
   memory_samples 2, sample_interval 1 s, and 100 ms samples for instances younger than 5 s or at
   half their ceiling or more; SIGKILL at once past 1.5 x the ceiling), PM2
   `max_memory_restart: "100M"` (fork mode, checked every 30 s by its worker; SIGINT, then SIGKILL
   after kill_timeout 1.6 s).  The same python3 runs the hog in both (its real path, not a shim).
   Per rep: start the app, find the hog's pid (checked: its cmdline runs hog.py and it descends
   from the tool's daemon; its first sample must be under the ceiling), then poll
   /proc/PID/status every 2 ms (as research/peer-bench watch_hog does) until the hog is gone or a
   zombie.  reaction = from the first sample with VmRSS >= 100 MiB ("crossing") to the first
   sample that sees the hog dead; peak = the largest VmRSS or VmHWM (the kernel's own high-water
   mark, so a peak between two samples is not missed) seen.  The tool must then report a memory
   restart (l4ctl status --json: last_exit.reason "memory"; PM2 jlist: restart_time >= 1);
   both start a new hog at once, so the app is deleted right away (the new hog is still in its
   2 s sleep) and the new hog is checked dead.
   Start phase: a random wait before every start, uniform over the tool's timer period (l4ctl
   0-1 s, its sample_interval; PM2 0-30 s, its worker interval).  l4ctl's 100 ms samples of a
   young instance are a chain armed when the instance is spawned, and the hog's 100 ms steps
   count from its own start, so a wait before the start cannot move one against the other:
   HOG_START_DELAY is 2 s plus uniform(0, --hog-jitter = 0.1 s) per rep (both tools), which
   does.  The crossing thus lands at a uniformly random point of each tool's cycles.  Reps
   interleave: the l4ctl reps are split into blocks run before each PM2 rep and after the last.
   Targets: l4ctl reaction <= 1.5 s in every rep; l4ctl hog peak < 150 MiB (1.5 x the ceiling)
   in every rep.  PM2 for reference (research/peer-baseline.md note 3: 0-30 s, median 15.7 s).
b. Sampling cost.  l4ctl: one app of 100 idle instances (`script = "sleep"`,
   `args = ["100000"]`, no port, no ceiling); PM2 the same (fork mode, interpreter none).  After
   all 100 are online in both and `--settle` s, both daemons' CPU over one shared 30 s window
   (10 s with --quick): per-thread /proc/PID/task/*/schedstat field 1 deltas, sampled every
   0.1 s so threads that exit still count (common.py's cpu_window; utime+stime ticks kept in
   the JSON as a cross-check).  l4ctl's CPU per sampling pass = CPU / (window / 1 s); all of the
   idle daemon's CPU is charged to sampling, so this is an upper bound.  Target < 5 ms per pass.
   Also the daemons' VmRSS with 100 instances.  PM2 samples nothing when idle (its 30 s worker
   only checks apps with a ceiling); its row is context, not a target.

Every wait has a deadline; only processes this run started are signalled (by pid); at the end
(also on error, SIGINT or SIGTERM) both daemons are stopped (`l4ctl kill`, `pm2 kill`) and any
hog or sleep of this run still alive (found by L4BENCH_MEMORY_RUN=<this run's temp dir> in its
environment) is SIGKILLed.  Peak memory: the PM2 hog reaches the 1.5 GiB cap in most reps.
Exit status 0 when every measurement ran; with --strict, 1 if a target is missed.
"""
import argparse, json, os, random, shutil, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (HERE, PEERS, PM2_BIN, L4CTL, L4Daemon, PM2Daemon, cpu_window, descends_from,  # noqa: E402
                    install_signal_handlers, is_dead, kib, measure_and_clean_up, node_version, parse_status,
                    print_markdown_table, require_executables, rss_mib, run, sweep, wait_for, write_results)

HOG = os.path.join(HERE, "workloads", "hog.py")
PY = os.path.realpath(sys.executable)  # the real interpreter, not a pyenv shim
SLEEP = shutil.which("sleep") or "/bin/sleep"
PM2_HOME = os.path.join(PEERS, "pm2home-memory")
MIB = 1 << 20
CEIL = 100 * MIB  # "100M": 100 MiB in both tools
REACT_MAX_S, PEAK_MAX_MIB = 1.5, 150.0
CPU_PASS_MAX_MS = 5.0
L4_SAMPLE_S, L4_PERIOD_S, PM2_PERIOD_S = 1.0, 1.0, 30.0
MARK = "L4BENCH_MEMORY_RUN"


# ------------------------------------------------------------------ /proc helpers
def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def watch_hog(pid, timeout, every=0.002):
    """Poll /proc/PID/status every ~2 ms until the hog is gone or a zombie (or timeout s)."""
    path = "/proc/%d/status" % pid
    t_cross = t_dead = first = None
    peak_rss = peak_hwm = rss_cross = n = 0
    max_gap, prev = 0.0, None
    end = time.perf_counter() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            text = None
        now = time.perf_counter()
        if prev is not None:
            max_gap = max(max_gap, now - prev)
        prev = now
        s = parse_status(text) if text else None
        if s is None or s.get("State", "")[:1] in ("Z", "X"):
            t_dead = now
            break
        rss, hwm = kib(s, "VmRSS"), kib(s, "VmHWM")
        if rss is not None:
            n += 1
            rss_b = rss * 1024
            if first is None:
                first = rss_b
            peak_rss = max(peak_rss, rss_b)
            peak_hwm = max(peak_hwm, (hwm or 0) * 1024)
            if t_cross is None and rss_b >= CEIL:
                t_cross, rss_cross = now, rss_b
        if now > end:
            break
        time.sleep(every)
    return {"t_cross": t_cross, "t_dead": t_dead, "first_rss_mib": (first or 0) / MIB,
            "rss_at_cross_mib": rss_cross / MIB, "peak_rss_mib": peak_rss / MIB, "peak_hwm_mib": peak_hwm / MIB,
            "peak_mib": max(peak_rss, peak_hwm) / MIB, "samples": n, "max_poll_gap_ms": max_gap * 1e3}


def sweep_run(tmp):
    """SIGKILL every process of this run still alive: MARK=<tmp> in its environment."""
    tag = ("%s=%s" % (MARK, tmp)).encode()
    return sweep(lambda env: tag in env)


# ------------------------------------------------------------------ the two tools
class L4(L4Daemon):
    daemon_extra = 'api_listen = "off"\n'
    exit_wait = 30

    def __init__(self, tmp, hog_env, n_idle):
        d = os.path.join(tmp, "l4")
        os.makedirs(d)
        super().__init__(d)
        self.idle_cfg = self.write_config("idle", '\n[[apps]]\nname = "idle"\nscript = "sleep"\nargs = ["100000"]\n'
                                                  'instances = %d\n[apps.env]\n%s = "%s"\n'
                                          % (n_idle, MARK, hog_env[MARK]))

    def hog_config(self, hog_env):
        env = "".join('%s = "%s"\n' % kv for kv in hog_env.items())
        return self.write_config("hog", '\n[[apps]]\nname = "hog"\nscript = "%s"\nargs = ["%s"]\n'
                                        'max_memory_restart = "100M"\nkill_timeout = "5s"\n[apps.env]\n%s'
                                 % (PY, HOG, env))

    def instances(self, app):
        return [i for i in json.loads(self.ctl("status", "--json").stdout)["instances"] if i["app"] == app]

    def start(self, cfg):
        run([L4CTL, "start", cfg])

    def hog_pid(self, old=None):
        for i in self.instances("hog"):
            if i["state"] == "online" and i.get("pid") and i["pid"] != old:
                return i["pid"]
        return None

    def memory_restart(self, old):
        """The instance after the hog's death, once l4ctl reports it as a memory restart."""
        for i in self.instances("hog"):
            if (i.get("last_exit") or {}).get("reason") == "memory" and i["restarts_by_reason"].get("memory", 0) >= 1:
                return {"last_exit": i["last_exit"], "restarts_by_reason": i["restarts_by_reason"],
                        "new_pid": i["pid"] if i.get("pid") != old else None}
        return None

    def online(self, app):
        return sum(i["state"] == "online" and bool(i.get("pid")) for i in self.instances(app))

    def delete(self, app):
        self.ctl("delete", app)


class PM2(PM2Daemon):
    kill_timeout, exit_wait = 60, 15

    def __init__(self, tmp, hog_env, n_idle):
        super().__init__(PM2_HOME)
        self.dir = os.path.join(tmp, "pm2")
        os.makedirs(self.dir)
        self.idle_cfg = self.eco("idle", {"name": "idle", "script": SLEEP, "args": ["100000"], "interpreter": "none",
                                          "exec_mode": "fork", "instances": n_idle, "autorestart": True,
                                          "env": {MARK: hog_env[MARK]}})

    def hog_config(self, hog_env):
        return self.eco("hog", {"name": "hog", "script": HOG, "interpreter": PY, "exec_mode": "fork",
                                "max_memory_restart": "100M", "env": hog_env})

    def eco(self, name, app):
        app = dict(app, out_file=os.path.join(self.dir, name + "-out.log"),
                   error_file=os.path.join(self.dir, name + "-err.log"))
        path = os.path.join(self.dir, name + ".json")
        with open(path, "w") as f:
            json.dump({"apps": [app]}, f)
        return path

    def instances(self, app):
        return [p for p in self.jlist() if p["name"] == app]

    def start(self, cfg):
        self.ctl("start", cfg, timeout=180)

    def hog_pid(self, old=None):
        for p in self.instances("hog"):
            if p["pm2_env"]["status"] == "online" and p.get("pid") and p["pid"] != old:
                return p["pid"]
        return None

    def memory_restart(self, old):
        for p in self.instances("hog"):
            if p["pm2_env"].get("restart_time", 0) >= 1:
                return {"restart_time": p["pm2_env"]["restart_time"], "status": p["pm2_env"]["status"],
                        "new_pid": p["pid"] if p.get("pid") and p["pid"] != old else None}
        return None

    def online(self, app):
        return sum(p["pm2_env"]["status"] == "online" and bool(p.get("pid")) for p in self.instances(app))

    def delete(self, app):
        self.ctl("delete", app)


# ------------------------------------------------------------------ a. memory ceiling
def hog_rep(tool, phase_s, hog_env, watch_timeout):
    """One rep: wait phase_s, start the hog app, watch it until it dies, delete the app."""
    cfg = tool.hog_config(hog_env)
    time.sleep(phase_s)
    t_launch = time.perf_counter()
    tool.start(cfg)
    pid = wait_for(tool.hog_pid, 15, 0.005, what="%s: hog pid" % tool.name)
    t_pid = time.perf_counter()
    seen = [pid]
    try:
        assert HOG.encode() in cmdline(pid), "%s: pid %d does not run %s: %s" % (tool.name, pid, HOG, cmdline(pid))
        assert descends_from(pid, tool.pid), "%s: hog pid %d is not under the daemon %d" % (tool.name, pid, tool.pid)
        w = watch_hog(pid, watch_timeout)
        if w["first_rss_mib"] * MIB >= CEIL:
            raise RuntimeError("%s: hog pid %d found only after it crossed the ceiling (%.0f MiB)"
                               % (tool.name, pid, w["first_rss_mib"]))
        r = {"pid": pid, "phase_s": phase_s, "hog_start_delay": float(hog_env["HOG_START_DELAY"]),
             "pid_found_s": t_pid - t_launch, **w,
             "killed": w["t_dead"] is not None, "crossed": w["t_cross"] is not None}
        r["react_s"] = w["t_dead"] - w["t_cross"] if r["killed"] and r["crossed"] else None
        r["cross_after_launch_s"] = w["t_cross"] - t_launch if r["crossed"] else None
        for k in ("t_cross", "t_dead"):
            del r[k]
        if r["killed"]:  # the tool must say why: a memory restart
            why = wait_for(lambda: tool.memory_restart(pid), 5, 0.02, what="%s: a memory restart reported" % tool.name)
            r["reported"] = why
            if why.get("new_pid"):
                seen.append(why["new_pid"])
        else:
            r["reported"] = None
    finally:
        try:
            seen.append(tool.hog_pid(pid))  # a restarted hog not yet seen
        finally:
            tool.delete("hog")  # the new hog is still in its start delay
        for p in filter(None, seen):
            wait_for(lambda: is_dead(p), 15, 0.01, what="%s: hog pid %d to be gone after delete" % (tool.name, p))
    return r


def blocks(n, k):
    """n split into k nearly equal parts, larger ones first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def memceil(l4, pm2, a, rng, hog_env):
    res = {"l4ctl": [], "PM2": []}

    def do(tool, period):
        phase = rng.uniform(0, period)
        env = dict(hog_env, HOG_START_DELAY="%.4f" % (a.hog_delay + rng.uniform(0, a.hog_jitter)))
        r = hog_rep(tool, phase, env, a.watch_timeout)
        res[tool.name].append(r)
        print("  %-5s rep %d: phase %5.2f s  delay %.3f s  crossing -> dead %s  peak %.0f MiB  (rss at crossing %.0f MiB, "
              "poll gap max %.1f ms, %s)" % (
                  tool.name, len(res[tool.name]) - 1, phase, r["hog_start_delay"],
                  "%.3f s" % r["react_s"] if r["react_s"] is not None else "NOT KILLED within %.0f s" % a.watch_timeout,
                  r["peak_mib"], r["rss_at_cross_mib"], r["max_poll_gap_ms"],
                  "reported: %s" % json.dumps(r["reported"], sort_keys=True) if r["reported"] else "no restart reported"),
              flush=True)

    plan = blocks(a.l4_reps, a.pm2_reps + 1)
    for i, n in enumerate(plan):
        for _ in range(n):
            do(l4, L4_PERIOD_S)
        if i < a.pm2_reps:
            do(pm2, PM2_PERIOD_S)
    return res


# ------------------------------------------------------------------ b. sampling cost
def sampling_cost(l4, pm2, a):
    tools = [l4] + ([pm2] if a.pm2_idle else [])
    out = {"instances": a.instances, "start_s": {}}
    for t in tools:
        t0 = time.perf_counter()
        t.start(t.idle_cfg)
        wait_for(lambda: t.online("idle") == a.instances, 180, 0.25,
                 what="%s: %d idle instances online" % (t.name, a.instances))
        out["start_s"][t.name] = time.perf_counter() - t0
        print("  %s: %d idle instances online in %.1f s" % (t.name, a.instances, out["start_s"][t.name]), flush=True)
    time.sleep(a.settle)
    for t in tools:
        n = t.online("idle")
        assert n == a.instances, "%s: only %d of %d idle instances online" % (t.name, n, a.instances)
    out["rss_mib"] = {t.name: rss_mib(t.pid) for t in tools}
    out["window_s"], cpu = cpu_window([t.pid for t in tools], a.idle)
    out["cpu_detail"] = {t.name: cpu[t.pid] for t in tools}
    out["cpu_ms"] = {t.name: cpu[t.pid]["ms"] for t in tools}
    out["rss_after_mib"] = {t.name: rss_mib(t.pid) for t in tools}
    out["passes"] = out["window_s"] / L4_SAMPLE_S
    out["l4ctl_ms_per_pass"] = out["cpu_ms"]["l4ctl"] / out["passes"]
    for t in tools:  # every instance still there
        n = t.online("idle")
        assert n == a.instances, "%s: %d of %d idle instances online after the window" % (t.name, n, a.instances)
    print("  CPU over %.1f s idle: %s; l4ctl %.3f ms per pass; RSS (MiB) %s" % (
        out["window_s"], {k: round(v, 2) for k, v in out["cpu_ms"].items()}, out["l4ctl_ms_per_pass"],
        {k: round(v, 1) for k, v in out["rss_mib"].items()}), flush=True)
    for t in tools:
        t.delete("idle")
    return out


# ------------------------------------------------------------------ report
def stats(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)} if xs else None


def summarize(raw, a):
    rows = []
    mc = raw["memceil"]
    react = {k: stats([r["react_s"] for r in v if r["react_s"] is not None]) for k, v in mc.items()}
    peak = {k: stats([r["peak_mib"] for r in v]) for k, v in mc.items()}
    l4 = mc["l4ctl"]
    rows.append({"metric": "react_s", "label": "memory ceiling 100 MiB: crossing -> hog dead (s), median (min-max)",
                 "values": react, "ratio": (react["l4ctl"]["median"] / react["PM2"]["median"])
                 if react["l4ctl"] and react.get("PM2") else None,
                 "target": "l4ctl <= %.1f s, every rep" % REACT_MAX_S,
                 "pass": bool(l4) and all(r["react_s"] is not None and r["react_s"] <= REACT_MAX_S for r in l4),
                 "not_killed": {k: sum(r["react_s"] is None for r in v) for k, v in mc.items()}})
    rows.append({"metric": "peak_mib", "label": "hog peak RSS before death (MiB), median (min-max)",
                 "values": peak, "ratio": (peak["l4ctl"]["median"] / peak["PM2"]["median"])
                 if peak["l4ctl"] and peak.get("PM2") else None,
                 "target": "l4ctl < %.0f MiB, every rep" % PEAK_MAX_MIB,
                 "pass": bool(l4) and all(r["peak_mib"] < PEAK_MAX_MIB for r in l4)})
    sc = raw["sampling"]
    rows.append({"metric": "cpu_ms_per_pass",
                 "label": "sampling cost, %d idle instances: l4ctl CPU per pass (ms)" % sc["instances"],
                 "values": {"l4ctl": sc["l4ctl_ms_per_pass"]}, "ratio": None,
                 "target": "< %.0f ms" % CPU_PASS_MAX_MS, "pass": sc["l4ctl_ms_per_pass"] < CPU_PASS_MAX_MS})
    cpu = sc["cpu_ms"]
    rows.append({"metric": "idle_cpu_ms", "label": "daemon CPU over %.0f s idle, %d instances (ms)"
                 % (sc["window_s"], sc["instances"]), "values": dict(cpu),
                 "ratio": cpu["l4ctl"] / cpu["PM2"] if cpu.get("PM2") else None, "target": "(context)", "pass": None})
    rss = sc["rss_mib"]
    rows.append({"metric": "rss_mib", "label": "daemon RSS, %d idle instances (MiB)" % sc["instances"],
                 "values": dict(rss), "ratio": rss["l4ctl"] / rss["PM2"] if rss.get("PM2") else None,
                 "target": "(context)", "pass": None})
    return rows


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, dict):
        if x["n"] == 1:
            return "%s (n=1)" % fmt(x["median"])
        return "%s (%s-%s, n=%d)" % (fmt(x["median"]), fmt(x["min"]), fmt(x["max"]), x["n"])
    return "%.3f" % x if abs(x) < 10 else "%.1f" % x


def print_table(rows):
    print_markdown_table(("metric", "l4ctl", "PM2", "ratio l4ctl/PM2", "target", "pass/fail"),
                         [(r["label"], fmt(r["values"].get("l4ctl")), fmt(r["values"].get("PM2")),
                           "%.4f" % r["ratio"] if r["ratio"] is not None else "-", r["target"],
                           {True: "PASS", False: "FAIL", None: ""}[r["pass"]]) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="3 l4ctl reps, 1 PM2 rep, 10 s idle CPU window (instead of 6, 3, 30 s)")
    ap.add_argument("--l4-reps", type=int)
    ap.add_argument("--pm2-reps", type=int)
    ap.add_argument("--idle", type=float, help="idle CPU window, s (default 30; 10 with --quick)")
    ap.add_argument("--instances", type=int, default=100, help="idle instances for the sampling cost")
    ap.add_argument("--no-pm2-idle", dest="pm2_idle", action="store_false",
                    help="skip PM2's 100 idle instances (sampling cost context)")
    ap.add_argument("--hog-delay", type=float, default=2.0, help="HOG_START_DELAY, s")
    ap.add_argument("--hog-jitter", type=float, default=0.1,
                    help="add uniform(0, this) s to HOG_START_DELAY per rep: the phase vs l4ctl's 100 ms samples")
    ap.add_argument("--hog-cap", type=int, default=1536, help="HOG_CAP_MB")
    ap.add_argument("--watch-timeout", type=float, default=60.0, help="s to wait for a hog to die")
    ap.add_argument("--settle", type=float, default=6.0, help="s after the idle instances are online")
    ap.add_argument("--seed", type=int, help="random seed for the start phases (default: random)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args()
    a.l4_reps = a.l4_reps if a.l4_reps is not None else (3 if a.quick else 6)
    a.pm2_reps = a.pm2_reps if a.pm2_reps is not None else (1 if a.quick else 3)
    a.idle = a.idle or (10.0 if a.quick else 30.0)
    a.seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 30)
    if a.l4_reps < 1 or a.pm2_reps < 0:
        sys.exit("--l4-reps must be >= 1 and --pm2-reps >= 0")
    require_executables(((L4CTL, "L4CTL"), (PM2_BIN, "pm2 (run memory.sh)"), (PY, "python3")))
    if not os.path.exists(HOG):
        sys.exit("missing %s" % HOG)

    install_signal_handlers()  # both daemons and every hog are stopped on SIGINT/SIGTERM too
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4bench-memory-")
    hog_env = {"HOG_START_DELAY": "%g" % a.hog_delay, "HOG_CAP_MB": str(a.hog_cap), MARK: tmp}
    rng = random.Random(a.seed)
    l4, pm2 = L4(tmp, hog_env, a.instances), PM2(tmp, hog_env, a.instances)
    meta = {"timestamp": stamp, "l4ctl": os.path.abspath(L4CTL), "l4ctl_version": l4.version(),
            "debug_build": "/debug/" in os.path.abspath(L4CTL), "pm2_version": pm2.version(),
            "node_version": node_version(), "python": PY,
            "python_version": sys.version.split()[0], "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
            "args": vars(a), "tmp": tmp, "ceiling_bytes": CEIL, "hog_env": hog_env}
    print("l4ctl: %s (%s)  PM2 %s  node %s  cpus %d  load %.2f  seed %d" % (
        meta["l4ctl"], meta["l4ctl_version"], meta["pm2_version"], meta["node_version"], meta["cpus"],
        meta["loadavg_start"][0], a.seed), flush=True)

    def measure():
        raw = {}
        for t in (l4, pm2):
            t.start_daemon()
        print("a. memory ceiling 100 MiB: %d l4ctl reps, %d PM2 reps, interleaved" % (a.l4_reps, a.pm2_reps),
              flush=True)
        raw["memceil"] = memceil(l4, pm2, a, rng, hog_env)
        print("b. sampling cost: %d idle instances, %.0f s window" % (a.instances, a.idle), flush=True)
        raw["sampling"] = sampling_cost(l4, pm2, a)
        return raw
    raw = measure_and_clean_up(measure, (l4, pm2), tmp, "temp dir (l4ctl home and logs, PM2 logs) kept:",
                               lambda: sweep_run(tmp), "killed %d process(es) of this run still alive: %s")
    meta["loadavg_end"] = os.getloadavg()
    rows = summarize(raw, a)
    print_table(rows)
    print("\nper rep, crossing -> dead (s): " + "; ".join(
        "%s %s" % (k, " ".join("%.3f" % r["react_s"] if r["react_s"] is not None else "none" for r in v))
        for k, v in raw["memceil"].items() if v))
    print("per rep, hog peak (MiB):      " + "; ".join(
        "%s %s" % (k, " ".join("%.0f" % r["peak_mib"] for r in v)) for k, v in raw["memceil"].items() if v))
    print("per rep, how l4ctl ended the hog: " + " ".join(
        (r["reported"] or {}).get("last_exit", {}).get("signal") or "-" for r in raw["memceil"]["l4ctl"])
        + " (SIGTERM: restart after 2 samples over; SIGKILL: seen past 1.5 x the ceiling)")
    print("start -> crossing, median (s): " + "; ".join(
        "%s %.2f" % (k, statistics.median([r["cross_after_launch_s"] for r in v if r["crossed"]]))
        for k, v in raw["memceil"].items() if any(r["crossed"] for r in v)))
    sc = raw["sampling"]
    print("idle window %.1f s = %.1f l4ctl passes; CPU by schedstat (ms) %s, by ticks %s" % (
        sc["window_s"], sc["passes"], {k: round(v["ms"], 2) for k, v in sc["cpu_detail"].items()},
        {k: v["tick_ms"] for k, v in sc["cpu_detail"].items()}))
    print("load average start %.2f, end %.2f" % (meta["loadavg_start"][0], meta["loadavg_end"][0]))
    out = write_results("memory", stamp, meta, rows, raw)
    print("raw numbers:", out, "(debug l4ctl build)" if meta["debug_build"] else "")
    return 1 if a.strict and not all(r["pass"] for r in rows if r["pass"] is not None) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is stopped by then (main's finally)
        sys.exit("interrupted")
