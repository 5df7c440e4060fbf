"""The deployment plan's success metrics under churn and faults (bench/soak.sh).

The plan's production shape on one machine: nginx, rendered by `l4ctl nginx render`, in front of
3 chat-server workers under l4ctl, on a private PostgreSQL and a private Redis. `l4load soak`
plays 2,000 users in 50 rooms: each comes, stays 1-20 minutes, sends a message every 30 s, says
goodbye (a last message it waits to see come back), is away 5-60 s and comes back as a new
client; 1 % of them are on a flaky link that drops for 5-60 s at a time. Each client keeps the
plan's heartbeat (ping after 45 s of silence, give up 15 s later) and reconnects with resume.

Meanwhile, on a schedule (minutes, for a 30-minute run; a shorter run scales it):
  l4ctl reload           every 5
  SIGKILL of a worker    every 7 (the instances in turn)
  memory-ceiling restart every 11: idle connections opened on one worker's own port until it
                         passes its ceiling (max_memory_restart), and l4ctl replaces it
  Redis restarted        once, at 8.5 (down 5 s)
  PostgreSQL restarted   once, at 17.5 (pg_ctl restart -m fast)

Reported, from the clients' own records (`l4load soak`): connection success (first attempt of a
visit; every attempt; eventually), average connection and visit length, reconnections per
connection and the cause of each (a fault of the schedule in progress, or the client's link),
message delivery (every sequence number from each visit's join to its goodbye, once, in order,
carrying the message the room's ledger holds), latency from the send to each delivery, and the
servers' RSS over time (a PNG). The same four metrics are read from the workers' /metrics,
scraped every second as Prometheus would (each worker run apart, by its start time), with the
README's PromQL arithmetic over the whole run.

Targets: delivery 100 % (nothing lost, duplicated, reordered or altered: one message per
number, one number per message); connection success >= 99.9 % at a visit's first attempt (those
made over a flaky link that was down left out) and 100 % eventually; no reconnection without a
cause from the schedule (a reload or a memory replacement closing with 1012, a SIGKILL with no
close) or the link (a restarted Redis or PostgreSQL must cause none); no memory growth (30-minute
runs): a worker's RSS once it has settled (its rooms' caches full, 3 minutes into its life; reloads
replace every worker every 5 minutes) does not rise from one run to the next over the last 20
minutes, nor does the daemon's (within 10 %; soak_report.rss_trend). The exit status is 1 when
one is missed.
"""
import glob, json, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request



def arg(name, default, kind=float):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


HERE_ = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(arg("--bin-dir", os.path.join(HERE_, "..", "target", "release"), str))
os.environ["L4CTL"] = os.path.join(BIN, "l4ctl")  # common's L4Daemon drives this build
sys.path.insert(0, HERE_)
from common import HERE, L4Daemon, Nginx, install_signal_handlers, port_open, print_markdown_table, rss_kib, run, sweep, wait_for, write_results  # noqa: E402
from soak_report import classify, from_metrics, plot, rss_trend  # noqa: E402

