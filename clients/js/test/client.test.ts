// The client's state machine against a fake socket and mocked time: the heartbeat and
// backoff decide when it reconnects, a reconnect resumes every room and resends every
// unacked send with its id, the application sees each message once and in order, gaps
// are reported, the probe tells a bad token from a full server, and the network's
// offline/online events stop and restart it at once.

import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { ChatClient, type ClientOptions, type ConnectionState } from "../src/client.js";
import { RefusedError } from "../src/errors.js";
import type { ChatMessage } from "../src/protocol.js";
import { advance, FakeNetwork, FakeSocket, probeAnswer, settle, useFakeTime } from "./fake.js";

beforeEach(() => useFakeTime());
afterEach(() => mock.timers.reset());

function client(extra: Partial<ClientOptions> = {}) {
  const states: ConnectionState[] = [];
  const messages: ChatMessage[] = [];
  const gaps: { room: string; from: number; to: number }[] = [];
  const c = new ChatClient({
    url: "ws://chat.test/ws",
    token: "t0",
    WebSocket: FakeSocket,
    fetch: probeAnswer(204),
    network: null,
    random: () => 0.5,
    now: () => Date.now(),
    ...extra,
  });
  c.on("state", (s) => states.push(s));
  c.on("message", (m) => messages.push(m));
  c.on("gap", (g) => gaps.push(g));
  return { c, states, messages, gaps };
}

const msg = (seq: number, id = `m${seq}`, room = "lobby"): ChatMessage => ({ room, seq, id, user: "bob", body: `b${seq}`, ts: seq });

/** Connects and answers welcome; returns the open socket. */
async function opened(c: ChatClient): Promise<FakeSocket> {
  if (c.state.status === "idle") c.connect();
  await settle();
  const ws = FakeSocket.last();
  ws.open();
  ws.welcome();
  await settle();
  assert.equal(c.state.status, "open");
  return ws;
}

test("the token goes in the query, the subprotocol is l4.json, and nothing is sent before welcome", async () => {
  const { c } = client();
  const joined = c.join("lobby");
  c.connect();
  await settle();
  const ws = FakeSocket.last();
  assert.equal(new URL(ws.url).searchParams.get("token"), "t0");
  assert.equal(ws.protocols, "l4.json");
  ws.open();
  await settle();
  assert.equal(ws.sent.length, 0);
  ws.welcome();
  assert.deepEqual(ws.sent, [{ type: "join", room: "lobby" }]);
  ws.push({ type: "joined", room: "lobby", seq: 4 });
  assert.equal(await joined, 4);
  c.close();
});

test("each message reaches the application once and in order; a jump is a gap event", async () => {
  const { c, messages, gaps } = client();
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  for (const seq of [1, 2, 2, 1, 3, 6]) ws.push({ type: "message", ...msg(seq) });
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3, 6]);
  assert.deepEqual(gaps, [{ room: "lobby", from: 4, to: 5 }]);
  c.close();
});

test("the heartbeat pings after 45 s of not sending and reconnects 15 s later without an answer", async () => {
  const { c, states } = client();
  const ws = await opened(c);
  await advance(44_900);
  assert.equal(ws.sentOf("ping").length, 0);
  await advance(200);
  assert.equal(ws.sentOf("ping").length, 1, "a ping at 45 s");
  await advance(14_700);
  assert.equal(FakeSocket.all.length, 1, "still waiting for an answer");
  await advance(400);
  assert.ok(ws.closedWith, "the silent socket is dropped");
  const reconnecting = states.find((s) => s.status === "reconnecting");
  assert.ok(reconnecting && reconnecting.status === "reconnecting" && reconnecting.delayMs <= 250, JSON.stringify(states));
  await advance(300);
  assert.equal(FakeSocket.all.length, 2, "and connects again");
  c.close();
});

test("any frame from the server counts as life", async () => {
  const { c } = client({ pingAfterMs: 1_000, pongTimeoutMs: 500 });
  const ws = await opened(c);
  for (let i = 0; i < 20; i++) {
    await advance(400);
    ws.push({ type: "pong" });
  }
  assert.equal(ws.closedWith, undefined);
  assert.equal(FakeSocket.all.length, 1);
  c.close();
});

