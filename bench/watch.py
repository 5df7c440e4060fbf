#!/usr/bin/env python3
"""`watch` on a 100,000-file tree: l4ctl with watch, l4ctl without, and PM2 with watch, side by
side in one run.

Usage: L4CTL=target/release/l4ctl bench/watch.sh [--files N] [--idle S] [--reps N]
watch.sh installs PM2 (bench/.peers, npm, local, once).  The tree: N files (default 100,000) in
N/100 folders of 100 files (10 top folders), made once per run in a temp dir.  Three daemons run
at the same time, each with one app (`sleep 100000`, one instance) whose folder is the tree:
  l4-watch  l4ctl, `watch = true` (default ignore_watch)
  l4-plain  l4ctl, no watch: the baseline the issue names ("does not raise idle CPU")
  pm2-watch PM2, `watch: true` (its default chokidar options), `interpreter: "none"`
Metrics, in the order they run:
  ready   from `start` until the watch is armed (l4ctl: `describe` reports the folder count;
          PM2: its daemon's CPU falls below 2 % over a 2 s window after the app is online,
          i.e. chokidar's initial scan is over; both bounded at 300 s)
  cpu     daemon CPU over the idle window (--idle, default 30 s), all three in one window,
          per-thread schedstat (common.cpu_window).  Target: l4-watch - l4-plain <= 2 ms per
          30 s and l4-watch <= l4-plain * 1.1 + 2 ms (the noise of one sampling tick)
  rss     daemon VmRSS after the window
  change  a file written in the tree until the app's pid changed: --reps (default 5) per
          tool, interleaved, >= 2 s apart; l4ctl with watch_delay 100 ms, PM2 with watch_delay
          100 ms (both debounce; PM2's restart is a stop and a start, as l4ctl's without readiness)
Medians; raw numbers in bench/results/watch-<ts>.json.  Every wait has a deadline, only
processes this run started are signalled, and every daemon is stopped at the end, also on
error, SIGINT or SIGTERM.
"""
import argparse, json, os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (L4CTL, L4Daemon, PEERS, PM2Daemon, cpu_window, install_signal_handlers,  # noqa: E402
                    measure_and_clean_up, print_markdown_table, rss_mib, wait_for, write_results)


