#!/usr/bin/env python3
"""l4ctl vs PM2, side by side in one run, on the same workloads and the same machine.

Usage: L4CTL=target/release/l4ctl bench/supervisor.sh [--quick] [--strict] [--status-runs N] ...
supervisor.sh installs PM2 (bench/.peers, npm, local, once) and compiles workloads/port_worker.c
(listens on 127.0.0.1:$PORT, answers every connection with its pid).  Both daemons run at the
same time, each with its own home: PM2_HOME = bench/.peers/pm2home-supervisor (wiped at start),
the l4ctl home in a temp dir.  The l4ctl daemon runs in the foreground as our child
(`l4ctl -c CFG daemon --log-file`); the PM2 daemon is spawned by `pm2 ping`, pid from pm2.pid.

Workload: one app of N instances of the C worker.  l4ctl: instance i gets PORT = 9300 + i.
PM2: one fork-mode app, `instances: N`, `increment_var: "PORT"` from 9320, autorestart true,
restart_delay 0 (fork mode: cluster mode only runs Node scripts; one app with N instances is
the same shape as the l4ctl app).

Metrics in the order they run; ratio = l4ctl / PM2 (lower is better), target in brackets:
  rss0   daemon VmRSS, 0 apps, 4 s after start                                   [<= 0.1]
  rss8   daemon VmRSS, 8 idle workers, 4 s after all 8 ports answer              [<= 0.1]
         then (l4ctl only, not a ratio) its VmRSS before and after its dashboard page and
         assets are fetched from its TCP API: the embedded page costs nothing until asked for
  cpu    daemon CPU over 60 s idle with 8 workers (10 s with --quick), both daemons in
         one window: per-thread /proc/PID/task/*/schedstat field 1 (ns on CPU), sampled
         every 0.1 s so threads that exit still count (utime+stime has 10 ms ticks: too
         coarse, kept in the JSON as a cross-check)                             [<= 1]
  crash  SIGKILL of a worker (pid from its answer, checked to descend from our daemon)
         until a NEW pid answers on its port, connect() every 0.5 ms; 10 reps per tool,
         interleaved with the order alternating, >= 2.5 s apart (> min_uptime 1 s)  [<= 1/3]
  status `l4ctl -c CFG status --json` vs `pm2 jlist`, 4 workers online; 30 runs after 3
         warm-ups, hyperfine -N if installed, else perf_counter around subprocess.run
         (adds ~1 ms of fork/exec: spawn_floor_ms in the JSON)                  [<= 1/50]
  cold   8 instances, daemon up with no apps: from launching `l4ctl start CFG` /
         `pm2 start eco.json` until all 8 ports answer; 5 reps per tool, interleaved,
         order alternating; `delete all`, ports refusing and 1 s quiet before each rep [<= 1/2]
  rss100 daemon VmRSS, 100 instances of `sleep 3600` (no ports), 4 s after all are online:
         l4ctl's includes each instance's history ring, allocated in full (one hour) at
         its first sample                                                       [<= 0.1]
  update `l4ctl update` vs `pm2 update` with 8 workers under a connection loop and a log
         flood: workers restarted, connections failed, log lines lost, time until status
         shows all 8 online again (bench/update_inplace.py has the method)  [l4ctl: 0, 0, 0]
Medians are reported, min/max/n too; raw numbers go to bench/results/supervisor-<ts>.json.
Every wait has a deadline, only 127.0.0.1 is used, only processes this run started are
signalled (by pid), and both daemons are stopped at the end (`l4ctl kill`, `pm2 kill`),
also on error, SIGINT or SIGTERM.  The probe shares the CPUs with both daemons: on a 2-core
box expect +-20 % on anything that starts processes.  Exit status 0 when every measurement
ran; with --strict, 1 if a target is missed.
"""
import argparse, json, os, shlex, shutil, signal, socket, statistics, subprocess
import sys, tempfile, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from update_inplace import measure_update  # noqa: E402
from common import (PEERS, PM2_BIN, L4CTL, L4Daemon, PM2Daemon, cpu_window, descends_from,  # noqa: E402
                    install_signal_handlers, measure_and_clean_up, node_version, print_markdown_table,
                    require_executables, rss_kib, rss_mib, run, wait_for, write_results)

