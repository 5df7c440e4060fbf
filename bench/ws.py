"""chat-server vs Node `ws`: idle memory per connection and one-room fan-out, one run.

Both servers run on 127.0.0.1 with the same load generator (target/release/l4load) on the same
2 cores. Each phase starts a fresh server process.

- idle: 10,000 connections opened at 2,000/s and held 10 s; RSS growth per connection
  (RSS at the end of the hold minus RSS before, over connections held). chat-server connections
  are authenticated (a JWT) and have received their welcome.  Target: <= 5 KB per connection.
- fan-out: one room of 1,000 subscribers and 4 publishers, 100-byte frames, 10 s of an open-loop
  publish schedule plus 3 s of drain (l4load fanout; latency from each message's scheduled time).
  chat-server stores every message in SQLite before delivering it; Node broadcasts the frame.
  A 3 s warm-up at 100 msg/s precedes the measured runs on each server.
    * fixed rate 30 msg/s (30,000 deliveries/s): server CPU us per delivery in user space
      (utime from /proc over the window).  Target: chat-server <= 1/3 of Node.  All CPU
      (utime+stime) is shown beside it: at this rate every delivery is its own segment, and
      loopback's receive path runs in the sender's context as its system time, a floor that
      is the same for both servers (bench/README.md, session 4).
    * Node's highest clean rate, 35 msg/s: p99.  Target: chat-server <= 1/2 of Node.
    * loss-free saturation: an ascending ramp on each server; the highest deliveries/s with no
      loss within the drain.  Target: chat-server >= 10x Node.
- publish API (chat-server only): the fan-out with its messages posted through the backend's HTTP API
  (`l4load fanout --api-key`) beside the same through members' WebSockets, at 30-1000 msg/s.
- through nginx: the same 30 msg/s fan-out through one nginx worker (bench/tls_nginx.py: the TLS
  settings of the rendered template), once over ws:// and once over wss://, for each server:
  server CPU per delivery, nginx CPU per delivery and p99.  Reported, not judged (issue 16).
--quick: 2,000 idle connections, 5 s runs, a shorter ramp (a smoke run, not for the README).
"""
import json, os, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, PEERS, free_port, install_signal_handlers, port_open, node_version, print_markdown_table, rss_kib, wait_for, write_results
from tls_nginx import Nginx

ROOT = os.path.abspath(os.path.join(HERE, ".."))
REL = os.path.join(ROOT, "target", "release")
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
API_KEY = "bench-api-key-0123456789abcdef-0123456789"
QUICK = "--quick" in sys.argv