test("a reconnect resumes each room from its last seq and resends unacked sends with their ids", async () => {
  const { c, messages } = client();
  const ws = await opened(c);
  void c.join("lobby");
  c.join("dev").catch(() => {});
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  ws.push({ type: "message", ...msg(1) });
  ws.push({ type: "message", ...msg(2) });
  const sent = c.send("lobby", "still there?");
  await settle();
  const [send] = ws.sentOf("send");
  assert.ok(send);
  ws.end(1006);
  await advance(300);
  const again = FakeSocket.last();
  assert.notEqual(again, ws);
  again.open();
  again.welcome();
  assert.deepEqual(again.sent.slice(0, 3), [
    { type: "resume", rooms: { lobby: 2 } },
    { type: "join", room: "dev" },
    { type: "send", room: "lobby", id: send.id, body: "still there?" },
  ]);
  // The replay repeats 2, brings the resent message as 3, then the ack.
  again.push({ type: "joined", room: "lobby", seq: 3 });
  again.push({ type: "message", ...msg(2) });
  again.push({ type: "message", ...msg(3, send.id) });
  again.push({ type: "ack", room: "lobby", id: send.id, seq: 3 });
  assert.equal(await sent, 3);
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3]);
  c.close();
});

test("resume_too_far turns the skipped messages into a gap", async () => {
  const { c, gaps } = client();
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  ws.push({ type: "message", ...msg(1) });
  ws.end(1012);
  await advance(300);
  const again = FakeSocket.last();
  again.open();
  again.welcome();
  again.push({ type: "joined", room: "lobby", seq: 5000 });
  again.push({ type: "error", code: "resume_too_far", text: "too far", room: "lobby" });
  assert.deepEqual(gaps, [{ room: "lobby", from: 2, to: 5000 }]);
  c.close();
});

test("failed connects back off with full jitter, capped, and a 503's Retry-After is the floor", async () => {
  const fetch = probeAnswer(503, "full", 5);
  const { c, states } = client({ fetch, random: () => 0.999 });
  c.connect();
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    await settle();
    FakeSocket.last().end(1006);
    await settle();
    const s = c.state;
    assert.equal(s.status, "reconnecting", JSON.stringify(states));
    if (s.status === "reconnecting") delays.push(s.delayMs);
    await advance(s.status === "reconnecting" ? s.delayMs + 50 : 0);
  }
  assert.deepEqual(delays, [5000, 5000, 5000], "Retry-After: 5 beats 249, 499, 999");
  assert.equal(fetch.calls.length, 3);
  assert.match(fetch.calls[0] ?? "", /^http:\/\/chat\.test\/ws\/probe\?token=t0$/);
  c.close();
});

test("without Retry-After the delays grow to the cap and a healthy connection resets them", async () => {
  const { c } = client({ random: () => 0.9999999 });
  c.connect();
  const delays: number[] = [];
  for (let i = 0; i < 7; i++) {
    await settle();
    FakeSocket.last().end(1006);
    await settle();
    const s = c.state;
    if (s.status === "reconnecting") delays.push(s.delayMs);
    await advance(s.status === "reconnecting" ? s.delayMs + 50 : 0, 200);
  }
  assert.deepEqual(delays, [249, 499, 999, 1999, 3999, 7999, 9999]);
  await settle();
  const ws = FakeSocket.last();
  ws.open();
  ws.welcome();
  ws.end(1012);
  await settle();
  assert.equal(c.state.status === "reconnecting" && c.state.delayMs, 9999, "a welcome alone proves nothing");
  await advance(10_050, 200);
  const healthy = FakeSocket.last();
  healthy.open();
  healthy.welcome();
  await advance(10_050, 500);
  healthy.end(1012);
  await settle();
  assert.equal(c.state.status === "reconnecting" && c.state.delayMs, 249, "10 s up: the backoff starts over");
  c.close();
});

