"""A private nginx in front of one WebSocket server for bench/ws.py's "through nginx" phase:
one worker process, plain HTTP and TLS on 127.0.0.1 (a fresh self-signed certificate for
localhost, made with the openssl command), the TLS settings of templates/nginx/layer4.conf.j2
and the same proxy headers, so the chat-server and Node pay for the same proxy and cipher."""
import os, signal, subprocess, tempfile

from common import free_port, ticks, wait_for

TLS_SETTINGS = """
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:bench_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;
"""


class Nginx:
    def __init__(self, tmp, upstream_port):
        self.dir = tempfile.mkdtemp(dir=tmp, prefix="nginx-")
        self.upstream = upstream_port
        self.http, self.https = free_port(), free_port()
        self.cert, self.key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")

    def start(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        d = self.dir
        conf = """
worker_processes 1;
worker_rlimit_nofile 65536;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path %(d)s/body; proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/f; uwsgi_temp_path %(d)s/u; scgi_temp_path %(d)s/s;
  map $http_upgrade $bench_connection { default upgrade; '' close; }
  upstream bench { server 127.0.0.1:%(up)d; }
  server {
    listen 127.0.0.1:%(http)d;
    listen 127.0.0.1:%(https)d ssl;
    server_name localhost;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
%(tls)s
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
}
""" % {"d": d, "up": self.upstream, "http": self.http, "https": self.https, "cert": self.cert, "key": self.key,
       "tls": TLS_SETTINGS}
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.args = ["nginx", "-p", d + "/", "-e", os.path.join(d, "error.log"), "-c", os.path.join(d, "nginx.conf")]
        subprocess.run(self.args, check=True, capture_output=True)
        wait_for(lambda: os.path.exists(os.path.join(d, "nginx.pid")), 10, what="nginx")
        return self

    def worker(self):
        """The one worker's pid (the master's child)."""
        with open(os.path.join(self.dir, "nginx.pid")) as f:
            master = int(f.read())
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        return int(children[0])

    def cpu_s(self):
        """The worker's CPU seconds so far (utime + stime)."""
        return ticks(self.worker()) / os.sysconf("SC_CLK_TCK")

    def url(self, scheme, path):
        return "%s://localhost:%d%s" % (scheme, self.https if scheme == "wss" else self.http, path)

    def stop(self):
        if getattr(self, "args", None):
            subprocess.run(self.args + ["-s", "stop"], capture_output=True)
