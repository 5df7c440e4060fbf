#!/usr/bin/env python3
"""Abuse: the l4ctl daemon under requests meant to hurt it, one section each.

Usage: L4CTL=target/release/l4ctl bench/abuse.sh [--only SECTION ...] [--reps N] [--strict]
No peers: l4ctl alone, against its own targets.  The daemon runs in the foreground as our child
(`l4ctl -c CFG daemon --log-file`, common.py's L4Daemon) with its home and logs in a temp dir,
one daemon per section.

Sections (SECTIONS below, run in that order; each is a function (args, tmp) -> (rows, raw) that
starts its own daemon in its own folder under tmp and registers it for clean-up, so a section
can be added without touching the others):

log-reads  An app writes 1000 numbered lines of 60,000 bytes ("L<i> " + 'x' * 60,000; ~60 MB,
           all in the current file: max_size 1G, so no rotation), then sleeps.  Once `describe`
           counts 1000 lines and the daemon has been idle --settle s, its VmRSS is read ("idle").
           Then GET /api/v1/apps/big/logs?lines=1000 over the Unix socket (raw HTTP/1.1 from
           this script, Connection: close), --reps times in a row: time from connect until the
           whole answer is read (perf_counter), median.  Every answer is checked: status 200, the
           lines' numbers consecutive and ending at 1000 (the newest lines that fit the 8 MiB
           budget: ~139 of them, `truncated` true; a daemon without the budget returns all 1000).
           Then 4 reads at once (4 threads, started together): each one's status and the time
           until all four answered; past the limit of 2 reads at once the daemon answers 429 with
           Retry-After.  Then VmRSS is polled every 50 ms for up to 5 s until it is back within
           2 MiB of idle ("after": the last sample).
           Targets: median read < 100 ms; RSS after - idle <= 2 MiB; 4 at once all answered in
           < 1 s (context: the statuses).

Every wait has a deadline; only the daemons this run started are signalled (`l4ctl kill`, then
SIGTERM by pid); their workers die with them.  The temp dir is removed after a complete run and
kept (and named) otherwise.  On a 2-core box expect +-20 %.  Exit status 0 when every
measurement ran; with --strict, 1 if a target is missed.
"""
import argparse, json, os, re, socket, statistics, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (L4CTL, L4Daemon, install_signal_handlers, measure_and_clean_up,  # noqa: E402
                    print_markdown_table, require_executables, rss_kib, wait_for, write_results)


# ------------------------------------------------------------------ HTTP over the Unix socket
def get(sock_path, path, timeout=120):
    """(status, headers {lower name: value}, body bytes, seconds) of one GET over the socket."""
    t0 = time.perf_counter()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(("GET %s HTTP/1.1\r\nHost: l4\r\nConnection: close\r\n\r\n" % path).encode())
        chunks = []
        while True:
            c = s.recv(1 << 20)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    dt = time.perf_counter() - t0
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:]))
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, headers, body, dt


def dechunk(body):
    out, i = [], 0
    while True:
        j = body.index(b"\r\n", i)
        n = int(body[i:j].split(b";")[0], 16)
        if n == 0:
            return b"".join(out)
        out.append(body[j + 2:j + 2 + n])
        i = j + 2 + n + 2


# ------------------------------------------------------------------ section: log reads
LINES, LINE_BYTES = 1000, 60_000
READ_TARGET_S, RSS_SLACK_KIB, BURST_TARGET_S = 0.1, 2048, 1.0


class BigLog(L4Daemon):
    """One app, `big`, whose combined log holds LINES lines of LINE_BYTES."""
    def app_config(self):
        script = ('x=$(head -c %d /dev/zero | tr "\\0" x); i=0; '
                  'while [ $i -lt %d ]; do i=$((i+1)); echo "L$i $x"; done; exec sleep 100000') % (LINE_BYTES, LINES)
        return ('[[apps]]\nname = "big"\nscript = "sh"\nargs = ["-c", %s]\n'
                '[apps.log_rotate]\nmax_size = "1G"\n') % json.dumps(script)


def check_lines(body):
    """(lines, truncated) of a logs answer, after checking the numbers run consecutively to LINES."""
    v = json.loads(body)
    nums = [int(m.group(1)) for m in (re.search(r"\bL(\d+) x", l["line"]) for l in v["lines"]) if m]
    if len(nums) != len(v["lines"]) or not nums or nums != list(range(LINES - len(nums) + 1, LINES + 1)):
        raise RuntimeError("logs answer out of order or torn: %d lines, first %s last %s" % (
            len(v["lines"]), nums[:1], nums[-1:]))
    return len(nums), v.get("truncated")