WORKER = os.path.join(PEERS, "bin", "port_worker")
L4_PORT, PM2_PORT = 9300, 9320

TARGETS = {"status_ms": (1 / 50, "<= 0.02 (50x faster)"), "rss0_mib": (1 / 10, "<= 0.1"),
           "rss8_mib": (1 / 10, "<= 0.1"), "cpu_ms": (1.0, "<= 1"),  # max ratio l4ctl/PM2, label
           "crash_ms": (1 / 3, "<= 0.33 (3x faster)"), "cold8_ms": (1 / 2, "<= 0.5 (2x faster)"),
           "rss100_mib": (1 / 10, "<= 0.1")}


# ------------------------------------------------------------------ socket helpers
def probe(port, timeout=0.2):
    """The pid a worker on 127.0.0.1:port answers with, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            reply = s.recv(32).decode().strip()
            return int(reply) if reply.isdigit() else None
    except OSError:
        return None


def ports_closed(ports):
    return all(probe(p) is None for p in ports)


# ------------------------------------------------------------------ the two tools
class L4(L4Daemon):
    base_port, env = L4_PORT, None  # env: inherit ours
    daemon_extra = 'api_listen = "127.0.0.1:0"\n'  # the dashboard row reads run/api.addr; never the user's 9615

    def config(self, name, n):
        """A config in self.dir running n workers (none: the daemon's own)."""
        return self.write_config(name, '\n[[apps]]\nname = "w"\nscript = "%s"\ninstances = %d\nport = %d\n'
                                       % (WORKER, n, self.base_port) if n else "")

    def start_argv(self, n):
        return [L4CTL, "start", self.config("w%d" % n, n)]

    def online(self):
        return sum(i["state"] == "online" for i in json.loads(self.ctl("status", "--json").stdout)["instances"])


class PM2(PM2Daemon):
    base_port = PM2_PORT

    def __init__(self):
        super().__init__(os.path.join(PEERS, "pm2home-supervisor"))
        self.status_argv = [PM2_BIN, "jlist"]

    def start_argv(self, n):
        path = os.path.join(self.home, "eco-w%d.json" % n)
        app = {"name": "w", "script": WORKER, "interpreter": "none", "exec_mode": "fork",
               "instances": n, "increment_var": "PORT", "env": {"PORT": self.base_port},
               "autorestart": True, "restart_delay": 0}
        with open(path, "w") as f:
            json.dump({"apps": [app]}, f)
        return [PM2_BIN, "start", path]

    def online(self):
        return sum(p["pm2_env"]["status"] == "online" for p in self.jlist())


def start_idle(tool, n):
    """n instances of `sleep 3600`, no ports, until all are online."""
    if tool.name == "l4ctl":
        argv = [L4CTL, "start", tool.write_config("s%d" % n, '\n[[apps]]\nname = "s"\nscript = "sleep"\n'
                                                               'args = ["3600"]\ninstances = %d\n' % n)]
    else:
        path = os.path.join(tool.home, "eco-s%d.json" % n)
        with open(path, "w") as f:
            json.dump({"apps": [{"name": "s", "script": shutil.which("sleep"), "args": "3600", "interpreter": "none",
                                 "exec_mode": "fork", "instances": n, "autorestart": True}]}, f)
        argv = [PM2_BIN, "start", path]
    run(argv, env=tool.env, timeout=120)
    wait_for(lambda: tool.online() == n, 120, 0.2, what="%s: %d online" % (tool.name, n))


def dashboard_rss(l4):
    """l4ctl's VmRSS (KiB) before and after its dashboard's three files are fetched."""
    with open(os.path.join(l4.dir, "run", "api.addr")) as f:
        addr = f.read().strip()
    before = rss_kib(l4.pid)
    sizes = {}
    for path in ("/", "/assets/dashboard.js", "/assets/dashboard.css"):
        try:
            with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=10) as r:
                sizes[path] = len(r.read())
        except urllib.error.HTTPError as e:  # an l4ctl from before the dashboard
            sizes[path] = "HTTP %d" % e.code
    time.sleep(0.5)
    return {"before_kib": before, "after_kib": rss_kib(l4.pid), "bytes": sizes}


