// The Socket.IO side's load generator for bench/cluster.sh: what `l4load fanout --rooms`
// does for chat-server, measured the same way, with socket.io-client (Socket.IO has its
// own framing). `--procs` processes share the connections (one Node process would be
// the bottleneck first); reader `i` and writer `p` are in room `i % rooms` and
// `p % rooms`; an open-loop schedule of `--rate` messages/s (all rooms together) for
// `--secs`, each payload carrying its scheduled time, then `--drain` seconds. Latency
// is from the scheduled time to the reader's receipt (one clock: epoch ms with
// sub-millisecond precision). Prints one JSON object with l4load's keys.
'use strict';
const { fork } = require('child_process');
const { performance } = require('perf_hooks');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const opt = {
  url: args.url || 'http://127.0.0.1:3000',
  subscribers: Number(args.subscribers || 2000),
  publishers: Number(args.publishers || 10),
  rooms: Number(args.rooms || 10),
  rate: Number(args.rate || 100),
  secs: Number(args.secs || 10),
  drain: Number(args.drain || 3),
  size: Number(args.size || 100),
  procs: Number(args.procs || 2),
  connectRate: Number(args['connect-rate'] || 1000),
  settle: Number(args.settle || 1),
  // Server pids whose CPU (utime+stime, from /proc) over the window is reported, as
  // l4load's --watch-pid/--also-watch do.
  watch: (args['watch-pids'] || '').split(',').filter(Boolean).map(Number),
};
const fs = require('fs');
const ticks = 100; // CLK_TCK on Linux
const cpuOf = (pids) => {
  let user = 0;
  let total = 0;
  for (const pid of pids) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    user += Number(f[11]) / ticks;
    total += (Number(f[11]) + Number(f[12])) / ticks;
  }
  return { user, total };
};
let cpu0 = null;
let window0 = 0;
const now = () => performance.timeOrigin + performance.now(); // epoch ms
const BUCKET_US = 100; // latency histogram resolution
const BUCKETS = 200000; // up to 20 s

if (process.env.SIO_CHILD === undefined) {
  parent();
} else {
  child(Number(process.env.SIO_CHILD));
}

function parent() {
  const children = [];
  let ready = 0;
  const results = [];
  for (let c = 0; c < opt.procs; c++) {
    const ch = fork(__filename, process.argv.slice(2), { env: { ...process.env, SIO_CHILD: String(c) } });
    ch.on('message', (m) => {
      if (m.ready && ++ready === opt.procs) {
        const t0 = now() + opt.settle * 1000;
        children.forEach((x) => x.send({ t0 }));
        setTimeout(() => {
          cpu0 = cpuOf(opt.watch);
          window0 = now();
        }, Math.max(0, t0 - now()));
      } else if (m.result) {
        results.push(m.result);
        if (results.length === opt.procs) report(results);
      }
    });
    children.push(ch);
  }
}

function report(results) {
  const cpu1 = cpuOf(opt.watch);
  const windowS = (now() - window0) / 1000;
  const sum = (f) => results.reduce((a, r) => a + f(r), 0);
  const sentTo = new Array(opt.rooms).fill(0);
  const members = new Array(opt.rooms).fill(0);
  const hist = new Uint32Array(BUCKETS);
  const lags = [];
  for (const r of results) {
    r.sentTo.forEach((v, i) => (sentTo[i] += v));
    r.members.forEach((v, i) => (members[i] += v));
    r.hist.forEach(([b, n]) => (hist[b] += n));
    lags.push(...r.lags);
  }
  const expected = sentTo.reduce((a, s, i) => a + s * members[i], 0);
  const received = sum((r) => r.received);
  const quantile = (q) => {
    const total = hist.reduce((a, n) => a + n, 0);
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += hist[b];
      if (seen >= q * total && total > 0) return ((b + 1) * BUCKET_US) / 1000;
    }
    return 0;
  };
  lags.sort((a, b) => a - b);
  const lagP99 = lags.length ? lags[Math.min(lags.length - 1, Math.floor(0.99 * lags.length))] : 0;
  const sent = sentTo.reduce((a, s) => a + s, 0);
  const target = Math.round(opt.rate * opt.secs);
  const loss = expected ? (100 * Math.max(0, expected - received)) / expected : 0;
  const rateKept = sent === target && lagP99 <= 20 && sum((r) => r.sendFailures) === 0;
  const p99 = quantile(0.99);
  console.log(
    JSON.stringify({
      mode: 'fanout',
      protocol: 'socket.io',
      subscribers: opt.subscribers,
      publishers: opt.publishers,
      rooms: opt.rooms,
      rate: opt.rate,
      size: opt.size,
      secs: opt.secs,
      connect_failures: sum((r) => r.connectFailures),
      sent,
      target,
      lag_p99_ms: lagP99,
      expected,
      received,
      deliveries_per_s: received / opt.secs,
      loss_percent: loss,
      latency_ms: { p50: quantile(0.5), p90: quantile(0.9), p99, max: quantile(1) },
      server_cpu_s: cpu1.total - cpu0.total,
      server_user_s: cpu1.user - cpu0.user,
      server_us_per_delivery: received ? ((cpu1.total - cpu0.total) * 1e6) / received : null,
      server_user_us_per_delivery: received ? ((cpu1.user - cpu0.user) * 1e6) / received : null,
      window_s: windowS,
      rate_kept: rateKept,
      clean: rateKept && loss === 0 && p99 < 50,
    }),
  );
  process.exit(0);
}

