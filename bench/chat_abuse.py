"""The chat sections of abuse.py: chat-server (target/release/chat-server) under clients meant
to hurt it.  Each section starts its own chat-server (SQLite in a temp dir, APP_ENV=production,
a bench JWT secret) and signs its own tokens (HS256, as the server checks them).  The WebSocket
client here is a minimal one (handshake, masked frames out, frames in), so that a client can
send and then never read, which no library makes easy.

chat-replay  Issue 14's replay attack.  Two rooms of --replay-messages (1000) stored messages of
             60,000 bytes are written straight into the database before any client joins (the
             server reads a room's head from it at the first join).  One reading client resumes
             both rooms from 0 and must get every message once, in order; it leaves, and after
             11 s (past one memory trim) VmRSS is read ("before").  Then --replay-conns (20)
             connections with a 4 KiB receive buffer each send one `resume` of both rooms from 0
             (2 x 60 MB each) and never read.  chat-server's VmRSS is polled every 50 ms from just
             before the resumes until every one of them was closed (chat_disconnections_total
             {reason="slow_consumer"}, by WRITE_TIMEOUT, set to 3 s here) or 60 s passed: the peak
             growth.  The connections are then dropped; VmRSS 30 s later is compared with the
             value before.
             Targets: peak RSS growth < 64 MB; every connection closed with 4001 (counted by the
             server); RSS 30 s after within 20 % of before; the reader served in full.

chat-login-flood  --login-conns (300) threads on 127.0.0.1 post wrong logins (user names
             cycling over 1000) back to back for --login-flood s (20); meanwhile, once a second,
             the registered user logs in from one of 20 other loopback addresses (127.0.0.10-29,
             each within its own AUTH_RATE_PER_IP).  VmRSS idle before, its peak during (sampled
             once a second), and 30 s after.
             Targets: every legitimate login answered 200 and their p99 < 1 s; RSS peak and
             30 s after within 50 MB of idle.

chat-room-flood  One user on 4 connections joins (and leaves) a new room per connection per round,
             reading every answer, 200 rounds a second at most (400 frames a second per
             connection, under MAX_REQUESTS_PER_SECOND), for --room-flood s (60): ROOM_CREATION_RATE refuses most
             (rate_limited).  VmRSS idle, peak, and --room-after s (100: rooms leave memory about
             a minute after their last member, at the sweep every METRICS_LOG_INTERVAL) after the
             connections closed, with chat_rooms then.
             Targets: RSS peak < 64 MB above idle; no room left in memory; RSS after within 20 %
             of idle.
"""
import base64, hashlib, hmac, json, os, signal, socket, sqlite3, struct, subprocess, time

from common import HERE, free_port, rss_kib, wait_for

ROOT = os.path.abspath(os.path.join(HERE, ".."))
CHAT = os.environ.get("CHAT_SERVER", os.path.join(ROOT, "target", "release", "chat-server"))
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(uid, name, ttl=3600):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    body = b64(json.dumps({"sub": str(uid), "name": name, "iat": now, "exp": now + ttl}).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def request(port, method, path, body=None, source=None, timeout=30):
    """(status, body bytes, seconds) of one HTTP/1.1 request to 127.0.0.1:port (Connection:
    close), from the loopback address `source` when given."""
    t0 = time.perf_counter()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        extra = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) if body is not None else b""
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n%s"
                  % (method.encode(), path.encode(), extra, body or b""))
        answer = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            answer += c
    finally:
        s.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.split(b"\r\n\r\n", 1)[-1], time.perf_counter() - t0