# ------------------------------------------------------------------ measurements
def start_apps(tool, n):
    run(tool.start_argv(n), env=tool.env)
    ports = range(tool.base_port, tool.base_port + n)
    wait_for(lambda: all(probe(p) for p in ports), 20, what="%s: %d ports" % (tool.name, n))
    wait_for(lambda: tool.online() == n, 20, 0.1, what="%s: %d online" % (tool.name, n))


def stop_apps(tool, n):
    tool.ctl("delete", "all")
    wait_for(lambda: ports_closed(range(tool.base_port, tool.base_port + n)), 20,
             what="%s: ports closed" % tool.name)


def time_cmd(argv, env, runs):
    """Wall-clock ms per run of argv (3 warm-ups first)."""
    if shutil.which("hyperfine"):
        out = os.path.join(tempfile.gettempdir(), "l4bench-hf-%d.json" % os.getpid())
        run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", out,
             shlex.join(argv)], env=env, timeout=600)
        with open(out) as f:
            times = json.load(f)["results"][0]["times"]
        os.unlink(out)
        return [t * 1e3 for t in times], "hyperfine -N"
    times = []
    for i in range(runs + 3):
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        dt = (time.perf_counter() - t0) * 1e3
        assert r.returncode == 0, "%s exited %d" % (shlex.join(argv), r.returncode)
        if i >= 3:
            times.append(dt)
    return times, "perf_counter around subprocess.run"


def crash_once(tool, port):
    old = wait_for(lambda: probe(port), 10, what="%s port %d" % (tool.name, port))
    assert descends_from(old, tool.pid), "pid %d on port %d is not under the %s daemon" % (old, port, tool.name)
    t0 = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    deadline = t0 + 15
    while time.perf_counter() < deadline:
        new = probe(port, timeout=0.5)
        if new and new != old:
            return (time.perf_counter() - t0) * 1e3
        time.sleep(0.0005)
    raise TimeoutError("%s: no new pid on port %d within 15 s" % (tool.name, port))


