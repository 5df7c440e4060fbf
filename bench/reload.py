"""Zero-downtime reload behind nginx: l4ctl + chat-server vs PM2 cluster mode + Node `ws`.

Both stacks run 4 instances behind the same nginx (Debian's) with the same config: l4ctl's
built-in template rendered by `l4ctl nginx render`; for PM2 its one `server` line points at the
port PM2's cluster mode shares between its instances.
- layer4: `l4ctl` runs 4 `chat-server` workers (release) on sockets it owns, ready by sd_notify,
  PostgreSQL (127.0.0.1:5432) and a private `redis-server` between them.
- PM2: `pm2 start ws_cluster.js -i 4` (cluster mode), the `ws` README's broadcast recipe with the
  plan's health route, closing its clients with 1012 on SIGINT as PM2's docs advise.
The load (workloads/reload_load.js, Node) is the same for both: 200 WebSocket clients through
nginx that reconnect 50-250 ms after any close (JWT + l4.json for chat-server), and 2 loops of
`GET /api/health/websocket` through nginx on a new connection each. 3 s after the load starts,
the reload command runs (`l4ctl reload chat` / `pm2 reload ws`); the load runs 12 s in all.
Counted over the whole run: failed health requests (anything but a 200), failed WebSocket
connection attempts (refused, or a handshake answered with an HTTP error), dropped WebSocket
connections (closed by the server side), the reload command's wall time, and the time until
every old worker has exited (l4ctl's command returns once every new worker is ready; the old
ones drain their WebSocket clients over DRAIN_WINDOW, 3 s, meanwhile). 3 runs each,
alternating. Target: 0 failed requests for layer4.
--quick: 1 run each, 6 s of load.
"""
import json, os, re, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (HERE, L4CTL, PEERS, PM2_BIN, free_port, free_ports, install_signal_handlers, is_dead, node_version,  # noqa: E402
                    print_markdown_table, wait_for, write_results)

ROOT = os.path.abspath(os.path.join(HERE, ".."))
CHAT = os.path.join(ROOT, "target", "release", "chat-server")
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
PG = os.environ.get("L4_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
QUICK = "--quick" in sys.argv
RUNS, SECONDS, RELOAD_AT, CLIENTS = (1, 6, 2, 200) if QUICK else (3, 12, 3, 200)


def sh(argv, env=None, check=True, timeout=120):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


class Nginx:
    def __init__(self, d, site):
        self.d = d
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(site)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{ worker_connections 4096; }}\n"
                    "http {{\n access_log off;\n client_body_temp_path {0}/body;\n proxy_temp_path {0}/proxy;\n"
                    " fastcgi_temp_path {0}/f;\n uwsgi_temp_path {0}/u;\n scgi_temp_path {0}/s;\n"
                    " include {0}/site.conf;\n}}\n".format(d))
        self.args = ["nginx", "-p", d + "/", "-e", d + "/error.log", "-c", d + "/nginx.conf"]
        sh(self.args)

    def stop(self):
        sh(self.args + ["-s", "stop"], check=False)


