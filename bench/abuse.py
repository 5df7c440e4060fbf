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

tcp-flood  The daemon runs under `ulimit -n 1024` with the TCP API on and one app that crashes
           every --crash-every s (exit 1; restart_delay 0).  For --flood s (default 60) this
           script keeps --slow (2000) connections that sent half a request head and --idle (200)
           that sent nothing open to the TCP API, opening a new one whenever the daemon closes
           one.  Meanwhile every 0.25 s: `l4ctl status --json` (a whole CLI run, over the Unix
           socket) is timed, and every second /proc/net/tcp tells which of our connections the
           daemon accepted and has not closed yet (its side ESTABLISHED and owned by a
           descriptor): the oldest of them, counted from when this script opened it, is the
           longest any connection stayed open in the daemon (this does not depend on how fast
           this script notices the closes; connections the kernel's full accept queue dropped
           never reach the daemon and cost it nothing).  The app's restarts are counted from
           `status` before and after.
           Targets: status median < 50 ms during the flood; no connection open longer than the
           header timeout (10 s) + 1 s; the crashing app restarted every time
           (restarts rose by at least --flood / --crash-every - 2) and no "Too many open files"
           in the daemon's log.

full-disk  Root only (it mounts a 5 MiB tmpfs as the log folder; skipped otherwise).  An app
           floods numbered 100-byte lines (rotation at 256 KiB, 3 kept, compressed).  The disk is
           filled with a filler file until ENOSPC; then the daemon's CPU is measured over --full
           s (10) with the app still writing; then the filler is removed and new lines must
           arrive.  Rotations during the full disk are read from `describe`.
           Targets: daemon CPU while full < 5 % of a core; 0 rotations while full; lines arrive
           again within 5 s of space returning; every rotated file still on disk.

chat-replay, chat-login-flood, chat-room-flood
           chat-server's sections, described in chat_abuse.py (target/release/chat-server, or
           $CHAT_SERVER).

