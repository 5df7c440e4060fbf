"""chat-server vs Socket.IO, each as three processes behind one nginx with Redis between
them (the plan's horizontal step, and its fallback: a Socket.IO migration), one run.

- chat-server: three workers on their own ports, REDIS_URL (a private redis-server) and
  PostgreSQL (the machine's, 127.0.0.1:5432, a database made for the run): every message is
  stored before it is delivered, and fanned out through Redis.
- Socket.IO 4 (npm): three Node processes of workloads/sio_server.js with
  @socket.io/redis-adapter on a private redis-server, WebSocket transport only; nothing stored.
- nginx: one worker process, `least_conn` over the three ports, the WebSocket headers of the
  rendered template (the same file for both).
- load: 10 rooms x 200 members and 10 publishers (one per room), 100-byte payloads, an
  open-loop schedule; `l4load fanout --rooms 10` for chat-server, workloads/sio_load.js
  (socket.io-client, 2 processes) for Socket.IO, measured the same way: latency from each
  message's scheduled time to its receipt, loss = deliveries expected - received. A step is
  clean with no loss, p99 < 50 ms and the schedule kept.
- ramp: rising messages/s until the first step that is not clean; the loss-free rate is the
  deliveries/s of the highest clean step.  Target: chat-server >= 5x Socket.IO.
- CPU per delivery: of the three server processes over the publish window, at the highest
  rate both kept clean; judged on user-space CPU (the loopback kernel path, the same for both,
  excluded, as ws.py's row).  Target: chat-server <= 1/2 of Socket.IO.  All CPU, nginx's and
  Redis's CPU per delivery beside it (theirs from /proc over the whole step).
- RSS per connection: the three servers' RSS at the peak of the warm-up step (fresh processes)
  minus before it, over the 2,010 connections.  Target: chat-server <= 1/2 of Socket.IO.
--quick: 4 s steps and a short ramp (a smoke run, not for the README).
"""
import json, os, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import HERE, PEERS, free_port, install_signal_handlers, port_open, node_version, print_markdown_table, rss_kib, wait_for, write_results

ROOT = os.path.abspath(os.path.join(HERE, ".."))
REL = os.path.join(ROOT, "target", "release")
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
QUICK = "--quick" in sys.argv
ROOMS, MEMBERS, PUBLISHERS, SIZE = 10, 200, 10, 100
SUBSCRIBERS = ROOMS * MEMBERS


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), 10, what="redis-server")

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def cpu(self):
        return cpu_s(self.proc.pid)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Nginx(common.Nginx):
    """`least_conn` over the ports, with the WebSocket headers of the rendered template."""

    def __init__(self, tmp, ports):
        self.port = free_port()
        servers = "".join("    server 127.0.0.1:%d;\n" % p for p in ports)
        http = """  map $http_upgrade $bench_connection { default upgrade; '' close; }
  upstream bench {
    least_conn;
%(servers)s  }
  server {
    listen 127.0.0.1:%(port)d;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $bench_connection;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
  }
""" % {"servers": servers, "port": self.port}
        super().__init__(tempfile.mkdtemp(dir=tmp, prefix="nginx-"), http)
        wait_for(lambda: port_open(self.port), 10, what="nginx")


