"""What bench/soak.py computes once the run is over: a cause for every reconnection, the plan's
metrics from the scraped /metrics (the README's PromQL arithmetic over the whole run), the RSS
trend, and the RSS plot.  Not a script: bench/soak.sh is the entry point."""
import os, sys

HERE = os.path.dirname(os.path.abspath(__file__))

# How long after a fault's command returned its effects may still show: a drained worker's
# clients reconnect within DRAIN_WINDOW (3 s) plus their backoff (<= 10 s); a backend that
# came back is used again within the workers' retry.
AFTER = {"reload": 15, "kill": 15, "memory": 15, "redis": 30, "postgres": 30}
# Reconnections these faults may cause (a worker stopped or killed, or the client's own link);
# a restarted Redis or PostgreSQL should cause none.
ALLOWED = {"reload", "kill", "memory", "link"}
# The close a connection ended with, for each fault that ends connections: a worker stopped
# gracefully (a reload, a memory-ceiling replacement) closes with 1012; a killed one sends no
# close at all.
CLOSE = {"reload": 1012, "memory": 1012, "kill": None}


def classify(records, faults, t0):
    """{"drops": {cause: n}, "failed": {cause: n}, "unexplained": n, "samples": [...]} over the
    records of `l4load soak` (drop: a connection ended; failed: an attempt failed)."""
    out = {"drops": {}, "failed": {}, "stopped": 0, "unexplained": 0, "samples": [], "incomplete": 0, "link_downs": 0}
    for r in records:
        kind = r["kind"]
        if kind == "link_down":
            out["link_downs"] += 1
            continue
        if kind in ("incomplete", "gap", "jump", "refused"):
            out["incomplete"] += kind == "incomplete"
            if len(out["samples"]) < 20:
                out["samples"].append(r)
            continue
        if kind == "stopped":
            out["stopped"] += 1
            out["unexplained"] += 1
            if len(out["samples"]) < 20:
                out["samples"].append(r)
            continue
        t = r["t"] / 1000.0
        if r.get("link"):
            cause = "link"
        else:
            # A fault in progress whose way of ending connections matches this one (a failed
            # attempt may come from any of them).
            hits = [f["kind"] for f in faults if not f["error"] and f["start"] - 1 <= t <= f["end"] + AFTER[f["kind"]]
                    and (kind == "failed" or f["kind"] not in CLOSE or CLOSE[f["kind"]] == r.get("code"))]
            cause = next((h for h in hits if h in ALLOWED), hits[0] if hits else "none")
        bucket = out["drops" if kind == "drop" else "failed"]
        bucket[cause] = bucket.get(cause, 0) + 1
        if cause not in ALLOWED:
            out["unexplained"] += 1
            if len(out["samples"]) < 20:
                out["samples"].append(dict(r, at_s=round(t - t0, 1), cause=cause))
    return out


def totals(runs, baseline, left_out):
    """Each series summed over every worker run but those left out, less what it held at the
    first scrape."""
    out = {}
    for key, series in runs.items():
        if key in left_out:
            continue
        base = baseline.get(key, {})
        for name, value in series.items():
            out[name] = out.get(name, 0.0) + value - base.get(name, 0.0)
    return out


def total(t, prefix, keep=lambda labels: True):
    return sum(v for k, v in t.items() if k.split("{")[0] == prefix and keep(k[len(prefix):]))


def quantile(q, buckets):
    """histogram_quantile over [(le, cumulative count)], linear inside a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, prev_le, prev_n = q * buckets[-1][1], 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return prev_le


def from_metrics(runs, baseline, left_out):
    """The plan's metrics over the run, from every worker run but those `left_out` (the ones that
    took a memory fault's idle connections, which are not the clients')."""
    t = totals(runs, baseline, left_out)
    upgrades = total(t, "chat_upgrade_requests_total")
    conns = total(t, "chat_connections_total")
    auth = total(t, "chat_connections_rejected_total", lambda l: 'reason="auth"' in l)
    dur_sum, dur_n = total(t, "chat_connection_duration_seconds_sum"), total(t, "chat_connection_duration_seconds_count")
    resumed = total(t, "chat_connections_resumed_total")
    out_ = total(t, "chat_messages_out_total")
    purged = total(t, "chat_deliveries_dropped_total", lambda l: 'reason="purged"' in l)
    dropped = total(t, "chat_deliveries_dropped_total", lambda l: 'reason="purged"' not in l)
    by_le = {}
    for k, v in t.items():
        if k.startswith("chat_delivery_duration_seconds_bucket"):
            le = k.split('le="')[1].split('"')[0]
            le = float("inf") if le == "+Inf" else float(le)
            by_le[le] = by_le.get(le, 0.0) + v
    p99 = quantile(0.99, list(by_le.items()))
    div = lambda a, b: a / b if b else None
    return {"success": div(conns, upgrades - auth), "duration_s": div(dur_sum, dur_n), "reconnection": div(resumed, conns),
            "delivery": div(out_ - purged, out_ + dropped), "p99_ms": p99 * 1000 if p99 is not None else None,
            "upgrades": upgrades, "connections": conns, "rejected": {k: v for k, v in t.items() if k.startswith("chat_connections_rejected_total")},
            "resumed": resumed, "out": out_, "dropped": {k: v for k, v in t.items() if k.startswith("chat_deliveries_dropped_total")},
            "worker_runs": len(runs), "left_out": len(left_out)}


def slope(xy):
    """Least-squares slope of [(x, y)]."""
    n = len(xy)
    mx, my = sum(x for x, _ in xy) / n, sum(y for _, y in xy) / n
    var = sum((x - mx) ** 2 for x, _ in xy)
    return sum((x - mx) * (y - my) for x, y in xy) / var if var else 0.0


def workers_mib(p):
    """The workers' RSS together at one sample."""
    return sum(mib for _, mib in p["workers"].values())