class ChatServer:
    def __init__(self, d, env):
        self.dir, self.port = d, free_port()
        self.db = os.path.join(d, "chat.db")
        env = dict(os.environ, PORT=str(self.port), JWT_SECRET=SECRET, APP_ENV="production",
                   DATABASE_URL="sqlite://%s" % self.db, RUST_LOG="warn", **env)
        self.proc = subprocess.Popen([CHAT], env=env, stdout=subprocess.DEVNULL)
        wait_for(lambda: self.metrics() is not None, 20, 0.05, what="chat-server on port %d" % self.port)

    def metrics(self):
        try:
            _, body, _ = request(self.port, "GET", "/metrics", timeout=2)
        except OSError:
            return None
        return body.decode(errors="replace")

    def metric(self, name, labels=""):
        text = self.metrics() or ""
        want = name + (("{" + labels + "}") if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def shutdown(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Ws:
    """A WebSocket client connection: `send` text frames, `frame` reads one (opcode, payload)."""

    def __init__(self, port, tok, rcvbuf=None):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(30)
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
                        % (key, tok)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            c = self.s.recv(4096)
            if not c:
                raise RuntimeError("closed during the handshake")
            self.buf += c
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("upgrade refused: %r" % head[:200])

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                 bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                 bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n:
            c = self.s.recv(1 << 20)
            if not c:
                raise RuntimeError("connection closed")
            self.buf += c

    def frame(self):
        self._need(2)
        opcode, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        at = 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return opcode, payload

    def close(self):
        self.s.close()


def seed(db, rooms, n, size):
    """n messages of `size` bytes per room, straight into the database."""
    con = sqlite3.connect(db, timeout=30)
    body = "x" * size
    ts = int(time.time() * 1000)
    with con:
        for room in rooms:
            con.executemany("INSERT INTO messages (room, seq, user_id, user_name, client_id, body, ts) "
                            "VALUES (?, ?, 1, 'seed', ?, ?, ?)",
                            ((room, seq, "%s-%d" % (room, seq), body, ts) for seq in range(1, n + 1)))
    con.close()


def chat_replay(a, tmp, daemons):
    d = os.path.join(tmp, "chat-replay")
    os.makedirs(d)
    server = ChatServer(d, {"WRITE_TIMEOUT": "3000"})
    daemons.append(server)
    rooms, n = ("big1", "big2"), a.replay_messages
    seed(server.db, rooms, n, 60_000)
    resume = {"type": "resume", "rooms": {r: 0 for r in rooms}}
    # First a reader, which gets every message once, in order (and warms the database's
    # page cache, so that `before` is the server's own idle value after a resume).
    r = Ws(server.port, token(99, "reader"))
    r.frame()  # welcome
    r.send(resume)
    want, got, t1 = {room: 1 for room in rooms}, 0, time.time()
    served = True
    while got < 2 * n:
        op, payload = r.frame()
        if op == 8:
            served = False
            break
        msg = json.loads(payload)
        if msg.get("type") == "message":
            if msg["seq"] != want[msg["room"]] or len(msg["body"]) != 60_000:
                served = False
                break
            want[msg["room"]] += 1
            got += 1
    r.close()
    print("  reader: %d of %d messages in order in %.1f s" % (got, 2 * n, time.time() - t1), flush=True)
    time.sleep(max(a.settle, 11))  # past one memory trim of the server (every 10 s)
    before = rss_kib(server.proc.pid)
    conns = []
    for i in range(a.replay_conns):
        w = Ws(server.port, token(100 + i, "idle%d" % i), rcvbuf=4096)
        w.send(resume)
        conns.append(w)  # never read
    peak, t0 = before, time.time()
    while time.time() - t0 < 60:
        peak = max(peak, rss_kib(server.proc.pid))
        if server.metric("chat_disconnections_total", 'reason="slow_consumer"') >= a.replay_conns:
            break
        time.sleep(0.05)
    closed = int(server.metric("chat_disconnections_total", 'reason="slow_consumer"'))
    print("  peak RSS growth %.1f MB, %d of %d closed with 4001 after %.1f s"
          % ((peak - before) / 1024, closed, a.replay_conns, time.time() - t0), flush=True)
    for w in conns:
        w.close()
    time.sleep(30)
    after = rss_kib(server.proc.pid)
    print("  RSS before %.1f MB, 30 s after %.1f MB" % (before / 1024, after / 1024), flush=True)
    growth = (peak - before) / 1024
    back = (after - before) / max(before, 1)
    rows = [
        {"label": "replay attack: peak RSS growth, %d idle resumes of 2 x %d x 60 KB (MB)" % (a.replay_conns, n),
         "value": "%.1f" % growth, "target": "< 64", "pass": growth < 64},
        {"label": "idle resumes closed with 4001", "value": "%d/%d" % (closed, a.replay_conns),
         "target": "all", "pass": closed >= a.replay_conns},
        {"label": "RSS 30 s after they left, vs before (MB)", "value": "%.1f vs %.1f" % (after / 1024, before / 1024),
         "target": "within 20 %", "pass": abs(back) <= 0.2},
        {"label": "reader resuming the same rooms: messages in order", "value": "%d/%d" % (got, 2 * n),
         "target": "all", "pass": served and got == 2 * n},
    ]
    raw = {"rss_before_kib": before, "rss_peak_kib": peak, "rss_after_kib": after, "closed": closed,
           "reader_messages": got}
    return rows, raw


def post_from(source, port, path, body, timeout=30):
    """(status, seconds) of one HTTP POST of `body` (JSON) from the loopback address `source`."""
    status, _, seconds = request(port, "POST", path, json.dumps(body).encode(), source, timeout)
    return status, seconds


def chat_login_flood(a, tmp, daemons):
    import threading
    d = os.path.join(tmp, "chat-login-flood")
    os.makedirs(d)
    server = ChatServer(d, {"REGISTRATION": "open"})
    daemons.append(server)
    status, _ = post_from("127.0.0.2", server.port, "/api/auth/register",
                          {"username": "legit", "password": "legit-password"})
    if status != 201:
        raise RuntimeError("register answered %d" % status)
    time.sleep(a.settle)
    idle = rss_kib(server.proc.pid)
    stop = threading.Event()
    counts = {}

    def flood(i):
        n = 0
        while not stop.is_set():
            try:
                st, _ = post_from("127.0.0.1", server.port, "/api/auth/login",
                                  {"username": "user%d" % (n % 1000), "password": "wrong-password"}, timeout=10)
            except OSError:
                st = -1
            counts[st] = counts.get(st, 0) + 1
            n += 1
    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(a.login_conns)]
    for t in threads:
        t.start()
    legit, peak, t0 = [], idle, time.time()
    k = 0
    while time.time() - t0 < a.login_flood:
        # A login a second from one of 20 other addresses (each within its own 30 a minute).
        st, dt = post_from("127.0.0.%d" % (10 + k % 20), server.port, "/api/auth/login",
                           {"username": "legit", "password": "legit-password"})
        legit.append((st, dt))
        k += 1
        peak = max(peak, rss_kib(server.proc.pid))
        time.sleep(max(0.0, 1.0 - dt))
    stop.set()
    for t in threads:
        t.join(15)
    time.sleep(30)
    after = rss_kib(server.proc.pid)
    times = sorted(dt for _, dt in legit)
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    ok = sum(1 for st, _ in legit if st == 200)
    flood_total = sum(counts.values())
    print("  flood: %d requests from %d connections in %.0f s: %s" % (flood_total, a.login_conns, a.login_flood,
                                                                     dict(sorted(counts.items()))), flush=True)
    print("  legit: %d/%d answered 200, p99 %.0f ms, max %.0f ms; RSS idle %.1f, peak %.1f, 30 s after %.1f MB"
          % (ok, len(legit), p99 * 1000, times[-1] * 1000, idle / 1024, peak / 1024, after / 1024), flush=True)
    rows = [
        {"label": "login flood (%d connections, one address): legitimate login p99 (ms)" % a.login_conns,
         "value": "%.0f" % (p99 * 1000), "target": "< 1000", "pass": p99 < 1.0 and ok == len(legit)},
        {"label": "login flood: RSS peak above idle (MB)", "value": "%.1f" % ((peak - idle) / 1024),
         "target": "< 50", "pass": (peak - idle) / 1024 < 50},
        {"label": "login flood: RSS 30 s after, above idle (MB)", "value": "%.1f" % ((after - idle) / 1024),
         "target": "< 50", "pass": (after - idle) / 1024 < 50},
    ]
    return rows, {"flood": counts, "legit": legit, "rss_idle_kib": idle, "rss_peak_kib": peak, "rss_after_kib": after}


def chat_room_flood(a, tmp, daemons):
    d = os.path.join(tmp, "chat-room-flood")
    os.makedirs(d)
    server = ChatServer(d, {})
    daemons.append(server)
    time.sleep(a.settle)
    idle = rss_kib(server.proc.pid)
    tok = token(7, "roomer")
    conns = [Ws(server.port, tok) for _ in range(4)]
    for w in conns:
        w.frame()  # welcome
    peak, t0, sent, joined, limited = idle, time.time(), 0, 0, 0
    k = 0
    while time.time() - t0 < a.room_flood:
        round_started = time.time()
        for w in conns:
            room = "r%d" % k
            k += 1
            w.send({"type": "join", "room": room})
            w.send({"type": "leave", "room": room})
            sent += 1
        for w in conns:  # each join is answered (joined or an error), then the leave
            for _ in range(2):
                op, payload = w.frame()
                msg = json.loads(payload) if op in (1, 2) else {}
                joined += msg.get("type") == "joined"
                limited += msg.get("code") == "rate_limited"
        if k % 200 == 0:
            peak = max(peak, rss_kib(server.proc.pid))
        # 200 rounds a second at most: 400 frames a connection, under MAX_REQUESTS_PER_SECOND.
        time.sleep(max(0.0, 0.005 - (time.time() - round_started)))
    peak = max(peak, rss_kib(server.proc.pid))
    rooms_peak = server.metric("chat_rooms")
    for w in conns:
        w.close()
    time.sleep(a.room_after)
    after = rss_kib(server.proc.pid)
    rooms_after = server.metric("chat_rooms")
    print("  %d joins of new rooms in %.0f s: %d joined, %d rate_limited; rooms %d at the end, %d after %d s"
          % (sent, a.room_flood, joined, limited, rooms_peak, rooms_after, a.room_after), flush=True)
    print("  RSS idle %.1f, peak %.1f, after %.1f MB" % (idle / 1024, peak / 1024, after / 1024), flush=True)
    rows = [
        {"label": "room flood (1 user, 4 connections, %d s): RSS peak above idle (MB)" % a.room_flood,
         "value": "%.1f" % ((peak - idle) / 1024), "target": "< 64", "pass": (peak - idle) / 1024 < 64},
        {"label": "room flood: rooms in memory %d s after they left" % a.room_after,
         "value": "%d (of %d)" % (rooms_after, rooms_peak), "target": "0", "pass": rooms_after == 0},
        {"label": "room flood: RSS %d s after, vs idle (MB)" % a.room_after,
         "value": "%.1f vs %.1f" % (after / 1024, idle / 1024), "target": "within 20 %",
         "pass": abs(after - idle) / max(idle, 1) <= 0.2},
    ]
    return rows, {"joins": sent, "joined": joined, "rate_limited": limited, "rooms_peak": rooms_peak,
                  "rooms_after": rooms_after, "rss_idle_kib": idle, "rss_peak_kib": peak, "rss_after_kib": after}
