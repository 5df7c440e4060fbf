"""The worker of the update row (bench/update_inplace.py): answers every connection with its
pid, on the socket passed as fd 3 (LISTEN_FDS, as l4ctl passes it) or else on 127.0.0.1:$PORT
(PM2), and writes numbered lines to stdout (`<pid> line <n>`, flushed each, ~2,000 a second).
On SIGINT or SIGTERM it writes how many lines it wrote to $UPDATE_BENCH_DIR/<pid>.count, so
the bench can tell the lines the log files lost."""
import os, signal, socket, sys, threading, time

pid = os.getpid()
if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(pid):
    sock = socket.socket(fileno=3)
else:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ["PORT"])))
    sock.listen(1024)
answer = b"%d\n" % pid
written, stopping = 0, False


def serve():
    while True:
        c, _ = sock.accept()
        try:
            c.sendall(answer)
        finally:
            c.close()


def end(*_):  # runs in the main thread between two lines; the loop ends after the next one
    global stopping
    stopping = True


signal.signal(signal.SIGINT, end)
signal.signal(signal.SIGTERM, end)
threading.Thread(target=serve, daemon=True).start()
out = sys.stdout.buffer
while not stopping:
    out.write(b"%d line %d\n" % (pid, written))
    out.flush()
    written += 1
    if written % 4 == 0:
        time.sleep(0.002)
with open(os.path.join(os.environ["UPDATE_BENCH_DIR"], "%d.count" % pid), "w") as f:
    f.write("%d\n" % written)
os._exit(0)
