"""One Redis vs a 3-shard Redis Cluster under chat-server's fan-out (bench/redis_cluster.sh).

The same three chat-server workers behind nginx on PostgreSQL (cluster.py's Side), twice: with
REDIS_URL on one private redis-server, then on a private Redis Cluster of 3 primaries (no
replicas: a replica only copies its primary's writes) made by `redis-cli --cluster create`.
30 rooms of 66 members and one publisher each, 100-byte payloads, `l4load fanout --rooms 30`
through nginx, an open-loop schedule; a step is clean with no loss, p99 < 50 ms and the
schedule kept. Reported for each: the loss-free deliveries/s (the highest clean step of a
rising ramp) and the CPU Redis spent per delivery (all shards together) at the highest rate
both kept clean. On a cluster each room's messages go to the one shard that owns it
(SPUBLISH); on one server every message goes to it.
--quick: 4 s steps and a short ramp (a smoke run, not for the README).
"""
import os, random, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster  # noqa: E402
from cluster import cpu_s  # noqa: E402
from common import install_signal_handlers, port_open, print_markdown_table, wait_for, write_results  # noqa: E402

QUICK = "--quick" in sys.argv
cluster.ROOMS, cluster.MEMBERS, cluster.PUBLISHERS = 30, 66, 30
cluster.SUBSCRIBERS = cluster.ROOMS * cluster.MEMBERS


class RedisCluster:
    """Three private redis-servers in cluster mode, every slot assigned."""

    def __init__(self, tmp):
        self.ports = []
        while len(self.ports) < 3:  # below the ephemeral range, with the bus port (+10000) free too
            p = random.randrange(12000, 22000)
            if p not in self.ports and not port_open(p) and not port_open(p + 10000):
                self.ports.append(p)
        self.procs = [subprocess.Popen(["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                                        "--cluster-config-file", os.path.join(tmp, "nodes-%d.conf" % p), "--save", "",
                                        "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL) for p in self.ports]
        wait_for(lambda: all(port_open(p) for p in self.ports), 10, what="redis-server in cluster mode")
        subprocess.run(["redis-cli", "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports] + ["--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        ok = lambda p: "cluster_state:ok" in subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"],
                                                            capture_output=True, text=True).stdout
        wait_for(lambda: all(ok(p) for p in self.ports), 30, 0.1, what="cluster_state:ok")

    def url(self):
        return "redis+cluster://" + ",".join("127.0.0.1:%d" % p for p in self.ports)

    def cpu(self):
        return sum(cpu_s(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def main():
    install_signal_handlers()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = tempfile.mkdtemp(prefix="l4-redis-cluster-bench-")
    secs = 4 if QUICK else 8
    rates = [10, 40] if QUICK else [10, 20, 40, 70, 100, 150, 200, 300, 400, 500, 700, 1000]
    raw = {}
    for kind in ("one", "cluster"):
        print("chat-server, 3 workers behind nginx, on %s" % ("one Redis" if kind == "one" else "a 3-shard Redis Cluster"),
              file=sys.stderr)
        redis = cluster.Redis(tempfile.mkdtemp(dir=tmp)) if kind == "one" else RedisCluster(tempfile.mkdtemp(dir=tmp))
        raw[kind] = cluster.ramp("chat-server", tmp, rates, secs, redis)
        raw[kind].pop("warmup")
    clean = lambda s: [r for r in s if s[r]["clean"]]
    top = {k: max(clean(raw[k]), default=None) for k in raw}
    sat = {k: raw[k][top[k]]["deliveries_per_s"] if top[k] else 0 for k in raw}
    both = max([r for r in clean(raw["one"]) if r in clean(raw["cluster"])], default=min(raw["one"]))
    redis_us = {k: raw[k][both]["redis_us_per_delivery"] for k in raw}
    rows = [
        ["loss-free deliveries/s (30 rooms x 66, p99 < 50 ms)", "%.0f (%s msg/s)" % (sat["one"], top["one"]),
         "%.0f (%s msg/s)" % (sat["cluster"], top["cluster"]), "%.2f" % (sat["cluster"] / max(sat["one"], 1))],
        ["Redis CPU per delivery at %d msg/s, us (all shards)" % both, "%.3f" % redis_us["one"], "%.3f" % redis_us["cluster"],
         "%.2f" % (redis_us["cluster"] / max(redis_us["one"], 1e-9))],
        ["server user-space CPU per delivery at %d msg/s, us" % both,
         "%.2f" % (raw["one"][both].get("server_user_us_per_delivery") or 0),
         "%.2f" % (raw["cluster"][both].get("server_user_us_per_delivery") or 0), ""],
    ]
    print_markdown_table(["metric", "one Redis", "3-shard cluster", "cluster/one"], rows)
    write_results("redis-cluster", stamp, {"quick": QUICK}, rows, {k: {str(r): v for r, v in raw[k].items()} for k in raw})


if __name__ == "__main__":
    main()
