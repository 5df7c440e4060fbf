// The pure clocks: backoff with full jitter and a Retry-After floor, the plan's
// heartbeat (45 s, then 15 s), and the pacing under the server's request rate.

import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, Heartbeat, Pacer } from "../src/timing.js";

test("backoff is full jitter under min(max, base × 2^n) and never below a Retry-After", () => {
  const top = () => 0.999999;
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, 250, 10_000, top)),
    [249, 499, 999, 1999, 3999, 7999, 9999, 9999],
  );
  assert.equal(backoffDelay(3, 250, 10_000, () => 0), 0, "full jitter reaches 0");
  assert.equal(backoffDelay(0, 250, 10_000, () => 0, 5_000), 5_000, "a 503's Retry-After is the floor");
  assert.equal(backoffDelay(1_000, 250, 10_000, top), 9999, "no overflow for many attempts");
});

test("the heartbeat pings after 45 s without sending and is dead 15 s after it", () => {
  const hb = new Heartbeat({ pingAfterMs: 45_000, pongTimeoutMs: 15_000 }, 0);
  assert.deepEqual(hb.check(44_999), { action: null, next: 45_000 });
  assert.equal(hb.check(45_000).action, "ping");
  hb.pinged(45_000);
  assert.deepEqual(hb.check(59_999), { action: null, next: 60_000 });
  assert.equal(hb.check(60_000).action, "dead");
});

test("any frame counts as life, and a busy sender still pings a silent server and drops it", () => {
  const hb = new Heartbeat({ pingAfterMs: 45_000, pongTimeoutMs: 15_000 }, 0);
  hb.pinged(45_000);
  hb.received(50_000);
  assert.equal(hb.check(60_000).action, null, "an answer came: not dead");
  // Sending every second keeps the send side busy; nothing arriving for 45 s still
  // brings a ping, and nothing after it for 15 s is death.
  const busy = new Heartbeat({ pingAfterMs: 45_000, pongTimeoutMs: 15_000 }, 0);
  for (let t = 1_000; t < 45_000; t += 1_000) {
    busy.sent(t);
    assert.equal(busy.check(t).action, null, `at ${t}`);
  }
  assert.equal(busy.check(45_000).action, "ping");
  busy.pinged(45_000);
  assert.equal(busy.check(59_999).action, null);
  assert.equal(busy.check(60_000).action, "dead");
});

test("a timer that fires late pings first instead of dropping a quiet connection", () => {
  const hb = new Heartbeat({ pingAfterMs: 45_000, pongTimeoutMs: 15_000 }, 0);
  assert.equal(hb.check(300_000).action, "ping", "five minutes late (a hidden tab)");
  hb.pinged(300_000);
  hb.received(300_050);
  assert.equal(hb.check(315_000).action, null);
});

test("the pacer lets a quarter of the server's rate go at once, then half of it a second", () => {
  const p = Pacer.forServer(8, 0); // 4 a second, bursts of 2
  assert.deepEqual([p.take(0), p.take(0)], [0, 0]);
  assert.equal(p.take(0), 250);
  assert.equal(p.take(249), 1);
  assert.equal(p.take(250), 0);
  assert.equal(p.take(100), 250, "a clock that went back refills nothing");
  const unknown = Pacer.forServer(0, 0); // an older server: 1000, so 500 a second
  let sent = 0;
  while (unknown.take(0) === 0) sent++;
  assert.equal(sent, 250);
});
