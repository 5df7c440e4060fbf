// The PM2 cluster-mode peer of bench/reload.sh: one HTTP server with the `ws`
// README's broadcast recipe on it and the plan's health route, on $PORT (PM2's
// cluster mode shares it between the instances). On SIGINT (what PM2 sends on
// reload and stop) it does what PM2's graceful-shutdown docs advise: stop
// listening, tell the WebSocket clients to come back (1012), exit when done.
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const server = http.createServer((req, res) => {
  if (req.url === '/api/health/websocket') {
    const body = JSON.stringify({ status: 'healthy', connections: wss.clients.size, pid: process.pid });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  } else {
    res.writeHead(404);
    res.end();
  }
});
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    });
  });
});
server.listen(Number(process.env.PORT), '127.0.0.1');

process.on('SIGINT', () => {
  server.close(() => process.exit(0));
  wss.clients.forEach((client) => client.close(1012, 'restarting'));
  setTimeout(() => process.exit(0), 1000).unref();
});
