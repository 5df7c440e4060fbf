"""Crash notification: l4ctl's crash reports vs PM2's event bus, the same worker, one webhook.

The worker (sh) runs 1.2 s, writes a Rust-style panic to stderr
(`thread 'main' panicked at src/main.rs:3:5:` + `boom <n>`), appends the time to a file just
before it exits with code 101, and is restarted after a backoff of up to 1.5 s (an unstable
run: min_uptime 5 s), so crashes are 1.2 to 2.7 s apart.
A local HTTP endpoint (in this script) records when each POST arrives and what it says.
- l4ctl: `[error_tracking] webhook_url` (the report as JSON, POSTed by `l4ctl-send`);
  `episode_quiet = "1s"` so that every crash (over 1 s apart) is its own episode and is sent
  (the default, 10 minutes, would send one report for the whole loop, with a count).
- PM2: PM2 reports a death on its bus (`process:event`, event `exit`); a bus listener that POSTs
  each one to the webhook (workloads/pm2_notify.js) is what notification modules such as
  pm2-slack do. PM2 itself has no crash reporting for a process that is not Node.
Measured per crash: from the worker's last timestamp to the POST's arrival (median, p90, max),
notifications received per crash, and what a notification carries (exit code, panic message
and location, stderr). Target: l4ctl's median under 50 ms (a crash reported while it is news;
l4ctl waits for the end of the worker's stderr and starts `l4ctl-send` per burst of reports,
PM2's bus needs a listener process of its own running all the time).
--crashes N: crashes per tool (default 15).
"""
import argparse, http.server, json, os, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (HERE, L4CTL, PM2Daemon, L4Daemon, install_signal_handlers, measure_and_clean_up,  # noqa: E402
                    node_version, print_markdown_table, run, sweep, wait_for, write_results)

SCRIPT = ("sleep 1.2; n=$(wc -l < exits 2>/dev/null || echo 0); "
          "echo \"thread 'main' panicked at src/main.rs:3:5:\" >&2; echo \"boom $n\" >&2; "
          "date +%s.%N >> exits; exit 101")


