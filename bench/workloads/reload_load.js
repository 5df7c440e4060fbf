// Load during a reload, for bench/reload.py: N WebSocket clients through nginx
// that reconnect whenever they are closed, and H loops of health requests (a new
// connection each). Runs for --seconds, then prints one JSON object: every
// dropped WebSocket connection, every failed connection attempt (refused, or a
// handshake answered with an HTTP error) and every failed health request, each
// with its time (ms since the epoch).
//
//   node reload_load.js --ws URL --health URL --clients N --loops H --seconds S [--jwt-secret S]
//
// With --jwt-secret the clients authenticate as chat-server expects (HS256 JWT,
// subprotocol l4.json); without, they connect plainly (the Node ws peer).
'use strict';
const crypto = require('crypto');
const http = require('http');
const WebSocket = require(require.resolve('ws', { paths: [process.env.PEERS || process.cwd()] }));

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const clients = Number(args.clients || 100), loops = Number(args.loops || 2), seconds = Number(args.seconds || 10);

function jwt(secret, id) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub: String(id), name: 'load' + id, iat: now, exp: now + 3600 });
  return body + '.' + crypto.createHmac('sha256', secret).update(body).digest('base64url');
}

const out = { dropped: [], failed_attempts: [], health_failed: [], health_total: 0, opened: 0 };
let stopping = false;
const sockets = new Set();

function connect(id) {
  if (stopping) return;
  const options = { perMessageDeflate: false };
  let protocols;
  if (args['jwt-secret']) {
    options.headers = { authorization: 'Bearer ' + jwt(args['jwt-secret'], id) };
    protocols = ['l4.json'];
  }
  const ws = new WebSocket(args.ws, protocols, options);
  let open = false;
  ws.on('open', () => { open = true; out.opened++; sockets.add(ws); });
  ws.on('unexpected-response', (req, res) => {
    out.failed_attempts.push({ at: Date.now(), why: 'HTTP ' + res.statusCode });
    res.resume();
    ws.terminate();
  });
  ws.on('error', (e) => { if (!open) out.failed_attempts.push({ at: Date.now(), why: String(e.code || e.message) }); });
  ws.on('close', (code) => {
    sockets.delete(ws);
    if (open && !stopping) out.dropped.push({ at: Date.now(), code });
    if (!stopping) setTimeout(() => connect(id), 50 + Math.random() * 200);
  });
  ws.on('message', () => {});
}

function health() {
  if (stopping) return;
  const started = Date.now();
  const req = http.get(args.health, { agent: false }, (res) => {
    res.resume();
    out.health_total++;
    if (res.statusCode !== 200) out.health_failed.push({ at: started, why: 'HTTP ' + res.statusCode });
    res.on('end', () => setTimeout(health, 5));
  });
  req.on('error', (e) => {
    out.health_total++;
    out.health_failed.push({ at: started, why: String(e.code || e.message) });
    setTimeout(health, 5);
  });
  req.setTimeout(5000, () => req.destroy(new Error('timeout')));
}

for (let i = 0; i < clients; i++) setTimeout(() => connect(i + 1), i * 5);
for (let i = 0; i < loops; i++) health();
setTimeout(() => {
  stopping = true;
  out.open_at_end = sockets.size;
  for (const ws of sockets) ws.terminate();
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}, seconds * 1000);