class Server:
    def __init__(self, kind, tmp):
        self.kind, self.tmp, self.port, self.proc = kind, tmp, free_port(), None

    def start(self):
        if self.kind == "chat-server":
            d = tempfile.mkdtemp(dir=self.tmp)
            # One registered user holds every connection of the load (l4load has one token).
            env = dict(os.environ, PORT=str(self.port), JWT_SECRET=SECRET, APP_ENV="production",
                       DATABASE_URL="sqlite://%s/chat.db" % d, MAX_CONNECTIONS="20000", RUST_LOG="warn",
                       REGISTRATION="open", MAX_CONNECTIONS_PER_USER="20000", API_KEYS=API_KEY,
                       API_RATE="1000000")
            # CHAT_SERVER: another build (a before/after comparison); l4load stays ours.
            argv = [os.environ.get("CHAT_SERVER", os.path.join(REL, "chat-server"))]
        else:
            env = dict(os.environ, PORT=str(self.port), NODE_PATH=os.path.join(PEERS, "node_modules"))
            argv = ["node", os.path.join(HERE, "workloads", "ws_broadcast.js")]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 20, what="%s on port %d" % (self.kind, self.port))
        time.sleep(1)  # settle, as in shared/research/ws-baseline.md
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def url(self):
        return "ws://127.0.0.1:%d%s" % (self.port, "/ws" if self.kind == "chat-server" else "/")

    def token(self):
        if self.kind != "chat-server":
            return ""
        name = "bench%d" % time.monotonic_ns()
        r = subprocess.run([os.path.join(REL, "l4chat"), "--server", "http://127.0.0.1:%d" % self.port,
                            "register", name, "bench-password"], capture_output=True, text=True, timeout=30, check=True)
        return r.stdout.strip()

    def path(self):
        return "/ws" if self.kind == "chat-server" else "/"

    def l4load(self, *args, timeout=120, url=None):
        argv = [os.path.join(REL, "l4load")] + list(args) + [
            "--url", url or self.url(), "--token", self.token(), "--watch-pid", str(self.proc.pid),
            "--protocol", "l4" if self.kind == "chat-server" else "raw"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("l4load failed: %s" % r.stderr)
        return json.loads(r.stdout)


def fresh(kind, tmp, fn):
    s = Server(kind, tmp).start()
    try:
        return fn(s)
    finally:
        s.stop()


def idle(s):
    n = 2000 if QUICK else 10000
    return s.l4load("idle", "--connections", str(n), "--connect-rate", "2000", "--hold", "3" if QUICK else "10")


def fanout(s, rate, secs, url=None, extra=()):
    return s.l4load("fanout", "--subscribers", "1000", "--publishers", "4", "--size", "100",
                    "--rate", str(rate), "--secs", str(secs), "--drain", "3", "--settle", "1", *extra, url=url)


def publish_api(s, secs):
    """chat-server only: the same fan-out posted through the backend's HTTP API, beside the
    members' WebSocket sends, at rising rates."""
    fanout(s, 100, 3)  # warm-up
    out = {}
    for rate in ([30, 100] if QUICK else [30, 100, 300, 1000]):
        for via, extra in (("websocket", ()), ("api", ("--api-key", API_KEY))):
            r = fanout(s, rate, secs, None, extra)
            out["%s@%d" % (via, rate)] = r
            print("  %s %4d msg/s via %-9s: %9.0f deliveries/s loss %.3f%% p99 %.1f ms, lag p99 %.1f ms%s" % (
                s.kind, rate, via, r["deliveries_per_s"], r["loss_percent"], r["latency_ms"]["p99"], r["lag_p99_ms"],
                "" if r["clean"] else "  (not clean)"), file=sys.stderr)
    return out


def through_nginx(s, tmp, secs):
    """30 msg/s through one nginx worker, ws:// then wss://, with the worker's CPU."""
    ng = Nginx(tmp, s.port)
    try:
        ng.start()
        out = {}
        for scheme in ("ws", "wss"):
            url = ng.url(scheme, s.path())
            extra = ("--ca-file", ng.cert) if scheme == "wss" else ()
            fanout(s, 100, 3, url, extra)  # warm-up
            before = ng.cpu_s()
            r = fanout(s, 30, secs, url, extra)
            r["nginx_cpu_s"] = ng.cpu_s() - before
            r["nginx_us_per_delivery"] = r["nginx_cpu_s"] * 1e6 / max(r["received"], 1)
            out[scheme] = r
            print("  %s via nginx %s://: %9.0f deliveries/s loss %.3f%% p99 %.1f ms, server %.2f us, nginx %.2f us/delivery" % (
                s.kind, scheme, r["deliveries_per_s"], r["loss_percent"], r["latency_ms"]["p99"],
                r["server_us_per_delivery"] or 0, r["nginx_us_per_delivery"]), file=sys.stderr)
        return out
    finally:
        ng.stop()


def fanout_series(s, rates, secs):
    fanout(s, 100, 3)  # warm-up
    out = {}
    for rate in rates:
        out[rate] = fanout(s, rate, secs)
        r = out[rate]
        print("  %s %4d msg/s: %9.0f deliveries/s loss %.3f%% p50 %.1f p99 %.1f ms, server %.2f us/delivery%s" % (
            s.kind, rate, r["deliveries_per_s"], r["loss_percent"], r["latency_ms"]["p50"], r["latency_ms"]["p99"],
            r["server_us_per_delivery"] or 0, "" if r["clean"] else "  (not clean)"), file=sys.stderr)
        if r["loss_percent"] > 1 and rate not in (30, 35):
            break  # saturated: higher rates only take longer
    return out


def loss_free_max(series):
    ok = [r["deliveries_per_s"] for r in series.values() if r["loss_percent"] == 0 and r["rate_kept"]]
    return max(ok) if ok else 0


def main():
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4-ws-bench-")
    secs = 5 if QUICK else 10
    ramps = {
        "node-ws": [30, 35, 50, 70, 100, 150, 200, 300, 500, 700] if not QUICK else [30, 35, 70],
        "chat-server": [30, 35, 100, 200, 300, 500, 700, 1000, 1500, 2000] if not QUICK else [30, 35, 500],
    }
    raw = {"idle": {}, "fanout": {}, "nginx": {}, "publish": {}}
    for kind in ("node-ws", "chat-server"):
        print("%s: idle" % kind, file=sys.stderr)
        raw["idle"][kind] = fresh(kind, tmp, idle)
        print("  %s" % json.dumps(raw["idle"][kind]), file=sys.stderr)
    for kind in ("node-ws", "chat-server"):
        print("%s: fan-out" % kind, file=sys.stderr)
        raw["fanout"][kind] = fresh(kind, tmp, lambda s: fanout_series(s, ramps[kind], secs))
    print("chat-server: the backend's publish API beside WebSocket sends", file=sys.stderr)
    raw["publish"] = fresh("chat-server", tmp, lambda s: publish_api(s, secs))
    for kind in ("node-ws", "chat-server"):
        print("%s: through nginx" % kind, file=sys.stderr)
        raw["nginx"][kind] = fresh(kind, tmp, lambda s: through_nginx(s, tmp, secs))

    ours, node = raw["fanout"]["chat-server"], raw["fanout"]["node-ws"]
    bpc = {k: raw["idle"][k]["server_bytes_per_connection"] for k in raw["idle"]}
    peak = {k: (raw["idle"][k]["server_rss_max"] - raw["idle"][k]["server_rss_before"]) / raw["idle"][k]["connected"]
            for k in raw["idle"]}
    cpu = {k: raw["fanout"][k][30]["server_us_per_delivery"] for k in raw["fanout"]}
    user = {k: raw["fanout"][k][30].get("server_user_us_per_delivery") or 0 for k in raw["fanout"]}
    p99 = {k: raw["fanout"][k][35]["latency_ms"]["p99"] for k in raw["fanout"]}
    sat = {k: loss_free_max(raw["fanout"][k]) for k in raw["fanout"]}
    verdict = lambda ok: "pass" if ok else "MISS"
    rows = [
        ["RSS per idle connection (%d conns), bytes" % raw["idle"]["chat-server"]["connections"],
         "%.0f" % bpc["chat-server"], "%.0f" % bpc["node-ws"], "%.2f" % (bpc["chat-server"] / bpc["node-ws"]),
         "<= 5000 B", verdict(bpc["chat-server"] <= 5000)],
        ["  the same at the peak of the hold (Node's GC shrinks its heap later), bytes",
         "%.0f" % peak["chat-server"], "%.0f" % peak["node-ws"], "%.2f" % (peak["chat-server"] / peak["node-ws"]), "", ""],
        ["server user-space CPU per delivery at 30k deliveries/s, us", "%.2f" % user["chat-server"],
         "%.2f" % user["node-ws"], "%.2f" % (user["chat-server"] / max(user["node-ws"], 1e-9)), "<= 1/3",
         verdict(user["chat-server"] <= user["node-ws"] / 3)],
        ["  all server CPU per delivery (the loopback kernel path included), us", "%.2f" % cpu["chat-server"],
         "%.2f" % cpu["node-ws"], "%.2f" % (cpu["chat-server"] / cpu["node-ws"]), "", ""],
        ["p99 at 35k deliveries/s (Node's highest clean rate), ms", "%.1f" % p99["chat-server"], "%.1f" % p99["node-ws"],
         "%.2f" % (p99["chat-server"] / p99["node-ws"]), "<= 1/2", verdict(p99["chat-server"] <= p99["node-ws"] / 2)],
        ["loss-free saturation, deliveries/s", "%.0f" % sat["chat-server"], "%.0f" % sat["node-ws"],
         "%.1fx" % (sat["chat-server"] / max(sat["node-ws"], 1)), ">= 10x", verdict(sat["chat-server"] >= 10 * sat["node-ws"])],
    ]
    ng = raw["nginx"]
    for scheme in ("ws", "wss"):
        c, n = ng["chat-server"][scheme], ng["node-ws"][scheme]
        rows.append(["%s:// through nginx at 30k deliveries/s: server CPU per delivery, us" % scheme,
                     "%.2f" % (c["server_us_per_delivery"] or 0), "%.2f" % (n["server_us_per_delivery"] or 0),
                     "%.2f" % ((c["server_us_per_delivery"] or 0) / max(n["server_us_per_delivery"] or 0, 1e-9)), "", ""])
        rows.append(["  nginx CPU per delivery, us", "%.2f" % c["nginx_us_per_delivery"], "%.2f" % n["nginx_us_per_delivery"],
                     "%.2f" % (c["nginx_us_per_delivery"] / max(n["nginx_us_per_delivery"], 1e-9)), "", ""])
        rows.append(["  p99 (loss %%: %.3f / %.3f), ms" % (c["loss_percent"], n["loss_percent"]),
                     "%.1f" % c["latency_ms"]["p99"], "%.1f" % n["latency_ms"]["p99"],
                     "%.2f" % (c["latency_ms"]["p99"] / max(n["latency_ms"]["p99"], 1e-9)), "", ""])
    print_markdown_table(["metric", "chat-server", "node ws", "ratio", "target", ""], rows)
    pub_rows = []
    for key, r in raw["publish"].items():
        via, rate = key.split("@")
        pub_rows.append([via, rate, "%.0f" % r["deliveries_per_s"], "%.3f" % r["loss_percent"],
                         "%.1f / %.1f" % (r["latency_ms"]["p50"], r["latency_ms"]["p99"]), "%.1f" % r["lag_p99_ms"],
                         "%.2f" % (r["server_us_per_delivery"] or 0), "yes" if r["clean"] else "no"])
    print_markdown_table(["chat-server, 1,000 members: sent via", "msg/s", "deliveries/s", "loss %", "p50 / p99 ms",
                          "publisher lag p99 ms", "server us/delivery", "clean"], pub_rows)
    ramp_rows = []
    for kind in ("node-ws", "chat-server"):
        for rate, r in raw["fanout"][kind].items():
            ramp_rows.append([kind, str(rate), "%.0f" % r["deliveries_per_s"], "%.3f" % r["loss_percent"],
                              "%.1f / %.1f / %.1f" % (r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"]),
                              "%.2f" % (r["server_cpu_s"] or 0), "%.2f" % (r["server_us_per_delivery"] or 0),
                              "%.2f" % (r["client_cpu_s"] or 0), "yes" if r["clean"] else "no"])
    print_markdown_table(["server", "msg/s", "deliveries/s", "loss %", "p50 / p99 / max ms", "server CPU s",
                          "server us/delivery", "client CPU s", "clean"], ramp_rows)
    meta = {"node": node_version(), "quick": QUICK, "stamp": stamp}
    print("\nraw: %s" % write_results("ws", stamp, meta, rows, raw))


if __name__ == "__main__":
    main()
