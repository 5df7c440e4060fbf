// The Socket.IO peer of bench/cluster.sh: one of three processes behind nginx, sharing
// rooms through Redis with @socket.io/redis-adapter (the plan's fallback, its own
// recipe). WebSocket transport only, so nginx needs no sticky sessions. A client
// emits `join` (room, ack) and `send` (room, payload); every member of the room,
// on any process, gets `message` (payload). Nothing is stored.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

async function main() {
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    if (req.url === '/api/health/websocket') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'healthy', pid: process.pid }));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false, adapter: createAdapter(pub, sub) });
  io.on('connection', (socket) => {
    socket.on('join', (room, ack) => {
      socket.join(room);
      if (typeof ack === 'function') ack();
    });
    socket.on('send', (room, payload) => io.to(room).emit('message', payload));
  });
  server.listen(Number(process.env.PORT), '127.0.0.1');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