Every wait has a deadline; only the daemons this run started are signalled (`l4ctl kill`, then
SIGTERM by pid); their workers die with them.  The temp dir is removed after a complete run and
kept (and named) otherwise.  On a 2-core box expect +-20 %.  Exit status 0 when every
measurement ran; with --strict, 1 if a target is missed.
"""
import argparse, json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_abuse import chat_login_flood, chat_replay, chat_room_flood  # noqa: E402
from common import (L4CTL, L4Daemon, cpu_window, install_signal_handlers,  # noqa: E402
                    measure_and_clean_up, print_markdown_table, require_executables, rss_kib, wait_for,
                    write_results)


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


# ------------------------------------------------------------------ section: TCP flood
STATUS_TARGET_S, HEADER_TIMEOUT_S = 0.05, 10.0


class Flooded(L4Daemon):
    """The TCP API on, under a 1024-descriptor limit, one app that crashes periodically."""
    daemon_extra = 'api_listen = "127.0.0.1:0"\n'

    @staticmethod
    def preexec():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def tcp_flood(a, tmp, daemons):
    import resource, selectors
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = os.path.join(tmp, "tcp-flood")
    os.makedirs(d)
    l4 = Flooded(d)
    daemons.append(l4)
    l4.start_daemon()
    cfg = l4.write_config("crashy", '[[apps]]\nname = "crashy"\nscript = "sh"\nargs = ["-c", "sleep %s; exit 1"]\n'
                          'restart_delay = "0s"\nmax_restarts = 100000\nmin_uptime = "100ms"\n' % a.crash_every)
    l4.ctl("start", cfg, check=False)
    with open(os.path.join(d, "run", "api.addr")) as f:
        host, port = f.read().strip().rsplit(":", 1)
    addr = (host, int(port))

    def restarts():
        st = json.loads(l4.ctl("status", "--json").stdout)
        return sum(i["restarts"] for i in st["instances"])
    restarts0 = restarts()
    sel = selectors.DefaultSelector()
    opened = {}  # socket -> (kind, time opened)
    born = {}  # our local port -> time opened
    closes, open_fail = 0, 0

    def open_one(kind):
        nonlocal open_fail
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(addr)
        except BlockingIOError:
            pass
        except OSError:
            open_fail += 1
            s.close()
            return
        if kind == "slow":
            try:
                s.send(("GET /api/v1/status HTTP/1.1\r\nHost: %s\r\nX-Slow:" % host).encode())
            except OSError:
                pass
        opened[s] = (kind, time.monotonic())
        born[s.getsockname()[1]] = opened[s][1]
        sel.register(s, selectors.EVENT_READ)

    for _ in range(a.slow):
        open_one("slow")
    for _ in range(a.idle):
        open_one("idle")
    def oldest_unclosed():
        """Age of the oldest of our connections that the daemon accepted and has not closed:
        the daemon's side of it is ESTABLISHED and owned by a descriptor (inode != 0; one
        still in the kernel's accept queue, or dropped from a full one, has none)."""
        now, oldest = time.monotonic(), 0.0
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state == "01" and inode != "0" and int(local.split(":")[1], 16) == addr[1]:
                    t0 = born.get(int(remote.split(":")[1], 16))
                    if t0 is not None:
                        oldest = max(oldest, now - t0)
        return oldest
    ages = []
    status_s, end, next_status, next_age = [], time.monotonic() + a.flood, time.monotonic(), time.monotonic() + 1
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                continue
            kind, _ = opened.pop(s)
            born.pop(s.getsockname()[1], None)
            sel.unregister(s)
            s.close()
            closes += 1
            open_one(kind)  # the attacker comes back at once
        if time.monotonic() >= next_age:
            next_age += 1
            ages.append(oldest_unclosed())
        if time.monotonic() >= next_status:
            next_status += 0.25
            t0 = time.perf_counter()
            l4.ctl("status", "--json")
            status_s.append(time.perf_counter() - t0)
    for s in list(opened):
        sel.unregister(s)
        s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    restarts1 = restarts()
    with open(os.path.join(d, "logs", "l4ctl.log"), errors="replace") as f:
        emfile = f.read().count("Too many open files")
    med = statistics.median(status_s)
    worst_life = max(ages or [0])
    wanted = int(a.flood / a.crash_every) - 2
    rows = [
        {"label": "`l4ctl status` during the flood, median (p90) of %d" % len(status_s),
         "value": "%.1f ms (%.1f)" % (med * 1e3, sorted(status_s)[int(len(status_s) * 0.9)] * 1e3),
         "target": "< 50 ms", "pass": med < STATUS_TARGET_S},
        {"label": "longest a connection stayed open (sampled each second)", "value": "%.2f s" % worst_life,
         "target": "<= %.0f s" % (HEADER_TIMEOUT_S + 1), "pass": worst_life <= HEADER_TIMEOUT_S + 1},
        {"label": "connections the daemon closed (the script reopened each)", "value": "%d" % closes,
         "target": "", "pass": None},
        {"label": "crashing app restarts during the flood (EMFILE in the log)",
         "value": "%d (%d)" % (restarts1 - restarts0, emfile),
         "target": ">= %d (0)" % wanted, "pass": restarts1 - restarts0 >= wanted and emfile == 0},
    ]
    raw = {"status_s": status_s, "oldest_unclosed_s": ages, "closes": closes, "open_fail": open_fail,
           "restarts": [restarts0, restarts1], "emfile_lines": emfile}
    return rows, raw


# ------------------------------------------------------------------ section: full disk
class FullDisk(L4Daemon):
    """Its log folder is a small tmpfs."""