class Side:
    """Three server processes of one kind, their Redis, and nginx in front."""

    def __init__(self, kind, tmp, redis=None):
        self.kind, self.tmp = kind, tmp
        self.redis = redis or Redis(tempfile.mkdtemp(dir=tmp))
        self.ports = [free_port() for _ in range(3)]
        self.procs, self.db = [], None
        if kind == "chat-server":
            self.db = "l4bench_%d" % os.getpid()
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE %s" % self.db], check=True)
        for port in self.ports:
            if kind == "chat-server":
                env = dict(os.environ, PORT=str(port), JWT_SECRET=SECRET, APP_ENV="production", RUST_LOG="warn",
                           DATABASE_URL="postgres://postgres@127.0.0.1:5432/%s" % self.db, REDIS_URL=self.redis.url(),
                           MAX_CONNECTIONS="20000", REGISTRATION="open", MAX_CONNECTIONS_PER_USER="20000",
                           L4_INSTANCES="3")
                argv = [os.environ.get("CHAT_SERVER", os.path.join(REL, "chat-server"))]
            else:
                env = dict(os.environ, PORT=str(port), REDIS_URL=self.redis.url(),
                           NODE_PATH=os.path.join(PEERS, "node_modules"))
                argv = ["node", os.path.join(HERE, "workloads", "sio_server.js")]
            self.procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL))
            wait_for(lambda: port_open(port), 30, what="%s on %d" % (kind, port))
        self.nginx = Nginx(tmp, self.ports)
        time.sleep(1)

    def pids(self):
        return [p.pid for p in self.procs]

    def rss_kib(self):
        return sum(rss_kib(p) or 0 for p in self.pids())

    def token(self):
        r = subprocess.run([os.path.join(REL, "l4chat"), "--server", "http://127.0.0.1:%d" % self.ports[0],
                            "register", "bench%d" % time.monotonic_ns(), "bench-password"],
                           capture_output=True, text=True, timeout=30, check=True)
        return r.stdout.strip()

    def step(self, rate, secs, settle=1):
        """One load step at `rate` messages/s; with the peak RSS of the servers during it."""
        pids = self.pids()
        if self.kind == "chat-server":
            argv = [os.path.join(REL, "l4load"), "fanout", "--rooms", str(ROOMS), "--subscribers", str(SUBSCRIBERS),
                    "--publishers", str(PUBLISHERS), "--size", str(SIZE), "--rate", str(rate), "--secs", str(secs),
                    "--drain", "3", "--settle", str(settle), "--connect-rate", "1000",
                    "--url", "ws://127.0.0.1:%d/ws" % self.nginx.port, "--token", self.token(),
                    "--watch-pid", str(pids[0]), "--also-watch", ",".join(map(str, pids[1:]))]
        else:
            argv = ["node", os.path.join(HERE, "workloads", "sio_load.js"), "--url", "http://127.0.0.1:%d" % self.nginx.port,
                    "--rooms", str(ROOMS), "--subscribers", str(SUBSCRIBERS), "--publishers", str(PUBLISHERS),
                    "--size", str(SIZE), "--rate", str(rate), "--secs", str(secs), "--drain", "3", "--settle", str(settle),
                    "--connect-rate", "1000", "--procs", "2", "--watch-pids", ",".join(map(str, pids))]
        env = dict(os.environ, NODE_PATH=os.path.join(PEERS, "node_modules"))
        rss_before, peak, done = self.rss_kib(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], self.rss_kib())
                time.sleep(0.1)
        sampler = threading.Thread(target=sample)
        sampler.start()
        redis0 = self.redis.cpu()
        nginx0 = sum(cpu_s(p) for p in self.nginx.pids())
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        finally:
            done.set()
            sampler.join()
        if r.returncode != 0:
            raise RuntimeError("%s load failed: %s" % (self.kind, r.stderr[-2000:]))
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["redis_cpu_s"] = self.redis.cpu() - redis0
        out["nginx_cpu_s"] = sum(cpu_s(p) for p in self.nginx.pids()) - nginx0
        out["rss_before_kib"], out["rss_peak_kib"] = rss_before, peak[0]
        received = max(out["received"], 1)
        out["redis_us_per_delivery"] = out["redis_cpu_s"] * 1e6 / received
        print("  %s %5d msg/s: %9.0f deliveries/s loss %.3f%% p50 %.1f p99 %.1f ms, servers %.2f us/delivery, redis %.2f, rss peak %+.0f KiB%s" % (
            self.kind, rate, out["deliveries_per_s"], out["loss_percent"], out["latency_ms"]["p50"], out["latency_ms"]["p99"],
            out["server_us_per_delivery"] or 0, out["redis_us_per_delivery"], peak[0] - rss_before,
            "" if out["clean"] else "  (not clean)"), file=sys.stderr)
        return out

    def stop(self):
        self.nginx.stop()
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.redis.stop()
        if self.db:
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS %s" % self.db])


def ramp(kind, tmp, rates, secs, redis=None):
    """A warm-up step, then rising rates until the first step that is not clean; on `redis` (one
    of Redis's own otherwise)."""
    side = Side(kind, tmp, redis)
    try:
        # Warm-up (connections, the database's and V8's first use); its RSS growth, on fresh
        # processes, is the RSS per connection.
        out = {"warmup": side.step(rates[0], 3)}
        for rate in rates:
            out[rate] = side.step(rate, secs)
            if not out[rate]["clean"]:
                break
        return out
    finally:
        side.stop()


