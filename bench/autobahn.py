"""WebSocket conformance of chat-server: the Autobahn TestSuite's cases, run by kosoku.

Method: chat-server starts with `ECHO_ROUTE=1` (a SQLite database in a temporary folder,
APP_ENV=development) and kosoku, in its fuzzing-client mode, runs each case against
`ws://127.0.0.1:PORT/echo`, the echo route that shares `/ws`'s WebSocket settings, outbox
and limits. Two runs, one server each:

- sections 1-7 and 10 (framing, pings and pongs, reserved bits, opcodes, fragmentation,
  UTF-8, closing, misc) with the default settings, as deployed: MAX_MESSAGE_SIZE 64 KiB;
- section 9 (messages and frames up to 16 MiB, sent whole or in chops) with
  MAX_MESSAGE_SIZE=16 MiB and QUEUE_MAX_BYTES=64 MiB, since the defaults would
  (rightly) close those with 1009; reported with its timings, not judged.

Sections 12 and 13 (permessage-deflate) are out of scope: chat-server does not offer
compression. Target: no FAILED (or ERROR) case in sections 1-7 and 10; NON-STRICT and
INFORMATIONAL are conformant by Autobahn's own definition. Exit status 1 otherwise.

Flags: --skip-9 leaves out the large messages; --parallelism N runs N cases of the
judged sections at once (default 4; section 9 runs one at a time, for its timings).
"""

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import free_port, print_markdown_table, wait_for, write_results

JUDGED = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
BAD = {"FAILED", "ERROR", "UNCLEAN", "WRONG CODE", "FAILED BY CLIENT"}


def start_server(tmp, extra):
    port = free_port()
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "NODE_ENV", "L4_INSTANCES"):
        env.pop(name, None)
    env.update({
        "APP_ENV": "development",
        "ECHO_ROUTE": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": "sqlite://%s/chat.db" % tmp,
        "RUST_LOG": "warn",
    })
    env.update(extra)
    log = open(os.path.join(tmp, "server-%d.log" % port), "w")
    proc = subprocess.Popen([os.environ["CHAT_SERVER"]], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)

    def up():
        if proc.poll() is not None:
            raise RuntimeError("chat-server exited (%s); see %s" % (proc.returncode, log.name))
        import socket
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for(up, 30, 0.05, "chat-server to listen")
    return proc, port


def run_cases(port, cases, outdir, parallelism):
    argv = [os.environ["KOSOKU"], "ws://127.0.0.1:%d/echo" % port, "-p", str(parallelism), "-o", outdir]
    for c in cases:
        argv += ["-i", c]
    started = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - started
    index = os.path.join(outdir, "index.json")
    if not os.path.exists(index):
        raise RuntimeError("kosoku wrote no report (%d): %s" % (r.returncode, r.stderr[-2000:]))
    with open(index) as f:
        results = next(iter(json.load(f).values()))
    return results, took


def section(case_id):
    return case_id.split(".")[0]


def verdict_rows(results):
    by_section = collections.OrderedDict()
    for case_id in sorted(results, key=lambda c: [int(x) for x in c.split(".")]):
        by_section.setdefault(section(case_id), []).append(results[case_id])
    rows = []
    for sec, cases in by_section.items():
        counts = collections.Counter(c["behavior"] for c in cases)
        close_bad = sum(1 for c in cases if c["behaviorClose"] in BAD)
        rows.append([sec, str(len(cases))] + [str(counts.get(v, 0)) for v in VERDICTS] + [str(close_bad)])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-9", action="store_true", help="leave out section 9 (large messages)")
    ap.add_argument("--parallelism", type=int, default=4)
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    reports = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "autobahn-" + stamp)
    tmp = tempfile.mkdtemp(prefix="l4-autobahn-")
    raw = {}
    failed = []
    try:
        proc, port = start_server(tmp, {})
        try:
            judged, took = run_cases(port, JUDGED, os.path.join(reports, "judged"), args.parallelism)
        finally:
            proc.terminate()
            proc.wait(10)
        raw["judged"] = {"seconds": took, "cases": judged}
        failed = [c for c, v in judged.items() if v["behavior"] in BAD or v["behaviorClose"] in BAD]
        print("Sections 1-7 and 10, default settings (%d cases in %.1f s):" % (len(judged), took))
        head = ["section", "cases"] + VERDICTS + ["close not OK"]
        print_markdown_table(head, verdict_rows(judged))
        if not args.skip_9:
            big = {"MAX_MESSAGE_SIZE": str(16 << 20), "QUEUE_MAX_BYTES": str(64 << 20)}
            proc, port = start_server(tmp, big)
            try:
                large, took9 = run_cases(port, ["9.*"], os.path.join(reports, "large"), 1)
            finally:
                proc.terminate()
                proc.wait(10)
            raw["large"] = {"seconds": took9, "cases": large}
            print("\nSection 9 (large messages), MAX_MESSAGE_SIZE=16 MiB, one case at a time (%.1f s):" % took9)
            groups = collections.OrderedDict()
            for case_id in sorted(large, key=lambda c: [int(x) for x in c.split(".")]):
                groups.setdefault(".".join(case_id.split(".")[:2]), []).append((case_id, large[case_id]))
            rows = []
            for group, cases in groups.items():
                verdicts = collections.Counter(v["behavior"] for _, v in cases)
                rows.append([group, " ".join("%s:%d" % (c.split(".")[2], v["duration"]) for c, v in cases),
                             ", ".join("%s %d" % kv for kv in sorted(verdicts.items()))])
            print_markdown_table(["cases", "case:ms", "verdicts"], rows)
        meta = {"chat_server": os.environ["CHAT_SERVER"], "reports": reports}
        out = write_results("autobahn", stamp, meta, {"failed": failed}, raw)
        print("\nraw: %s; HTML reports: %s/" % (out, reports))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print("FAILED: %s" % ", ".join(sorted(failed)), file=sys.stderr)
        sys.exit(1)
    print("target met: no FAILED case in sections 1-7 and 10")


if __name__ == "__main__":
    main()