def make_tree(root, files):
    folders = max(1, files // 100)
    n = 0
    for f in range(folders):
        d = os.path.join(root, "top%d" % (f % 10), "d%d" % f)
        os.makedirs(d, exist_ok=True)
        for i in range(100):
            if n == files:
                return folders
            with open(os.path.join(d, "f%d.js" % i), "w") as fh:
                fh.write("x")
            n += 1
    return folders


def l4_app(tree, watch):
    return ('[[apps]]\nname = "app"\nscript = "sleep"\nargs = ["100000"]\ncwd = "%s"\n%s'
            % (tree, "watch = true\nwatch_delay = 100\n" if watch else ""))


def l4_describe(d):
    return json.loads(d.ctl("describe", "app", "--json").stdout)


def l4_pid(d):
    return json.loads(d.ctl("status", "--json").stdout)["instances"][0].get("pid")


def pm2_pid(p):
    apps = p.jlist()
    return apps[0].get("pid") if apps else None


def cpu_percent(pid, seconds):
    _, c = cpu_window([pid], seconds)
    return c[pid]["ms"] / (seconds * 10)


def measure(a, tmp, daemons):
    raw = {"files": a.files}
    tree = os.path.join(tmp, "tree")
    t0 = time.monotonic()
    raw["folders"] = make_tree(tree, a.files)
    raw["tree_s"] = time.monotonic() - t0
    print("tree: %d files in %d folders (%.1f s)" % (a.files, raw["folders"], raw["tree_s"]), flush=True)

    for d in ("l4w", "l4p"):
        os.makedirs(os.path.join(tmp, d))
    l4w, l4p = L4Daemon(os.path.join(tmp, "l4w")), L4Daemon(os.path.join(tmp, "l4p"))
    pm2 = PM2Daemon(os.path.join(PEERS, "pm2home-watch"))
    daemons += [l4w, l4p, pm2]
    for d in (l4w, l4p, pm2):
        d.start_daemon()

    t0 = time.monotonic()
    l4w.ctl("start", l4w.write_config("app", l4_app(tree, True)))
    want = "%d folders" % sum(1 for _ in os.walk(tree))
    wait_for(lambda: (l4_describe(l4w).get("triggers") or {}).get("watch", "").startswith(want), 300, 0.05,
             what="l4ctl watching " + want)
    raw["l4_ready_s"] = time.monotonic() - t0
    l4p.ctl("start", l4p.write_config("app", l4_app(tree, False)))

    eco = os.path.join(tmp, "eco.json")
    with open(eco, "w") as f:
        json.dump({"apps": [{"name": "app", "script": "sleep", "args": "100000", "interpreter": "none",
                             "cwd": tree, "watch": True, "watch_delay": 100, "autorestart": True}]}, f)
    t0 = time.monotonic()
    pm2.ctl("start", eco)
    wait_for(lambda: pm2_pid(pm2), 60, 0.1, what="PM2 app online")
    wait_for(lambda: cpu_percent(pm2.pid, 2.0) < 2.0, 300, 0, what="PM2's initial scan over")
    raw["pm2_ready_s"] = time.monotonic() - t0
    print("armed: l4ctl %.2f s, PM2 %.2f s" % (raw["l4_ready_s"], raw["pm2_ready_s"]), flush=True)

    pids = [l4w.pid, l4p.pid, pm2.pid]
    raw["cpu_window_s"], cpu = cpu_window(pids, a.idle)
    raw["cpu_ms"] = {name: cpu[p]["ms"] for name, p in zip(("l4-watch", "l4-plain", "pm2-watch"), pids)}
    raw["rss_mib"] = {name: rss_mib(p) for name, p in zip(("l4-watch", "l4-plain", "pm2-watch"), pids)}
    print("cpu over %.1f s idle (ms):" % raw["cpu_window_s"], raw["cpu_ms"], flush=True)

    raw["change_ms"] = {"l4-watch": [], "pm2-watch": []}
    for rep in range(a.reps):
        order = [("l4-watch", l4w, l4_pid), ("pm2-watch", pm2, pm2_pid)]
        for name, d, pid_of in (order if rep % 2 == 0 else order[::-1]):
            before = pid_of(d)
            path = os.path.join(tree, "top3", "d3", "f%d.js" % rep)
            t0 = time.monotonic()
            with open(path, "w") as f:
                f.write("changed %d %s" % (rep, name))
            wait_for(lambda: pid_of(d) not in (None, before), 60, 0.005, what=name + " restart after a change")
            raw["change_ms"][name].append((time.monotonic() - t0) * 1000)
            time.sleep(2.0)  # settle, and past PM2's own restart bookkeeping
    return raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    install_signal_handlers()
    tmp = tempfile.mkdtemp(prefix="l4bench-watch-")
    daemons = []
    raw = measure_and_clean_up(lambda: measure(a, tmp, daemons), daemons, tmp, "kept for inspection:")
    cpu, rss, ch = raw["cpu_ms"], raw["rss_mib"], raw["change_ms"]
    delta = cpu["l4-watch"] - cpu["l4-plain"]
    holds = delta <= 2.0 * raw["cpu_window_s"] / 30 and cpu["l4-watch"] <= cpu["l4-plain"] * 1.1 + 2.0
    med = {k: statistics.median(v) for k, v in ch.items()}
    rows = [
        ["armed after start (s)", "%.2f" % raw["l4_ready_s"], "-", "%.2f" % raw["pm2_ready_s"], ""],
        ["daemon CPU, %.0f s idle (ms)" % raw["cpu_window_s"], "%.1f" % cpu["l4-watch"], "%.1f" % cpu["l4-plain"],
         "%.1f" % cpu["pm2-watch"], "watch adds %.1f ms: %s" % (delta, "holds" if holds else "MISSED")],
        ["daemon RSS (MiB)", "%.1f" % rss["l4-watch"], "%.1f" % rss["l4-plain"], "%.1f" % rss["pm2-watch"],
         "%.2fx PM2" % (rss["l4-watch"] / rss["pm2-watch"])],
        ["change to new pid, median (ms)", "%.0f" % med["l4-watch"], "-", "%.0f" % med["pm2-watch"],
         "%.2fx PM2" % (med["l4-watch"] / med["pm2-watch"])],
    ]
    print_markdown_table(["%d files, %d folders" % (raw["files"], raw["folders"]), "l4ctl watch", "l4ctl no watch",
                          "PM2 watch", "result"], rows)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_results("watch", stamp, {"l4ctl": L4CTL}, rows, raw)
    print("\nraw: " + path)
    sys.exit(0 if holds else 1)


if __name__ == "__main__":
    main()