def full_disk(a, tmp, daemons):
    if os.geteuid() != 0:
        print("  skipped: mounting a tmpfs needs root", flush=True)
        return [{"label": "full disk", "value": "skipped (not root)", "target": "", "pass": None}], {}
    d = os.path.join(tmp, "full-disk")
    os.makedirs(os.path.join(d, "logs"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m,mode=0750", "tmpfs", os.path.join(d, "logs")], check=True)
    try:
        l4 = FullDisk(d)
        daemons.append(l4)
        l4.start_daemon()
        script = 'i=0; while :; do i=$((i+1)); echo "line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; done'
        cfg = l4.write_config("flood", ('[[apps]]\nname = "flood"\nscript = "sh"\nargs = ["-c", %s]\n'
                                        '[apps.log_rotate]\nmax_size = "256K"\nretain = 3\ncompress = true\n')
                              % json.dumps(script))
        l4.ctl("start", cfg)

        def counters():
            return json.loads(l4.ctl("describe", "flood", "--json").stdout)["log_counters"]
        wait_for(lambda: counters()["rotations"] >= 2, 30, 0.1, what="two rotations")
        filler = os.path.join(d, "logs", "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        wait_for(lambda: counters()["dropped_bytes"] > 0, 30, 0.1, what="lines dropped on the full disk")
        rot0 = counters()["rotations"]
        rotated0 = sorted(n for n in os.listdir(os.path.join(d, "logs")) if n.startswith("flood.") and n != "flood.log")
        window, cpu = cpu_window([l4.pid], a.full)
        pct = cpu[l4.pid]["ms"] / (window * 1e3) * 100
        rot1 = counters()["rotations"]
        rotated1 = sorted(n for n in os.listdir(os.path.join(d, "logs")) if n.startswith("flood.") and n != "flood.log")
        lines0 = counters()["bytes"]
        os.remove(filler)
        t0 = time.monotonic()
        wait_for(lambda: counters()["bytes"] > lines0, 10, 0.05, what="lines after space returned")
        back_s = time.monotonic() - t0
        kept = all(n in rotated1 or n + ".gz" in rotated1 for n in rotated0)
        rows = [
            {"label": "daemon CPU while the disk is full, %.0f s" % window, "value": "%.2f %%" % pct,
             "target": "< 5 %", "pass": pct < 5},
            {"label": "rotations while full", "value": "%d" % (rot1 - rot0), "target": "0", "pass": rot1 == rot0},
            {"label": "rotated files kept through the full disk", "value": "%d of %d" % (
                sum(1 for n in rotated0 if n in rotated1 or n + ".gz" in rotated1), len(rotated0)),
             "target": "all", "pass": kept},
            {"label": "lines again after space returned", "value": "%.2f s" % back_s, "target": "< 5 s",
             "pass": back_s < 5},
        ]
        return rows, {"cpu": cpu, "window_s": window, "rotations": [rot0, rot1], "rotated": [rotated0, rotated1],
                      "back_s": back_s}
    finally:
        for t in daemons:
            t.shutdown()
        subprocess.run(["umount", "-l", os.path.join(d, "logs")], check=False)


SECTIONS = [("log-reads", log_reads), ("tcp-flood", tcp_flood), ("full-disk", full_disk),
            ("chat-replay", chat_replay), ("chat-login-flood", chat_login_flood),
            ("chat-room-flood", chat_room_flood)]


# ------------------------------------------------------------------ main
def main():
    names = [n for n, _ in SECTIONS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=names, help="run only this section (repeatable)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before the idle RSS")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--flood", type=float, default=60, help="seconds of the TCP flood")
    ap.add_argument("--slow", type=int, default=2000, help="slow-header connections kept open")
    ap.add_argument("--idle", type=int, default=200, help="idle connections kept open")
    ap.add_argument("--crash-every", type=float, default=2, help="seconds between the crashing app's exits")
    ap.add_argument("--full", type=float, default=10, help="seconds of CPU measured while the disk is full")
    ap.add_argument("--replay-conns", type=int, default=20, help="idle resumes in chat-replay")
    ap.add_argument("--replay-messages", type=int, default=1000, help="stored messages per room in chat-replay")
    ap.add_argument("--login-conns", type=int, default=300, help="flooding connections in chat-login-flood")
    ap.add_argument("--login-flood", type=float, default=20, help="seconds of the login flood")
    ap.add_argument("--room-flood", type=float, default=60, help="seconds of the room flood")
    ap.add_argument("--room-after", type=float, default=100, help="seconds after the room flood until RSS is read")
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