def log_reads(a, tmp, daemons):
    d = os.path.join(tmp, "log-reads")
    os.makedirs(d)
    l4 = BigLog(d)
    daemons.append(l4)
    l4.start_daemon()
    cfg = l4.write_config("big", l4.app_config())
    l4.ctl("start", cfg)

    def written():
        out = l4.ctl("describe", "big", "--json", check=False)
        return out.returncode == 0 and json.loads(out.stdout)["log_counters"]["lines"] >= LINES
    wait_for(written, 120, 0.1, what="%d lines in the log" % LINES)
    time.sleep(a.settle)
    sock = os.path.join(d, "run", "l4ctl.sock")
    path = "/api/v1/apps/big/logs?lines=%d" % LINES
    idle_kib = rss_kib(l4.pid)
    reads = []
    for _ in range(a.reps):
        status, _, body, dt = get(sock, path)
        if status != 200:
            raise RuntimeError("logs answered %d: %s" % (status, body[:200]))
        n, truncated = check_lines(body)
        reads.append({"s": dt, "lines": n, "truncated": truncated, "bytes": len(body)})
        print("  read: %.3f s, %d lines, %d bytes" % (dt, n, len(body)), flush=True)
    peak_kib = rss_kib(l4.pid)

    burst, go = [None] * 4, threading.Barrier(4)

    def one(i):
        go.wait()
        status, headers, body, dt = get(sock, path)
        burst[i] = {"status": status, "s": dt, "retry_after": headers.get("retry-after"),
                    "lines": check_lines(body)[0] if status == 200 else None}
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    burst_s = time.perf_counter() - t0
    if any(b is None for b in burst):
        raise RuntimeError("a read of the burst did not finish: %s" % burst)

    samples, end = [], time.monotonic() + 5
    while True:
        samples.append(rss_kib(l4.pid))
        if samples[-1] - idle_kib <= RSS_SLACK_KIB or time.monotonic() > end:
            break
        time.sleep(0.05)
    after_kib = samples[-1]
    med = statistics.median(r["s"] for r in reads)
    statuses = " ".join(str(b["status"]) for b in sorted(burst, key=lambda b: b["status"]))
    rows = [
        {"label": "GET logs?lines=1000 of 60 KB lines, median of %d" % a.reps, "value": "%.1f ms" % (med * 1e3),
         "target": "< 100 ms", "pass": med < READ_TARGET_S},
        {"label": "lines returned (8 MiB budget)", "value": "%d%s" % (reads[0]["lines"],
         " (truncated)" if reads[0]["truncated"] else ""), "target": "newest, in order", "pass": None},
        {"label": "daemon RSS idle / after the reads (peak seen)",
         "value": "%.2f / %.2f MiB (%.2f)" % (idle_kib / 1024, after_kib / 1024, peak_kib / 1024),
         "target": "after <= idle + 2 MiB", "pass": after_kib - idle_kib <= RSS_SLACK_KIB},
        {"label": "4 reads at once: all answered (statuses)", "value": "%.1f ms (%s)" % (burst_s * 1e3, statuses),
         "target": "< 1 s", "pass": burst_s < BURST_TARGET_S},
    ]
    raw = {"reads": reads, "idle_kib": idle_kib, "peak_kib": peak_kib, "after_kib": after_kib,
           "rss_samples_kib": samples, "burst": burst, "burst_s": burst_s}
    return rows, raw


SECTIONS = [("log-reads", log_reads)]


# ------------------------------------------------------------------ main
def main():
    names = [n for n, _ in SECTIONS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=names, help="run only this section (repeatable)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before the idle RSS")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    a = ap.parse_args()
    require_executables(((L4CTL, "L4CTL"),))
    install_signal_handlers()  # every daemon is stopped on SIGINT/SIGTERM too
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4bench-abuse-")
    meta = {"timestamp": stamp, "l4ctl": os.path.abspath(L4CTL), "l4ctl_version": L4Daemon(tmp).version(),
            "debug_build": "/debug/" in os.path.abspath(L4CTL), "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "args": vars(a)}
    print("l4ctl: %s (%s)  cpus %d  load %.2f" % (meta["l4ctl"], meta["l4ctl_version"], meta["cpus"],
                                                  meta["loadavg_start"][0]), flush=True)
    daemons = []

    def measure():
        rows, raw = [], {}
        for name, section in SECTIONS:
            if a.only and name not in a.only:
                continue
            print("%s:" % name, flush=True)
            r, raw[name] = section(a, tmp, daemons)
            rows += [dict(x, section=name) for x in r]
            for t in daemons:  # one daemon per section: stop it before the next section
                t.shutdown()
        return rows, raw
    rows, raw = measure_and_clean_up(measure, daemons, tmp, "temp dir (homes and logs) kept:")
    meta["loadavg_end"] = os.getloadavg()
    print_markdown_table(("section", "metric", "l4ctl", "target", "pass/miss"),
                         [(r["section"], r["label"], r["value"], r["target"],
                           {True: "pass", False: "MISS", None: ""}[r["pass"]]) for r in rows])
    out = write_results("abuse", stamp, meta, rows, raw)
    print("\nraw numbers:", out, "(debug l4ctl build)" if meta["debug_build"] else "")
    return 1 if a.strict and not all(r["pass"] for r in rows if r["pass"] is not None) else 0


if __name__ == "__main__":
    sys.exit(main())