MINUTES = arg("--minutes", 30.0)
CLIENTS = arg("--clients", 2000, int)
CEILING = arg("--ceiling", "32M", str)
BURST = 15000  # idle connections at most, to pass the ceiling (about 4 KiB each: ~6,000 from 9 to 32 MiB)
SCALE = MINUTES / 30.0
MARKER = "%d-%d" % (os.getpid(), time.time())  # in the workers' environment, to sweep leftovers
ROOMS, USERS, SECRET = 50, max(1, CLIENTS // 10), "soak-secret-0123456789abcdef-0123456789abcdef"
L4CTL = os.path.join(BIN, "l4ctl")


class Postgres:
    """A private cluster (Debian's server binaries), as the postgres user when we are root."""

    def __init__(self, tmp):
        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]
        self.dir, self.port = os.path.join(tmp, "pg"), quiet_port(1)
        os.mkdir(self.dir, 0o700)
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.pg(["initdb", "-D", self.dir, "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    def pg(self, argv, timeout=120):
        return run(self.as_user + [os.path.join(self.bin, argv[0])] + argv[1:], timeout=timeout)

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200" % (self.port, self.dir)
        self.pg(["pg_ctl", "-D", self.dir, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start"])

    def restart(self):
        # -l again: without it the server would log to pg_ctl's stdout, our pipe.
        self.pg(["pg_ctl", "-D", self.dir, "-m", "fast", "-l", os.path.join(self.dir, "log"), "-w", "restart"])

    def url(self):
        return "postgres://postgres@127.0.0.1:%d/postgres" % self.port

    def stop(self):
        run(self.as_user + [os.path.join(self.bin, "pg_ctl"), "-D", self.dir, "-m", "immediate", "stop"], check=False)


class Redis:
    def __init__(self, tmp):
        self.port, self.tmp, self.proc = quiet_port(1), tmp, None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.tmp], stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, what="redis-server")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Fleet(L4Daemon):
    """The l4ctl daemon and the chat app: 3 instances on supervisor-owned ports."""

    def __init__(self, tmp, pg, redis):
        super().__init__(tmp)
        self.port, self.nginx_port = quiet_port(3), quiet_port(1)
        env = {"APP_ENV": "production", "JWT_SECRET": SECRET, "DATABASE_URL": pg.url(), "REDIS_URL": "redis://127.0.0.1:%d" % redis.port,
               "REGISTRATION": "open", "MAX_CONNECTIONS": "20000", "MAX_CONNECTIONS_PER_USER": "20000", "RUST_LOG": "warn",
               "AUTH_RATE_PER_IP": "100000",  # every soak user registers from 127.0.0.1
               "L4_SOAK_RUN": MARKER}
        self.cfg = self.write_config("soak", """
[nginx]
listen = "127.0.0.1:%d"
server_name = "_"
output = "nginx/layer4.conf"

[[apps]]
name = "chat"
script = "%s"
instances = 3
port = %d
ready = "notify"
listen_timeout = "30s"
kill_timeout = "15s"
max_memory_restart = "%s"

[apps.env]
%s
""" % (self.nginx_port, os.path.join(BIN, "chat-server"), self.port, CEILING,
       "".join('%s = "%s"\n' % kv for kv in env.items())))

    def status(self):
        return {i["instance"]: i for i in json.loads(self.ctl("status", "--json").stdout)["instances"] if i["app"] == "chat"}

    def online(self):
        s = self.status()
        return len(s) == 3 and all(i["state"] == "online" for i in s.values())


def quiet_port(n):
    """The first of n free ports below the kernel's ephemeral range (32768-60999 here): the
    workers' own outgoing connections (PostgreSQL, Redis) take ephemeral ports, and one of them
    can hold a port a restarting worker must bind again."""
    import random
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    while True:
        base = random.randrange(10000, low - n)
        if not any(port_open(base + i) for i in range(n)):
            return base


def register(base, n):
    tokens = []
    for i in range(n):
        r = run([os.path.join(BIN, "l4chat"), "--server", base, "register", "soak%d" % i, "soak-password-%d" % i], timeout=60)
        tokens.append(r.stdout.strip())
    return tokens


class Scraper(threading.Thread):
    """Every worker's /metrics each second, kept per worker run: {(port, start): {series: value}},
    the last scrape of each (what a worker counted after its last scrape, as it drained or was
    killed, is not seen: as with Prometheus)."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports, self.runs, self.seen, self.stop, self.scrapes, self.failed = ports, {}, {}, threading.Event(), 0, 0

    def burst_runs(self, bursts):
        """The worker runs that took a memory fault's idle connections: on its port, alive when it
        began, or started while it lasted (the replacement takes the last few). Their counters are
        left out of the comparison."""
        return {k for k in self.runs for port, at, end in bursts
                if k[0] == port and (k[1] < at <= self.seen[k] + 2 or at <= k[1] <= end + 2)}

    def run(self):
        while not self.stop.wait(1.0):
            self.scrape_all()

    def scrape_all(self):
        for port in self.ports:
            self.scrape(port)

    def scrape(self, port):
        try:
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=2).read().decode()
        except Exception:  # refused, reset, cut short (a worker killed mid-answer)
            self.failed += 1
            return
        self.scrapes += 1
        now, series = time.time(), {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    series[name] = float(value)
                except ValueError:
                    pass
        # A worker run is known by its start (two answer on one port during a reload).
        start = series.get("process_start_time_seconds")
        if start is None:  # an older chat-server: its uptime, to the second
            start = now - series.get("chat_uptime_seconds", 0)
            key = next((k for k in self.runs if k[0] == port and abs(k[1] - start) < 3), (port, start))
        else:
            key = (port, start)
        self.runs[key] = series
        self.seen[key] = now


class Sampler(threading.Thread):
    """RSS every 5 s: each instance (its process tree, from l4ctl), the daemon, nginx, Redis."""

    def __init__(self, fleet, nginx, redis):
        super().__init__(daemon=True)
        self.fleet, self.nginx, self.redis, self.points, self.stop = fleet, nginx, redis, [], threading.Event()

    def run(self):
        t0 = time.time()
        while True:
            try:
                s = self.fleet.status()
                # Only instances online (one being restarted has no memory to show), with their pid.
                self.points.append({"t": time.time() - t0, "workers": {i: [s[i]["pid"], s[i]["memory_bytes"] / 1048576]
                                                                       for i in s if s[i]["state"] == "online" and s[i]["memory_bytes"]},
                                    "daemon": (rss_kib(self.fleet.pid) or 0) / 1024,
                                    "nginx": sum(rss_kib(p) or 0 for p in self.nginx.pids()) / 1024,
                                    "redis": (rss_kib(self.redis.proc.pid) or 0) / 1024})
            except Exception as e:  # a sample missed is not a run lost
                print("soak: RSS sample: %s" % e, file=sys.stderr)
            if self.stop.wait(5.0):
                return


def schedule():
    """(minute, kind) for a 30-minute run, scaled to this one."""
    ev = [(m, "reload") for m in range(5, 30, 5)] + [(m, "kill") for m in range(7, 30, 7)]
    ev += [(m, "memory") for m in range(11, 30, 11)] + [(8.5, "redis"), (17.5, "postgres")]
    return sorted((m * SCALE * 60, k) for m, k in ev)


class Faults(threading.Thread):
    def __init__(self, fleet, redis, pg, burst_token, t0):
        super().__init__(daemon=True)
        self.fleet, self.redis, self.pg, self.burst_token, self.t0 = fleet, redis, pg, burst_token, t0
        self.done, self.nth, self.over = [], {"kill": 0, "memory": 0}, threading.Event()
        self.bursts = []  # (port, when) of each memory fault

    def run(self):
        for at, kind in schedule():
            if self.over.wait(max(0.0, self.t0 + at - time.time())):
                return  # the load is over: what is left of the schedule is not run
            start = time.time()
            try:
                detail = getattr(self, "do_" + kind)()
                error = None
            except Exception as e:
                detail, error = None, str(e)
            self.done.append({"kind": kind, "start": start, "end": time.time(), "detail": detail, "error": error})
            print("soak: %6.1f s %s %s%s" % (start - self.t0, kind, detail or "", " FAILED: %s" % error if error else ""), file=sys.stderr)

    def turn(self, kind):
        self.nth[kind] += 1
        return (self.nth[kind] - 1) % 3

    def do_reload(self):
        self.fleet.ctl("reload", "chat", timeout=120)
        wait_for(self.fleet.online, 60, 0.2, what="3 online after the reload")

    def do_kill(self):
        inst = self.turn("kill")
        pid = self.fleet.status()[inst]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.fleet.status()[inst]["pid"] not in (None, pid) and self.fleet.online(), 60, 0.1,
                 what="instance %d back after SIGKILL" % inst)
        return "instance %d pid %d" % (inst, pid)

    def do_memory(self):
        """WebSocket connections (the handshake by hand, then idle) on one worker's own port until
        it passes its ceiling and l4ctl replaces it (a new run first, as a reload); then they are
        closed.  They count in that worker's /metrics, so how many there were and how long each
        lasted cannot be taken out of the counters: that worker run is left out of the comparison
        with the clients' view (Scraper.burst_runs)."""
        inst = self.turn("memory")
        port = self.fleet.port + inst
        before = self.fleet.status()[inst]
        hits = lambda: self.fleet.status()[inst]["restarts_by_reason"].get("memory", 0)
        base, opened = hits(), []
        request = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: c29hay1tZW1vcnktYnVyc3Q=\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: l4.json\r\nAuthorization: Bearer %s\r\n\r\n" % (port, self.burst_token)).encode()
        refused, replaced, began = 0, None, time.time()
        try:
            while len(opened) < BURST and replaced is None:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 4096:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                if not head.startswith(b"HTTP/1.1 101"):
                    refused += 1
                    s.close()
                    if refused > 100:
                        raise RuntimeError("instance %d refused the idle connections: %r" % (inst, head[:200]))
                    continue
                opened.append((s, time.time()))
                if len(opened) % 50 == 0 and hits() > base:
                    replaced = time.time()
            deadline = time.time() + 15
            while replaced is None and time.time() < deadline:
                if hits() > base:
                    replaced = time.time()
                time.sleep(0.1)
        finally:
            for s, _ in opened:
                s.close()
            self.bursts.append((port, began, time.time()))
        if replaced is None:
            raise RuntimeError("instance %d was not replaced after %d idle connections (ceiling %s)" % (inst, len(opened), CEILING))
        wait_for(self.fleet.online, 60, 0.2, what="3 online after the memory restart")
        return "instance %d at %.0f MiB, replaced after %d idle connections in %.1f s (pid %s -> %s)" % (
            inst, (before["memory_bytes"] or 0) / 1048576, len(opened), replaced - opened[0][1] if opened else 0,
            before["pid"], self.fleet.status()[inst]["pid"])

    def do_redis(self):
        down = 5 * min(1.0, SCALE * 4)
        self.redis.stop()
        self.over.wait(down)
        self.redis.start()
        return "down %.1f s" % down

    def do_postgres(self):
        self.pg.restart()


def main():
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4-soak-")
    os.chmod(tmp, 0o711)  # the postgres user reaches its own folder inside
    parts, ok, faults = [], False, None
    try:
        pg = Postgres(tmp)
        parts.append(pg)
        redis = Redis(tmp)
        parts.append(redis)
        fleet = Fleet(tmp, pg, redis)
        parts.append(fleet)
        fleet.start_daemon()
        fleet.ctl("start", fleet.cfg, timeout=120)
        wait_for(fleet.online, 60, 0.2, what="3 chat-server instances online")
        os.makedirs(os.path.join(tmp, "nginx"), exist_ok=True)
        run([L4CTL, "-c", fleet.cfg, "nginx", "render"])
        nginx = Nginx(os.path.join(tmp, "nginx"), "  include %s;\n" % os.path.join(tmp, "nginx", "layer4.conf"))
        parts.append(nginx)
        wait_for(lambda: port_open(fleet.nginx_port), 10, what="nginx")
        base = "http://127.0.0.1:%d" % fleet.nginx_port
        t = time.time()
        tokens = register(base, USERS + 1)
        print("soak: %d users registered in %.1f s; %d clients, %d rooms, %.1f minutes" % (
            len(tokens), time.time() - t, CLIENTS, ROOMS, MINUTES), file=sys.stderr)
        with open(os.path.join(tmp, "tokens"), "w") as f:
            f.write("\n".join(tokens[1:]) + "\n")
        scraper = Scraper([fleet.port + i for i in range(3)])
        scraper.scrape_all()
        baseline = {k: dict(v) for k, v in scraper.runs.items()}
        scraper.start()
        sampler = Sampler(fleet, nginx, redis)
        sampler.start()
        t0 = time.time()
        faults = Faults(fleet, redis, pg, tokens[0], t0)
        faults.start()
        records = os.path.join(tmp, "records.jsonl")
        stay = (60 * SCALE * 1, 60 * SCALE * 20)
        load = run([os.path.join(BIN, "l4load"), "soak", "--url", "ws://127.0.0.1:%d/ws" % fleet.nginx_port,
                    "--tokens", os.path.join(tmp, "tokens"), "--clients", str(CLIENTS), "--rooms", str(ROOMS),
                    "--secs", str(MINUTES * 60), "--stay-min", str(stay[0]), "--stay-max", str(stay[1]),
                    "--connect-rate", "200", "--records", records], timeout=MINUTES * 60 + 600)
        report = json.loads(load.stdout.strip().splitlines()[-1])
        faults.over.set()
        faults.join(180)
        time.sleep(2)
        scraper.stop.set()
        scraper.join(10)
        scraper.scrape_all()
        sampler.stop.set()
        sampler.join(10)
        shutil.copy(records, os.path.join(HERE, "results", "soak-%s.records.jsonl" % stamp))
        with open(records) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        causes = classify(recs, faults.done, t0)
        server = from_metrics(scraper.runs, baseline, scraper.burst_runs(faults.bursts))
        trend = rss_trend([p for p in sampler.points if p["t"] <= MINUTES * 60], MINUTES)
        results = os.path.join(HERE, "results")
        os.makedirs(results, exist_ok=True)
        png = None if "--no-plot" in sys.argv else plot(sampler.points, faults.done, t0, os.path.join(results, "soak-%s.png" % stamp))
        rows, passed = table(report, causes, server, trend, faults.done)
        print_markdown_table(["metric", "clients' view", "/metrics (PromQL)", "target", ""], rows)
        meta = {"minutes": MINUTES, "clients": CLIENTS, "rooms": ROOMS, "bin": BIN, "ceiling": CEILING, "plot": png,
                "scrapes": scraper.scrapes, "scrapes_failed": scraper.failed}
        out = write_results("soak", stamp, meta, rows, {"load": report, "causes": causes, "metrics": server,
                                                        "faults": faults.done, "rss": sampler.points, "trend": trend})
        print("results: %s%s" % (out, ", plot %s" % png if png else ""), file=sys.stderr)
        ok = True
        return 0 if passed else 1
    finally:
        if faults is not None:  # no fault may start (or restart a backend) while we stop
            faults.over.set()
            faults.join(300)
        for p in reversed(parts):
            try:
                p.shutdown() if isinstance(p, Fleet) else p.stop()
            except Exception as e:
                print("soak: stopping %s: %s" % (type(p).__name__, e), file=sys.stderr)
        left = sweep(lambda env: ("L4_SOAK_RUN=" + MARKER).encode() in env)
        if left:
            print("soak: %d leftover processes SIGKILLed: %s" % (len(left), left), file=sys.stderr)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("soak: kept", tmp, file=sys.stderr)


def table(r, causes, m, trend, faults):
    pct = lambda a, b: 100.0 * a / b if b else float("nan")
    verdict = lambda good: "pass" if good else "MISS"
    first = pct(r["visits_first_ok"], r["visits"])
    # A first attempt over a link that was down fails at any service: judged without them.
    first_up = pct(r["visits_first_ok"], r["visits"] - r["visits_first_failed_link"])
    eventually = pct(r["visits_connected"], r["visits"] - r["visits_lost_to_link"])
    attempts_ok = pct(r["attempts"] - r["attempts_failed"], r["attempts"])
    attempts_ok_up = pct(r["attempts"] - r["attempts_failed"], r["attempts"] - r["attempts_failed_link"])
    delivered = pct(r["due"] - r["lost"], r["due"])
    exact = r["lost"] == 0 and r["out_of_order"] == 0 and r["mismatched"] == 0 and r["unacked_at_leave"] == 0 \
        and r["refused"] == 0 and r["before_join"] == 0 and r["visits_complete"] == r["visits_connected"]
    unexplained = causes["unexplained"]
    failed_faults = [f for f in faults if f["error"]]
    lat = r["latency_ms"]
    checks = {
        "delivery": exact and r["due"] > 0,
        "first": first_up >= 99.9, "eventually": eventually == 100.0,
        "causes": unexplained == 0, "rss": trend["flat"] or not trend["judged"], "faults": not failed_faults,
    }
    rows = [
        ["connection success, a visit's first attempt", "%.3f %% (%d of %d)" % (first, r["visits_first_ok"], r["visits"]),
         "", "", ""],
        ["  of first attempts over a link that was up", "%.3f %% (%d over a dropped link left out)" % (
            first_up, r["visits_first_failed_link"]), "", ">= 99.9 %", verdict(checks["first"])],
        ["connection success, every attempt", "%.3f %% (%d of %d)" % (attempts_ok, r["attempts"] - r["attempts_failed"], r["attempts"]),
         "%.3f %%" % (m["success"] * 100) if m["success"] is not None else "-", "98-99 % (plan)", ""],
        ["  of attempts over a link that was up", "%.3f %%" % attempts_ok_up, "", "", ""],
        ["connection success, eventually", "%.3f %% (%d of %d visits; %d on a link down all along left out)" % (
            eventually, r["visits_connected"], r["visits"], r["visits_lost_to_link"]), "", "100 %", verdict(checks["eventually"])],
        ["average connection duration", "%.1f s (%d connections)" % (r["connection_avg_s"] or 0, r["connections"]),
         "%.1f s" % m["duration_s"] if m["duration_s"] is not None else "-", "10+ min (plan)", ""],
        ["average visit (across its reconnections)", "%.1f s" % (r["visit_avg_s"] or 0), "", "", ""],
        ["reconnections per connection", "%.3f (%d)" % (r["drops"] / max(r["connections"], 1), r["drops"]),
         "%.3f" % m["reconnection"] if m["reconnection"] is not None else "-", "< 2 % (plan)", ""],
        ["  caused by: " + ", ".join("%s %d" % (k, v) for k, v in sorted(causes["drops"].items())), "", "", "", ""],
        ["  failed attempts by cause: " + ", ".join("%s %d" % (k, v) for k, v in sorted(causes["failed"].items())), "", "", "", ""],
        ["reconnections or failed attempts with no cause", "%d" % unexplained, "", "0", verdict(checks["causes"])],
        ["message delivery", "%.4f %% (%d due, %d lost, %d out of order, %d altered, %d unacked)" % (
            delivered, r["due"], r["lost"], r["out_of_order"], r["mismatched"], r["unacked_at_leave"]),
         "%.4f %%" % (m["delivery"] * 100) if m["delivery"] is not None else "-", "100 % exactly once, in order",
         verdict(checks["delivery"])],
        ["visits with every message of their stay", "%d of %d connected" % (r["visits_complete"], r["visits_connected"]), "", "", ""],
        ["latency, send to delivery: p50 / p99 / max ms", "%d / %d / %d" % (lat["p50"], lat["p99"], lat["max"]),
         "p99 %s ms" % ("%.0f" % m["p99_ms"] if m["p99_ms"] is not None else "-"), "", ""],
        ["worker RSS, total (3 instances): first / last / max MiB", "%.1f / %.1f / %.1f" % (trend["first"], trend["last"], trend["max"]),
         "", "", ""],
        ["a worker's settled RSS (3 min of age on), %d runs of the last %.0f min: mean, fitted change" % (
            trend.get("runs", 0), trend.get("window_min", 0)),
         "%.1f MiB, %+.1f %%" % (trend.get("level_mean", 0), trend.get("level_pct", 0)), "", "flat (within 10 %)",
         verdict(checks["rss"]) if trend["judged"] else "n/a (< 30 min)"],
        ["l4ctl daemon RSS change over the last %.0f min" % trend.get("window_min", 0), "%+.1f %% of %.1f MiB" % (
            trend.get("daemon_pct", 0), trend.get("daemon_mean", 0)), "", "flat (within 10 %)",
         verdict(checks["rss"]) if trend["judged"] else "n/a (< 30 min)"],
        ["faults run as scheduled", "%d of %d" % (len(faults) - len(failed_faults), len(faults)), "", "all", verdict(checks["faults"])],
    ]
    return rows, all(checks.values())


if __name__ == "__main__":
    sys.exit(main())