test("a server that welcomes and refuses every send is not reconnected to every 250 ms", async () => {
  const { c } = client({ random: () => 0.9999999 });
  let ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  c.send("lobby", "stuck").catch(() => {});
  const delays: number[] = [];
  for (let i = 0; i < 4; i++) {
    await settle();
    const send = ws.sentOf("send")[0];
    assert.ok(send);
    ws.push({ type: "joined", room: "lobby", seq: 0 });
    ws.push({ type: "error", code: "unavailable", text: "storage", id: send.id, room: "lobby" });
    await settle();
    const s = c.state;
    if (s.status === "reconnecting") delays.push(s.delayMs);
    await advance(s.status === "reconnecting" ? s.delayMs + 50 : 0, 200);
    ws = FakeSocket.last();
    ws.open();
    ws.welcome();
  }
  assert.deepEqual(delays, [249, 499, 999, 1999]);
  c.close();
});

test("a slow token and an offline/online flap meanwhile open one socket, not two", async () => {
  const network = new FakeNetwork();
  let release: (t: string) => void = () => {};
  const { c } = client({ network, token: () => new Promise<string>((r) => (release = r)) });
  c.connect();
  await settle();
  const first = release;
  network.set(false);
  network.set(true);
  await settle();
  release("t2");
  first("t1");
  await settle();
  assert.equal(FakeSocket.all.length, 1, "the stale open() made no socket");
  assert.equal(new URL(FakeSocket.last().url).searchParams.get("token"), "t2");
  c.close();
});

test("a followed room refused on resume is dropped and its sends rejected, not left hanging", async () => {
  const { c } = client();
  const errors: string[] = [];
  c.on("error", (e) => errors.push(e.code));
  const ws = await opened(c);
  void c.join("busy");
  ws.push({ type: "joined", room: "busy", seq: 3 });
  ws.end(1006);
  const pending = c.send("busy", "hello");
  await advance(300);
  const again = FakeSocket.last();
  again.open();
  again.welcome();
  again.push({ type: "error", code: "too_many_rooms", text: "full", room: "busy" });
  await assert.rejects(pending, { code: "too_many_rooms" });
  assert.deepEqual(errors, ["too_many_rooms"]);
  await assert.rejects(c.send("busy", "again"), { code: "not_joined" });
  c.close();
});

test("a leave's not_joined is not taken for a history request's answer", async () => {
  const { c } = client();
  const ws = await opened(c);
  void c.join("a");
  ws.push({ type: "joined", room: "a", seq: 5 });
  const page = c.history("a", { limit: 1 });
  c.leave("a");
  c.join("a").catch(() => {});
  await settle();
  ws.push({ type: "error", code: "not_joined", text: "not in a", room: "a" });
  ws.push({ type: "history", room: "a", messages: [msg(5, "m5", "a")], more: true });
  assert.deepEqual((await page).messages.map((m) => m.seq), [5]);
  c.close();
});

test("a URL the client cannot open closes it with the reason instead of hanging", async () => {
  const { c } = client({ url: "not a url" });
  const joined = assert.rejects(c.join("lobby"), /cannot open not a url|Invalid URL/);
  c.connect();
  await settle();
  assert.equal(c.state.status, "closed");
  await joined;
});

test("a refused token stops the client with the probe's code, and tries no more", async () => {
  const { c } = client({ fetch: probeAnswer(401, "invalid_token") });
  c.connect();
  await settle();
  FakeSocket.last().end(1006);
  await settle();
  const s = c.state;
  assert.equal(s.status, "closed");
  assert.ok(s.status === "closed" && s.error instanceof RefusedError && s.error.code === "invalid_token");
  await advance(30_000, 1_000);
  assert.equal(FakeSocket.all.length, 1);
});

test("close codes: a policy close stops, a restart reconnects, an expired token gets a new one", async () => {
  const stopped = client();
  (await opened(stopped.c)).end(1008, "too many requests");
  await settle();
  assert.equal(stopped.c.state.status, "closed");

  let n = 0;
  const renewing = client({ token: () => `t${++n}` });
  const ws = await opened(renewing.c);
  ws.end(4002);
  await advance(300);
  assert.equal(new URL(FakeSocket.last().url).searchParams.get("token"), "t2");
  renewing.c.close();

  const fixed = client();
  (await opened(fixed.c)).end(4002);
  await settle();
  assert.equal(fixed.c.state.status, "closed");
});

