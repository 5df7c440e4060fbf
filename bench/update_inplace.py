"""The update row of bench/supervisor.sh: `l4ctl update` vs `pm2 update`, under the same load.

Each tool runs 8 instances of workloads/update_worker.py (answers every connection with its pid;
writes ~2,000 numbered lines a second to stdout; at SIGINT/SIGTERM it records how many it wrote).
A thread connects to the 8 ports round robin without pause and reads the pid; the update command
runs 2 s into the load, and the load goes on until 3 s after every worker answers and the tool's
status shows all 8 online again. Reported per tool:
  restarts  workers whose pid changed
  failed    connections refused or unanswered during the run
  lost      lines the workers wrote (their own count at the end) that are not in the log files
  api_ms    from the update command's start until the tool's status command answers with all 8
            online (polled: `l4ctl status --json` ~2 ms a call, `pm2 jlist` ~200 ms a call)
  cmd_ms    the update command's own wall time
  away_ms   l4ctl only: how long its daemon was away, as `l4ctl update` prints it (from the
            freeze; and since_exec_ms, from the exec, until the new program's API takes connections)
The l4ctl daemon re-execs the l4ctl-daemon it was started from (the same build: what is measured
is the handover, not a version change). `pm2 update` saves, kills its daemon and every process, and
resurrects them in a new daemon: that is what its users see.
"""
import glob, json, os, re, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, L4CTL, PM2_BIN, run, wait_for  # noqa: E402

WORKER = os.path.join(HERE, "workloads", "update_worker.py")
N = 8
LINE = re.compile(rb"(\d+) line (\d+)\s*$")


class Load:
    """Connections to ports round robin, counted, until stopped."""

    def __init__(self, ports):
        self.ports, self.ok, self.failed, self.stop = list(ports), 0, 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import socket
        i = 0
        while not self.stop:
            port = self.ports[i % len(self.ports)]
            i += 1
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.settimeout(5)
                    if s.recv(32).strip().isdigit():
                        self.ok += 1
                        continue
            except OSError:
                pass
            self.failed += 1

    def end(self):
        self.stop = True
        self.thread.join(10)
        return self.ok, self.failed


def lines_lost(log_files, counts_dir):
    """(lost, duplicated): lines each worker counted but the files lack, and lines seen twice."""
    seen = {}
    for path in log_files:
        with open(path, "rb") as f:
            for line in f:
                m = LINE.search(line)
                if m:
                    seen.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    lost = dup = 0
    for path in glob.glob(os.path.join(counts_dir, "*.count")):
        pid = int(os.path.basename(path).split(".")[0])
        with open(path) as f:
            wrote = int(f.read().strip())
        got = seen.get(pid, [])
        lost += wrote - len(set(got))
        dup += len(got) - len(set(got))
    return lost, dup


def pids(tool):
    if tool.name == "l4ctl":
        return sorted(i["pid"] for i in json.loads(tool.ctl("status", "--json").stdout)["instances"] if i["pid"])
    return sorted(p["pid"] for p in tool.jlist() if p["pid"])


def start(tool, counts, base_port):
    env = {"UPDATE_BENCH_DIR": counts}
    if tool.name == "l4ctl":
        cfg = tool.write_config("upd", '\n[[apps]]\nname = "u"\nscript = "%s"\ninterpreter = "python3"\n'
                                       'instances = %d\nport = %d\n[apps.env]\nUPDATE_BENCH_DIR = "%s"\n'
                                % (WORKER, N, base_port, counts))
        run([L4CTL, "start", cfg], timeout=60)
    else:
        path = os.path.join(tool.home, "eco-upd.json")
        with open(path, "w") as f:
            json.dump({"apps": [{"name": "u", "script": WORKER, "interpreter": "python3", "exec_mode": "fork",
                                 "instances": N, "increment_var": "PORT", "autorestart": True,
                                 "env": dict(env, PORT=base_port)}]}, f)
        run([PM2_BIN, "start", path], env=tool.env, timeout=60)
    wait_for(lambda: tool.online() == N, 30, 0.1, what="%s: %d online" % (tool.name, N))


def once(tool, tmp, base_port):
    counts = os.path.join(tmp, "counts-" + tool.name)
    os.makedirs(counts, exist_ok=True)
    start(tool, counts, base_port)
    from supervisor import probe  # noqa: E402 (the same probe as the other rows)
    ports = range(base_port, base_port + N)
    wait_for(lambda: all(probe(p) for p in ports), 20, what="%s: ports" % tool.name)
    before = pids(tool)
    load = Load(ports)
    time.sleep(2)
    t0 = time.perf_counter()
    if tool.name == "l4ctl":
        r = subprocess.run([L4CTL, "-c", tool.cfg0, "update"], capture_output=True, text=True, timeout=120)
    else:
        r = subprocess.run([PM2_BIN, "update"], env=tool.env, capture_output=True, text=True, timeout=120)
    cmd_ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError("%s update failed: %s%s" % (tool.name, r.stdout, r.stderr))
    wait_for(lambda: tool.online() == N, 60, 0.001, what="%s: %d online after update" % (tool.name, N))
    api_ms = (time.perf_counter() - t0) * 1000
    wait_for(lambda: all(probe(p) for p in ports), 30, what="%s: ports after update" % tool.name)
    time.sleep(3)
    ok, failed = load.end()
    after = pids(tool)
    away = re.search(r"away ([0-9.]+) ms \(([0-9.]+) ms from the exec\)", r.stdout)
    if tool.name == "PM2":
        tool.pid = tool.read_pid()  # a new daemon
        logs = glob.glob(os.path.join(tool.home, "logs", "u-out*.log"))
    else:
        logs = [os.path.join(tool.dir, "logs", "u-out.log")]
    tool.ctl("delete", "all", timeout=60)  # workers write their counts as they stop
    wait_for(lambda: len(glob.glob(os.path.join(counts, "*.count"))) >= len(set(before) | set(after)), 20,
             what="%s: workers' counts" % tool.name)
    # The last lines reach the files a moment after the workers end: up to 5 s for them.
    deadline = time.time() + 5
    lost, dup = lines_lost(logs, counts)
    while lost and time.time() < deadline:
        time.sleep(0.1)
        lost, dup = lines_lost(logs, counts)
    return {"restarts": len(set(before) - set(after)), "failed": failed, "answered": ok, "lost": lost,
            "duplicated": dup, "api_ms": api_ms, "cmd_ms": cmd_ms,
            "away_ms": float(away.group(1)) if away else None,
            "since_exec_ms": float(away.group(2)) if away else None, "output": (r.stdout + r.stderr).strip()[-300:]}


def measure_update(l4, pm2, tmp):
    """One run each: l4ctl first, then PM2 (its update replaces its daemon)."""
    out = {}
    for tool, port in ((l4, 9340), (pm2, 9360)):
        try:
            out[tool.name] = once(tool, tmp, port)
        except (RuntimeError, TimeoutError) as e:  # an l4ctl from before `update`, say
            out[tool.name] = {"error": str(e)[-300:]}
            tool.ctl("delete", "all", check=False)
        print("update %s:" % tool.name, {k: v for k, v in out[tool.name].items() if k != "output"}, flush=True)
    return out