def plot(raw, path):
    sys.path.insert(0, os.path.join(PEERS, "py"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib (bench/cluster.sh installs it into bench/.peers/py): no plot", file=sys.stderr)
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("chat-server", "o-"), ("socket.io", "s--")):
        series = raw[kind]
        xs = [series[r]["deliveries_per_s"] for r in series]
        a.plot(xs, [series[r]["latency_ms"]["p99"] for r in series], style, label=kind)
        b.plot(xs, [series[r].get("server_user_us_per_delivery") or 0 for r in series], style, label=kind)
    a.axhline(50, color="grey", lw=0.8, ls=":")
    a.set(xscale="log", yscale="log", xlabel="deliveries/s (10 rooms x 200)", ylabel="p99 latency, ms",
          title="p99 from the scheduled send")
    b.set(xscale="log", xlabel="deliveries/s (10 rooms x 200)", ylabel="user-space CPU per delivery, us",
          title="3 server processes, user-space CPU")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    for ax in (a, b):
        ax.grid(True, which="both", lw=0.3)
        ax.legend()
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    a.yaxis.set_major_formatter(ScalarFormatter())
    a.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main():
    if "--plot" in sys.argv:
        # bench/cluster.py --plot results/cluster-STAMP.json OUT.png: the plot again, from a run's numbers.
        src, out = sys.argv[sys.argv.index("--plot") + 1:][:2]
        raw = json.load(open(src))["raw"]
        series = {k: {int(r): v for r, v in raw[k].items()} for k in ("chat-server", "socket.io")}
        print(plot(series, out))
        return
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4-cluster-bench-")
    secs = 4 if QUICK else 8
    rates = {
        "socket.io": [10, 20, 40, 70, 100, 150, 200, 300, 400, 500] if not QUICK else [10, 40],
        "chat-server": [10, 20, 40, 70, 100, 150, 200, 300, 400, 500, 700, 1000] if not QUICK else [10, 40, 200],
    }
    raw = {}
    for kind in ("socket.io", "chat-server"):
        print("%s: 3 processes behind nginx, Redis between them" % kind, file=sys.stderr)
        raw[kind] = ramp(kind, tmp, rates[kind], secs)

    warm = {k: raw[k].pop("warmup") for k in raw}
    clean = lambda s: [r for r in s if s[r]["clean"]]
    top = {k: max(clean(raw[k]), default=None) for k in raw}
    sat = {k: raw[k][top[k]]["deliveries_per_s"] if top[k] else 0 for k in raw}
    both = max([r for r in clean(raw["socket.io"]) if r in clean(raw["chat-server"])], default=min(raw["socket.io"]))
    cpu = {k: raw[k][both]["server_us_per_delivery"] or 0 for k in raw}
    user = {k: raw[k][both].get("server_user_us_per_delivery") or 0 for k in raw}
    redis = {k: raw[k][both]["redis_us_per_delivery"] for k in raw}
    proxy = {k: raw[k][both]["nginx_cpu_s"] * 1e6 / max(raw[k][both]["received"], 1) for k in raw}
    per_conn = {k: (warm[k]["rss_peak_kib"] - warm[k]["rss_before_kib"]) * 1024 / (SUBSCRIBERS + PUBLISHERS) for k in raw}
    verdict = lambda ok: "pass" if ok else "MISS"
    rows = [
        ["loss-free deliveries/s (10 rooms x 200, p99 < 50 ms)", "%.0f (%s msg/s)" % (sat["chat-server"], top["chat-server"]),
         "%.0f (%s msg/s)" % (sat["socket.io"], top["socket.io"]), "%.1fx" % (sat["chat-server"] / max(sat["socket.io"], 1)),
         ">= 5x", verdict(sat["chat-server"] >= 5 * sat["socket.io"])],
        ["server user-space CPU per delivery at %d msg/s, us (3 processes)" % both, "%.2f" % user["chat-server"],
         "%.2f" % user["socket.io"], "%.2f" % (user["chat-server"] / max(user["socket.io"], 1e-9)), "<= 1/2",
         verdict(user["chat-server"] <= user["socket.io"] / 2)],
        ["  all server CPU per delivery (the loopback kernel path included), us", "%.2f" % cpu["chat-server"],
         "%.2f" % cpu["socket.io"], "%.2f" % (cpu["chat-server"] / max(cpu["socket.io"], 1e-9)), "", ""],
        ["  nginx CPU per delivery (the step, connections included), us", "%.2f" % proxy["chat-server"],
         "%.2f" % proxy["socket.io"], "%.2f" % (proxy["chat-server"] / max(proxy["socket.io"], 1e-9)), "", ""],
        ["  Redis CPU per delivery at %d msg/s, us" % both, "%.3f" % redis["chat-server"], "%.3f" % redis["socket.io"],
         "%.2f" % (redis["chat-server"] / max(redis["socket.io"], 1e-9)), "", ""],
        ["RSS per connection (3 processes, %d connections), bytes" % (SUBSCRIBERS + PUBLISHERS), "%.0f" % per_conn["chat-server"],
         "%.0f" % per_conn["socket.io"], "%.2f" % (per_conn["chat-server"] / max(per_conn["socket.io"], 1)), "<= 1/2",
         verdict(per_conn["chat-server"] <= per_conn["socket.io"] / 2)],
    ]
    print_markdown_table(["metric", "chat-server", "Socket.IO", "ratio", "target", ""], rows)
    results = os.path.join(HERE, "results")
    png = plot(raw, os.path.join(results, "cluster-%s.png" % stamp))
    meta = {"node": node_version(), "socket.io": json.load(open(os.path.join(PEERS, "node_modules", "socket.io", "package.json")))["version"],
            "plot": png}
    raw["warmup"] = warm
    write_results("cluster", stamp, meta, rows, raw)


if __name__ == "__main__":
    main()