class Layer4:
    name = "l4ctl + chat-server"

    def __init__(self, tmp, nginx_port):
        self.tmp, self.nginx_port = tmp, nginx_port
        self.port = free_ports(4)
        self.redis_port = free_port()
        self.db = "l4bench_%d" % os.getpid()

    def start(self):
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        sh(["psql", PG, "-qc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db])
        sh(["psql", PG, "-qc", "CREATE DATABASE %s" % self.db])
        db_url = PG[:PG.rfind("/")] + "/" + self.db
        self.cfg = os.path.join(self.tmp, "l4.toml")
        with open(self.cfg, "w") as f:
            f.write('[daemon]\nhome = "run"\nlog_dir = "logs"\napi_listen = "off"\n'
                    '[nginx]\nlisten = "127.0.0.1:%d"\noutput = "nginx/site.conf"\naccess_log = "off"\n'
                    '[[apps]]\nname = "chat"\nscript = "%s"\ninstances = 4\nport = %d\nready = "notify"\n'
                    '[apps.env]\nJWT_SECRET = "%s"\nAPP_ENV = "production"\nDATABASE_URL = "%s"\n'
                    'REDIS_URL = "redis://127.0.0.1:%d"\nRUST_LOG = "warn"\n'
                    % (self.nginx_port, CHAT, self.port, SECRET, db_url, self.redis_port))
        wait_for(lambda: sh(["redis-cli", "-p", str(self.redis_port), "ping"], check=False).returncode == 0, 10)
        self.ctl("start", self.cfg)
        self.ctl("nginx", "render")
        with open(os.path.join(self.tmp, "nginx", "site.conf")) as f:
            return f.read()

    def ctl(self, *args):
        return sh([L4CTL, "-c", self.cfg, *args])

    def reload(self):
        return self.ctl("reload", "chat")

    def pids(self):
        return [i["pid"] for i in json.loads(self.ctl("status", "--json").stdout)["instances"] if i["pid"]]

    def load_args(self):
        return ["--jwt-secret", SECRET]

    def stop(self):
        sh([L4CTL, "-c", self.cfg, "kill"], check=False)
        self.redis.kill()
        self.redis.wait()
        sh(["psql", PG, "-qc", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db], check=False)


class Pm2:
    name = "PM2 cluster + Node ws"

    def __init__(self, tmp, nginx_port):
        self.tmp, self.port, self.nginx_port = tmp, free_port(), nginx_port
        self.env = dict(os.environ, PM2_HOME=os.path.join(tmp, "pm2"), PORT=str(self.port),
                        NODE_PATH=os.path.join(PEERS, "node_modules"))

    def start(self, site):
        sh([PM2_BIN, "start", os.path.join(HERE, "workloads", "ws_cluster.js"), "-i", "4", "--name", "ws"], env=self.env)
        # The same nginx config, its upstream pointed at PM2's one shared port.
        servers = re.compile(r"^    server 127\.0\.0\.1:\d+ .*\n", re.M)
        first = servers.search(site).group(0)
        site = re.sub(r"^    listen .*;$", "    listen 127.0.0.1:%d;" % self.nginx_port, site, count=1, flags=re.M)
        return servers.sub("", site).replace("    least_conn;\n", "    least_conn;\n" + re.sub(r":\d+ ", ":%d " % self.port, first, 1))

    def reload(self):
        return sh([PM2_BIN, "reload", "ws"], env=self.env)

    def pids(self):
        out = sh([PM2_BIN, "jlist"], env=self.env).stdout
        return [p["pid"] for p in json.loads(out[out.index("["):]) if p.get("pid")]

    def load_args(self):
        return []

    def stop(self):
        sh([PM2_BIN, "kill"], env=self.env, check=False)


def one_run(tool, site, nginx_dir, nginx_port):
    nginx = Nginx(nginx_dir, site)
    try:
        wait_for(lambda: sh(["curl", "-sf", "http://127.0.0.1:%d/api/health/websocket" % nginx_port], check=False).returncode == 0, 20)
        load = subprocess.Popen(["node", os.path.join(HERE, "workloads", "reload_load.js"),
                                 "--ws", "ws://127.0.0.1:%d/ws" % nginx_port,
                                 "--health", "http://127.0.0.1:%d/api/health/websocket" % nginx_port,
                                 "--clients", str(CLIENTS), "--loops", "2", "--seconds", str(SECONDS), *tool.load_args()],
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, PEERS=PEERS))
        time.sleep(RELOAD_AT)
        old = tool.pids()
        t0 = time.time()
        tool.reload()
        t1 = time.time()
        wait_for(lambda: all(is_dead(p) for p in old), 30, 0.01, what="the old workers to exit")
        t2 = time.time()
        out, _ = load.communicate(timeout=SECONDS + 30)
        raw = json.loads(out)
        raw.update(reload_s=t1 - t0, old_gone_s=t2 - t0, reload_at=t0 * 1000, old_pids=old)
        return raw
    finally:
        nginx.stop()


def main():
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = {"layer4": [], "pm2": []}
    site = None
    for rep in range(RUNS):
        for key, cls in (("layer4", Layer4), ("pm2", Pm2)):
            tmp = tempfile.mkdtemp(prefix="l4reload")
            nginx_dir = os.path.join(tmp, "nginx-run")
            os.makedirs(nginx_dir)
            nginx_port = free_port()
            tool = cls(tmp, nginx_port)
            try:
                this_site = tool.start() if key == "layer4" else tool.start(site)
                if key == "layer4":
                    site = this_site
                raw[key].append(one_run(tool, this_site, nginx_dir, nginx_port))
                r = raw[key][-1]
                print("%s run %d: health %d/%d failed, %d failed attempts, %d dropped, reload %.2f s"
                      % (tool.name, rep + 1, len(r["health_failed"]), r["health_total"], len(r["failed_attempts"]),
                         len(r["dropped"]), r["reload_s"]), file=sys.stderr)
            finally:
                tool.stop()
                shutil.rmtree(tmp, ignore_errors=True)

    def med(key, f):
        xs = sorted(f(r) for r in raw[key])
        return xs[len(xs) // 2]
    rows = []
    for label, f, fmt in (("failed health requests through nginx", lambda r: len(r["health_failed"]), "%d"),
                          ("health requests made", lambda r: r["health_total"], "%d"),
                          ("failed WebSocket connection attempts", lambda r: len(r["failed_attempts"]), "%d"),
                          ("dropped WebSocket connections", lambda r: len(r["dropped"]), "%d"),
                          ("reload command wall time (s)", lambda r: r["reload_s"], "%.2f"),
                          ("until every old worker exited (s)", lambda r: r["old_gone_s"], "%.2f")):
        a, b = med("layer4", f), med("pm2", f)
        rows.append([label + " (median of %d)" % RUNS, fmt % a, fmt % b, ("%.2f" % (a / b)) if b else "-"])
    print_markdown_table(["metric", Layer4.name, Pm2.name, "ratio"], rows)
    meta = {"runs": RUNS, "seconds": SECONDS, "clients": CLIENTS, "node": node_version(), "stamp": stamp}
    print("\nraw:", write_results("reload", stamp, meta, rows, raw))


if __name__ == "__main__":
    main()