test("offline stops trying at once and online connects at once, then catches up", async () => {
  const network = new FakeNetwork();
  const { c, states, messages } = client({ network });
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  ws.push({ type: "message", ...msg(1) });
  network.set(false);
  assert.equal(c.state.status, "offline");
  assert.ok(ws.closedWith);
  await advance(120_000, 1_000);
  assert.equal(FakeSocket.all.length, 1, "no attempt while offline");
  network.set(true);
  await settle();
  assert.equal(FakeSocket.all.length, 2, "online: at once, no backoff");
  const again = FakeSocket.last();
  again.open();
  again.welcome();
  assert.deepEqual(again.sent[0], { type: "resume", rooms: { lobby: 1 } });
  again.push({ type: "joined", room: "lobby", seq: 3 });
  again.push({ type: "message", ...msg(2) });
  again.push({ type: "message", ...msg(3) });
  assert.deepEqual(messages.map((m) => m.seq), [1, 2, 3]);
  assert.deepEqual(
    states.map((s) => s.status),
    ["connecting", "open", "offline", "connecting", "open"],
  );
  c.close();
});

test("sends: refused locally when too big or empty, rejected on bad_body, resent after unavailable", async () => {
  const { c } = client();
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  await assert.rejects(c.send("lobby", ""), { code: "bad_body" });
  await assert.rejects(c.send("lobby", "x".repeat(70_000)), { code: "too_big" });
  await assert.rejects(c.send("elsewhere", "hi"), { code: "not_joined" });
  const refused = c.send("lobby", "a");
  await settle();
  const first = ws.sentOf("send")[0];
  assert.ok(first);
  ws.push({ type: "error", code: "bad_body", text: "no", id: first.id });
  await assert.rejects(refused, { name: "ChatError", code: "bad_body" });
  const retried = c.send("lobby", "b");
  await settle();
  const second = ws.sentOf("send")[1];
  assert.ok(second);
  ws.push({ type: "error", code: "unavailable", text: "storage", id: second.id, room: "lobby" });
  await settle();
  assert.equal(c.state.status, "reconnecting");
  await advance(300);
  const again = FakeSocket.last();
  again.open();
  again.welcome();
  assert.deepEqual(again.sentOf("send"), [{ type: "send", room: "lobby", id: second.id, body: "b" }]);
  again.push({ type: "ack", room: "lobby", id: second.id, seq: 1 });
  assert.equal(await retried, 1);
  c.close();
});

test("frames are paced under the server's rate: a backlog leaves at half of it", async () => {
  const { c } = client();
  c.connect();
  await settle();
  const ws = FakeSocket.last();
  ws.open();
  ws.welcome({ max_requests_per_second: 8 });
  for (let i = 0; i < 6; i++) c.join(`r${i}`).catch(() => {});
  assert.equal(ws.sent.length, 2, "a burst of a quarter");
  await advance(1_000, 10);
  assert.equal(ws.sent.length, 6, "then 4 a second");
  c.close();
});

test("history resolves in order per room and is asked again after a reconnect", async () => {
  const { c } = client();
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 9 });
  const page = c.history("lobby", { before: 9, limit: 2 });
  await settle();
  assert.deepEqual(ws.sentOf("history"), [{ type: "history", room: "lobby", before: 9, limit: 2 }]);
  ws.end(1006);
  await advance(300);
  const again = FakeSocket.last();
  again.open();
  again.welcome();
  assert.deepEqual(again.sentOf("history"), [{ type: "history", room: "lobby", before: 9, limit: 2 }]);
  again.push({ type: "history", room: "lobby", messages: [msg(7), msg(8)], more: true });
  assert.deepEqual((await page).messages.map((m) => m.seq), [7, 8]);
  c.close();
});

test("close() rejects what waits and stops for good", async () => {
  const { c } = client();
  const ws = await opened(c);
  void c.join("lobby");
  ws.push({ type: "joined", room: "lobby", seq: 0 });
  const pending = c.send("lobby", "never acked");
  c.close();
  await assert.rejects(pending, { name: "StoppedError" });
  assert.equal(c.state.status, "closed");
  await advance(20_000, 1_000);
  assert.equal(FakeSocket.all.length, 1);
});
