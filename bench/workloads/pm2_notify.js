// PM2's way of telling someone a process died: a bus listener (what pm2-slack and
// similar modules do) that POSTs every `exit` event of an app to a webhook.
// Usage: PM2_HOME=... node pm2_notify.js WEBHOOK_URL   (pm2 from bench/.peers)
const path = require("path");
const http = require("http");
const pm2 = require(path.join(__dirname, "..", ".peers", "node_modules", "pm2"));
const url = new URL(process.argv[2]);

pm2.connect((err) => {
  if (err) { console.error(err); process.exit(1); }
  pm2.launchBus((err, bus) => {
    if (err) { console.error(err); process.exit(1); }
    bus.on("process:event", (packet) => {
      if (packet.event !== "exit") return;
      const body = JSON.stringify({ app: packet.process.name, event: packet.event, at: packet.at,
                                    exit_code: packet.process.exit_code });
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST",
                                 headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } });
      req.on("error", (e) => console.error("webhook:", e.message));
      req.end(body);
    });
    console.log("listening");
  });
});
