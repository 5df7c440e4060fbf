// The `ws` README's "Server broadcast" recipe, in its "including itself" variant:
// every message is sent to every open client, sender included. 127.0.0.1:$PORT,
// no permessage-deflate, nothing else. The Node peer of bench/ws.sh.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.env.PORT), perMessageDeflate: false });

wss.on('connection', function connection(ws) {
  ws.on('error', console.error);

  ws.on('message', function message(data, isBinary) {
    wss.clients.forEach(function each(client) {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});