def rss_trend(points, minutes):
    """Whether memory grows. Reloads replace every worker every 5 minutes, and a worker's RSS
    rises for its first minutes as its rooms' caches fill (ROOM_CACHE messages a room: 256 at
    1.3 messages a second take about 3 minutes), then levels. A leak would lift that level from one
    run to the next: each run that lived 3.5 minutes or more gives its level (its mean RSS from 3
    minutes of age to its end), and the fitted change of the levels over the last 20 minutes (or
    the last two thirds of a shorter run) must be within 10 % of their mean. The daemon lives
    through the whole run: its fitted change over the same window, within 10 % too."""
    out = {"judged": minutes >= 30, "flat": False, "first": 0, "last": 0, "max": 0}
    if not points:
        return out
    tot = [workers_mib(p) for p in points]
    out.update(first=tot[0], last=tot[-1], max=max(tot))
    window = 20 * 60 if minutes >= 30 else points[-1]["t"] * 2 / 3
    since = points[-1]["t"] - window
    runs = {}
    for p in points:
        for inst, (pid, mib) in p["workers"].items():
            runs.setdefault((inst, pid), []).append((p["t"], mib))
    levels = []  # (the run's end, its level)
    for series in runs.values():
        born = series[0][0]
        settled = [m for t, m in series if t - born >= 180]
        if series[-1][0] - born >= 210 and len(settled) >= 3 and series[-1][0] >= since:
            levels.append((series[-1][0], sum(settled) / len(settled)))
    level_mean = sum(m for _, m in levels) / len(levels) if levels else 0.0
    level_change = 100 * slope(levels) * window / level_mean if len(levels) >= 2 and level_mean else 0.0
    daemon = [(p["t"], p["daemon"]) for p in points if p["t"] >= since]
    d_mean = sum(m for _, m in daemon) / len(daemon)
    d_change = 100 * slope(daemon) * window / d_mean if d_mean else 0.0
    out.update(runs=len(levels), level_mean=level_mean, level_pct=level_change, levels=levels,
               daemon_pct=d_change, daemon_mean=d_mean, window_min=window / 60,
               flat=len(levels) >= 3 and abs(level_change) <= 10 and abs(d_change) <= 10)
    return out


def plot(points, faults, t0, path):
    sys.path.insert(0, os.path.join(HERE, ".peers", "py"))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib (bench/soak.sh installs it into bench/.peers/py): no plot", file=sys.stderr)
        return None
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ts = [p["t"] / 60 for p in points]
    ax.plot(ts, [workers_mib(p) for p in points], "k-", lw=1.6, label="3 workers, total")
    for i in range(3):
        ax.plot(ts, [p["workers"].get(i, [0, None])[1] for p in points], lw=0.8, label="instance %d" % i)
    for name in ("daemon", "nginx", "redis"):
        ax.plot(ts, [p[name] for p in points], lw=0.8, ls="--", label=name if name != "daemon" else "l4ctl daemon")
    colours = {"reload": "tab:blue", "kill": "tab:red", "memory": "tab:purple", "redis": "tab:orange", "postgres": "tab:green"}
    seen = set()
    for f in faults:
        k = f["kind"]
        ax.axvline((f["start"] - t0) / 60, color=colours[k], lw=0.8, ls=":", label=None if k in seen else k)
        seen.add(k)
    ax.set(xlabel="minutes", ylabel="RSS, MiB", title="RSS during the soak (faults dotted)")
    ax.grid(True, lw=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