class Endpoint:
    """A webhook on 127.0.0.1 recording (arrival time, path, JSON body) per POST."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                at = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                seen.append((at, self.path, body.decode("utf-8", "replace")))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def exits(d):
    try:
        with open(os.path.join(d, "exits")) as f:
            return [float(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def parse(body):
    try:
        return json.loads(body)
    except ValueError:
        return {}


def pair(exit_times, posts):
    """The latency of the notification of each exit, ms: a report that names crash k
    (`boom k`) for l4ctl, count updates of an episode excluded; for PM2, whose events do not
    say which crash they are, the first POST after the exit and before the next one."""
    out = []
    for k, e in enumerate(exit_times):
        nxt = exit_times[k + 1] if k + 1 < len(exit_times) else float("inf")
        named = [t for t, _, b in posts
                 if (parse(b).get("panic") or {}).get("message") == "boom %d" % k and not parse(b).get("episode")]
        unnamed = [t for t, _, b in posts if e <= t < nxt and "panic" not in parse(b)]
        after = named or unnamed
        out.append((min(after) - e) * 1000 if after else None)
    return out


def carries(body):
    """What one notification says: the exit code, the panic (message and location), stderr."""
    b = parse(body)
    panic = b.get("panic") or {}
    return {"exit_code": b.get("exit_code") == 101,
            "panic": panic.get("location") == "src/main.rs:3:5" and str(panic.get("message", "")).startswith("boom"),
            "stderr": "panicked at" in str(b.get("stderr_tail", ""))}


class L4(L4Daemon):
    daemon_extra = 'api_listen = "off"\n'


def run_l4(tmp, n, endpoint, daemons):
    d = os.path.join(tmp, "l4")
    os.makedirs(d)
    l4 = L4(d)
    daemons.append(l4)
    cfg = l4.write_config("crash", (
        '[error_tracking]\nwebhook_url = "%s"\nepisode_quiet = "1s"\n\n[[apps]]\nname = "crashy"\nscript = "sh"\n'
        'args = ["-c", %s]\nmin_uptime = "5s"\nrestart_delay = "1500ms"\nrestart_delay_max = "1500ms"\n'
        'max_restarts = 1000\n') % (endpoint.url, json.dumps(SCRIPT)))
    l4.start_daemon()
    try:
        l4.ctl("start", cfg, check=False)
        wait_for(lambda: len(exits(d)) >= n, n * 4 + 20, 0.05, what="%d l4ctl crashes" % n)
        time.sleep(2)
    finally:
        l4.shutdown()
    return exits(d)[:n]


def run_pm2(tmp, n, endpoint, daemons):
    d = os.path.join(tmp, "pm2")
    os.makedirs(d)
    pm2 = PM2Daemon(os.path.join(tmp, "pm2-home"))
    daemons.append(pm2)
    pm2.start_daemon()
    eco = os.path.join(d, "ecosystem.json")
    with open(eco, "w") as f:
        json.dump({"apps": [{"name": "crashy", "script": "sh", "args": ["-c", SCRIPT], "interpreter": "none",
                             "cwd": d, "min_uptime": 5000, "restart_delay": 1500, "max_restarts": 1000}]}, f)
    listener = subprocess.Popen(["node", os.path.join(HERE, "workloads", "pm2_notify.js"), endpoint.url],
                                env=pm2.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if listener.stdout.readline().strip() != "listening":
            raise RuntimeError("pm2_notify.js did not start")
        pm2.ctl("start", eco)
        wait_for(lambda: len(exits(d)) >= n, n * 4 + 20, 0.05, what="%d PM2 crashes" % n)
        time.sleep(2)
        pm2.ctl("delete", "crashy", check=False)
    finally:
        listener.terminate()
        try:
            listener.wait(5)
        except subprocess.TimeoutExpired:
            listener.kill()
        pm2.shutdown()
    return exits(d)[:n]


def stats(lat):
    got = sorted(x for x in lat if x is not None)
    if not got:
        return None, None, None
    return got[len(got) // 2], got[min(len(got) - 1, int(len(got) * 0.9))], got[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crashes", type=int, default=15)
    a = ap.parse_args()
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4bench-crash-")
    meta = {"timestamp": stamp, "l4ctl": os.path.abspath(L4CTL), "l4ctl_version": run([L4CTL, "--version"]).stdout.strip(),
            "node_version": node_version(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
            "crashes": a.crashes, "tmp": tmp}
    print("l4ctl: %s (%s)  node %s  cpus %d  load %.2f" % (
        meta["l4ctl"], meta["l4ctl_version"], meta["node_version"], meta["cpus"], meta["loadavg_start"][0]), flush=True)

    daemons = []

    def measure():
        raw = {}
        for name, fn in (("l4ctl", run_l4), ("PM2", run_pm2)):
            endpoint = Endpoint()
            ex = fn(tmp, a.crashes, endpoint, daemons)
            posts = [p for p in endpoint.seen if ex and p[0] >= ex[0] - 1]
            endpoint.server.shutdown()
            lat = pair(ex, posts)
            raw[name] = {"exits": ex, "posts": posts, "latency_ms": lat}
            print("%s: %d crashes, %d POSTs, latency ms: %s" % (
                name, len(ex), len(posts), " ".join("%.1f" % x if x is not None else "none" for x in lat)), flush=True)
        return raw
    # Every process of this run carries the temp dir in its environment (L4_SUPERVISOR, PM2_HOME).
    mark = tmp.encode()
    raw = measure_and_clean_up(measure, daemons, tmp, "temp dir kept:",
                               lambda: sweep(lambda env: any(mark in e for e in env)),
                               "killed %d process(es) of this run still alive: %s")
    meta["loadavg_end"] = os.getloadavg()
    rows, s = [], {k: stats(v["latency_ms"]) for k, v in raw.items()}
    fmt = lambda x: "%.1f" % x if x is not None else "-"
    for i, label in enumerate(("median", "p90", "max")):
        l4v, pmv = s["l4ctl"][i], s["PM2"][i]
        ratio = "%.2f" % (l4v / pmv) if l4v and pmv else "-"
        target = "l4ctl <= 50 ms" if label == "median" else ""
        verdict = ("PASS" if l4v <= 50 else "FAIL") if label == "median" and l4v else ""
        rows.append(["exit -> webhook, %s (ms)" % label, fmt(l4v), fmt(pmv), ratio, target, verdict])
    for k in ("l4ctl", "PM2"):
        raw[k]["carries"] = carries(raw[k]["posts"][0][2]) if raw[k]["posts"] else {}
    per = lambda k: "%d/%d" % (sum(x is not None for x in raw[k]["latency_ms"]), len(raw[k]["exits"]))
    rows.append(["crashes notified", per("l4ctl"), per("PM2"), "", "", ""])
    for key, label in (("exit_code", "exit code in the notification"), ("panic", "panic message + location"),
                       ("stderr", "stderr tail")):
        yn = lambda k: "yes" if raw[k]["carries"].get(key) else "no"
        rows.append([label, yn("l4ctl"), yn("PM2"), "", "", ""])
    print_markdown_table(["metric", "l4ctl", "PM2", "ratio", "target", ""], rows)
    print("\nraw:", write_results("crash", stamp, meta, rows, raw))


if __name__ == "__main__":
    main()