def cold_start_once(tool, n):
    ports = list(range(tool.base_port, tool.base_port + n))
    assert ports_closed(ports), "%s: ports still open before a cold start" % tool.name
    argv = tool.start_argv(n)
    t0 = time.perf_counter()
    cp = subprocess.Popen(argv, env=tool.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    up, t_exit, deadline = {}, None, t0 + 30
    while len(up) < n and time.perf_counter() < deadline:
        for p in ports:
            if p not in up and probe(p, timeout=0.5):
                up[p] = time.perf_counter() - t0
        if t_exit is None and cp.poll() is not None:
            t_exit = time.perf_counter() - t0
        time.sleep(0.0005)
    if t_exit is None:
        cp.wait(30)
        t_exit = time.perf_counter() - t0
    assert cp.returncode == 0, "%s exited %d" % (shlex.join(argv), cp.returncode)
    assert len(up) == n, "%s: only %d of %d ports answered within 30 s" % (tool.name, len(up), n)
    return {"all_ms": max(up.values()) * 1e3, "first_ms": min(up.values()) * 1e3, "cli_exit_ms": t_exit * 1e3}


def measure(l4, pm2, a):
    tools, raw = (l4, pm2), {}
    for t in tools:
        t.start_daemon()
    if a.update_only:
        return {"update": measure_update(l4, pm2, l4.dir)}
    time.sleep(a.settle)
    raw["rss0_mib"] = {t.name: rss_mib(t.pid) for t in tools}
    print("rss, 0 apps (MiB):", raw["rss0_mib"], flush=True)

    for t in tools:
        start_apps(t, 8)
    time.sleep(a.settle)
    raw["rss8_mib"] = {t.name: rss_mib(t.pid) for t in tools}
    print("rss, 8 workers (MiB):", raw["rss8_mib"], flush=True)
    raw["dashboard_rss"] = dashboard_rss(l4)
    print("l4ctl rss before/after its dashboard is served (KiB):", raw["dashboard_rss"], flush=True)

    raw["cpu_window_s"], cpu = cpu_window([t.pid for t in tools], a.idle)
    raw["cpu_detail"] = {t.name: cpu[t.pid] for t in tools}
    raw["cpu_ms"] = {t.name: cpu[t.pid]["ms"] for t in tools}
    print("cpu over %.1f s idle:" % raw["cpu_window_s"], raw["cpu_detail"], flush=True)

    # interleaved, the order alternating per rep; 1.25 s of quiet before every kill, so each
    # tool's kills are >= 2.5 s apart and neither restarts while the other is still busy
    raw["crash_ms"] = {t.name: [] for t in tools}
    for rep in range(a.crash_reps):
        for t in tools[::1 - 2 * (rep % 2)]:
            time.sleep(1.25)
            raw["crash_ms"][t.name].append(crash_once(t, t.base_port + rep % 8))
        print("crash rep %d (ms):" % rep, {k: round(v[-1], 1) for k, v in raw["crash_ms"].items()}, flush=True)
    for t in tools:
        stop_apps(t, 8)

    raw["status_ms"], raw["status_method"] = {}, None
    for t in tools:
        start_apps(t, 4)
        raw["status_ms"][t.name], raw["status_method"] = time_cmd(t.status_argv, t.env, a.status_runs)
        print("status %s: median %.1f ms" % (t.name, statistics.median(raw["status_ms"][t.name])), flush=True)
        stop_apps(t, 4)
    raw["spawn_floor_ms"] = statistics.median(time_cmd(["/bin/true"], None, a.status_runs)[0])

    raw["cold8"] = {t.name: [] for t in tools}
    for rep in range(a.cold_reps):
        for t in tools[::1 - 2 * (rep % 2)]:  # alternate who goes first
            time.sleep(1)
            raw["cold8"][t.name].append(cold_start_once(t, 8))
            stop_apps(t, 8)
        print("cold start rep %d (all 8, ms):" % rep,
              {k: round(v[-1]["all_ms"], 1) for k, v in raw["cold8"].items()}, flush=True)
    raw["cold8_ms"] = {k: [r["all_ms"] for r in v] for k, v in raw["cold8"].items()}

    for t in tools:
        start_idle(t, 100)
    time.sleep(a.settle)
    raw["rss100_mib"] = {t.name: rss_mib(t.pid) for t in tools}
    print("rss, 100 instances (MiB):", raw["rss100_mib"], flush=True)
    for t in tools:
        t.ctl("delete", "all", timeout=120)

    raw["update"] = measure_update(l4, pm2, l4.dir)
    return raw


# ------------------------------------------------------------------ report
def summarize(raw):
    rows = []
    for key, label in [("status_ms", "status latency, median (ms)"), ("rss0_mib", "daemon RSS, 0 apps (MiB)"),
                       ("rss8_mib", "daemon RSS, 8 workers (MiB)"),
                       ("cpu_ms", "daemon CPU, %.0f s idle w/ 8 (ms)" % raw["cpu_window_s"]),
                       ("crash_ms", "SIGKILL -> new pid answers (ms)"), ("cold8_ms", "cold start, all 8 answer (ms)"),
                       ("rss100_mib", "daemon RSS, 100 instances (MiB)")]:
        row = {"metric": key, "label": label, "target": TARGETS[key][1]}
        for tool, v in raw[key].items():
            row[tool] = statistics.median(v) if isinstance(v, list) else v
            if isinstance(v, list):
                row[tool + "_min_max_n"] = [min(v), max(v), len(v)]
        # a PM2 daemon that used no CPU at all in a short window: no ratio can pass
        row["ratio"] = row["l4ctl"] / row["PM2"] if row["PM2"] else float("inf")
        row["pass"] = row["ratio"] <= TARGETS[key][0]
        rows.append(row)
    return rows


def print_table(rows, raw):
    fmt = lambda x: "%.3f" % x if x < 10 else "%.1f" % x
    print_markdown_table(("metric", "l4ctl", "PM2", "ratio l4ctl/PM2", "target", "pass/fail"),
                         [(r["label"], fmt(r["l4ctl"]), fmt(r["PM2"]), "%.4f" % r["ratio"], r["target"],
                           "PASS" if r["pass"] else "FAIL") for r in rows])
    print()
    for r in rows:
        if "l4ctl_min_max_n" in r:
            print("%s min/max/n: l4ctl %.1f/%.1f/%d, PM2 %.1f/%.1f/%d"
                  % (r["label"], *r["l4ctl_min_max_n"], *r["PM2_min_max_n"]))
    print("cold start, CLI exit median (ms): l4ctl %.1f, PM2 %.1f" % tuple(
        statistics.median([x["cli_exit_ms"] for x in raw["cold8"][k]]) for k in ("l4ctl", "PM2")))
    print("status timed with %s; spawn floor (/bin/true) %.2f ms" % (raw["status_method"], raw["spawn_floor_ms"]))
    d = raw["dashboard_rss"]
    print("l4ctl RSS before/after serving its dashboard (%s): %d / %d KiB" % (
        d["bytes"], d["before_kib"], d["after_kib"]))
    print_update(raw["update"])


def print_update(u):
    print()
    if any("error" in v for v in u.values()):
        print("update row not measured:", {k: v.get("error") for k, v in u.items()})
        return
    print_markdown_table(("`l4ctl update` vs `pm2 update`, 8 workers under load", "l4ctl", "PM2"), [
        ("workers restarted", str(u["l4ctl"]["restarts"]), str(u["PM2"]["restarts"])),
        ("connections failed (of answered)", "%d (of %d)" % (u["l4ctl"]["failed"], u["l4ctl"]["answered"]),
         "%d (of %d)" % (u["PM2"]["failed"], u["PM2"]["answered"])),
        ("log lines lost / duplicated", "%d / %d" % (u["l4ctl"]["lost"], u["l4ctl"]["duplicated"]),
         "%d / %d" % (u["PM2"]["lost"], u["PM2"]["duplicated"])),
        ("status shows all 8 online again (ms)", "%.1f" % u["l4ctl"]["api_ms"], "%.1f" % u["PM2"]["api_ms"]),
        ("update command (ms)", "%.1f" % u["l4ctl"]["cmd_ms"], "%.1f" % u["PM2"]["cmd_ms"]),
        ("daemon away (ms, as l4ctl update prints it)", str(u["l4ctl"]["away_ms"]), "-"),
        ("of which from the exec until its API answers (ms)", str(u["l4ctl"].get("since_exec_ms")), "-")])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="idle CPU window 10 s instead of 60 s")
    ap.add_argument("--status-runs", type=int, default=30)
    ap.add_argument("--crash-reps", type=int, default=10)
    ap.add_argument("--cold-reps", type=int, default=5)
    ap.add_argument("--settle", type=float, default=4.0, help="seconds before each RSS reading")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--update-only", action="store_true", help="only the `update` row")
    a = ap.parse_args()
    a.idle = 10.0 if a.quick else 60.0
    require_executables(((L4CTL, "L4CTL"), (PM2_BIN, "pm2 (run supervisor.sh)"), (WORKER, "port_worker")))
    busy = [p for p in list(range(L4_PORT, L4_PORT + 8)) + list(range(PM2_PORT, PM2_PORT + 8)) if probe(p)]
    if busy:
        sys.exit("ports already in use on 127.0.0.1: %s" % busy)

    install_signal_handlers()  # both daemons are stopped on SIGINT/SIGTERM too
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4bench-")
    l4, pm2 = L4(tmp), PM2()
    meta = {"timestamp": stamp, "l4ctl": os.path.abspath(L4CTL),
            "l4ctl_version": l4.version(),
            "debug_build": "/debug/" in os.path.abspath(L4CTL), "pm2_version": pm2.version(),
            "node_version": node_version(), "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "quick": a.quick}
    print("l4ctl: %s (%s)  PM2 %s  node %s  cpus %d  load %.2f" % (
        meta["l4ctl"], meta["l4ctl_version"], meta["pm2_version"], meta["node_version"],
        meta["cpus"], meta["loadavg_start"][0]), flush=True)
    raw = measure_and_clean_up(lambda: measure(l4, pm2, a), (l4, pm2), tmp, "l4ctl home and logs kept in")
    meta["loadavg_end"] = os.getloadavg()
    if a.update_only:
        print_update(raw["update"])
        print("\nraw numbers:", write_results("supervisor-update", stamp, meta, [], raw))
        return 0
    rows = summarize(raw)
    print_table(rows, raw)
    out = write_results("supervisor", stamp, meta, rows, raw)
    print("\nraw numbers:", out, "(debug l4ctl build)" if meta["debug_build"] else "")
    return 1 if a.strict and not all(r["pass"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