function child(c) {
  const { io } = require('socket.io-client');
  const readers = [];
  const writers = [];
  for (let i = c; i < opt.subscribers; i += opt.procs) readers.push(i);
  for (let p = c; p < opt.publishers; p += opt.procs) writers.push(p);
  const members = new Array(opt.rooms).fill(0);
  const sentTo = new Array(opt.rooms).fill(0);
  const hist = new Uint32Array(BUCKETS);
  const lags = [];
  let received = 0;
  let connectFailures = 0;
  let sendFailures = 0;
  const pad = (ts) => {
    const head = `t=${ts} `;
    return head + 'x'.repeat(Math.max(0, opt.size - 30 - head.length));
  };
  const open = (room) =>
    new Promise((resolve) => {
      const socket = io(opt.url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20000 });
      socket.on('connect', () => socket.emit('join', room, () => resolve(socket)));
      socket.on('connect_error', () => {
        connectFailures++;
        resolve(null);
      });
    });
  const sockets = [];
  let t0 = null;
  (async () => {
    const all = readers.map((i) => ['r', i]).concat(writers.map((p) => ['w', p]));
    const gap = (1000 * opt.procs) / opt.connectRate;
    for (const [kind, k] of all) {
      const room = `bench-${k % opt.rooms}`;
      const socket = await open(room);
      if (socket && kind === 'r') {
        members[k % opt.rooms]++;
        socket.on('message', (payload) => {
          received++;
          const ts = Number(payload.slice(2, payload.indexOf(' ')));
          const us = Math.max(0, (now() - t0 - ts / 1e6) * 1000);
          hist[Math.min(BUCKETS - 1, Math.floor(us / BUCKET_US))]++;
        });
      }
      sockets.push([kind, k, socket]);
      await new Promise((r) => setTimeout(r, gap));
    }
    process.send({ ready: true });
  })();
  process.on('message', (m) => {
    if (m.t0 === undefined) return;
    t0 = m.t0;
    const total = Math.round(opt.rate * opt.secs);
    for (const [kind, p, socket] of sockets) {
      if (kind !== 'w') continue;
      const room = `bench-${p % opt.rooms}`;
      let j = p;
      const next = () => {
        if (j >= total) return;
        const due = t0 + (j * 1000) / opt.rate;
        setTimeout(() => {
          lags.push(Math.max(0, now() - due));
          const ts = Math.round((due - t0) * 1e6);
          if (socket && socket.connected) {
            socket.emit('send', room, pad(ts));
            sentTo[p % opt.rooms]++;
          } else {
            sendFailures++;
          }
          j += opt.publishers;
          next();
        }, Math.max(0, due - now()));
      };
      next();
    }
    setTimeout(() => {
      const buckets = [];
      hist.forEach((n, b) => n && buckets.push([b, n]));
      process.send({ result: { sentTo, members, received, hist: buckets, lags, connectFailures, sendFailures } });
      sockets.forEach(([, , s]) => s && s.close());
      setTimeout(() => process.exit(0), 100);
    }, t0 + (opt.secs + opt.drain) * 1000 - now());
  });
}
