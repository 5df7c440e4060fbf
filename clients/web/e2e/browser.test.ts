// The web chat page in headless Chromium, against l4ctl running two chat-server
// workers behind a real nginx: two users chat; an `l4ctl reload` and a `kill -9` of a
// worker while both type lose and repeat nothing and the indicator shows reconnecting
// then online; a 20 s network cut shows offline and then catches up; a connection
// whose server frames are blackholed is noticed by the client heartbeat and replaced.
// A screenshot of each scenario is kept in clients/web/artifacts/.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";

import { ChatClient } from "@layer4/chat-client";
import type { BrowserContext, Page } from "playwright-core";
import WebSocket from "ws";

import { artifacts, Proxy, Stack, waitFor } from "./stack.js";

const stack = new Stack();
let users = 0;

before(async () => {
  await stack.start();
});
after(async () => {
  await stack.stop();
});

interface Shown {
  seq: number;
  user: string;
  body: string;
}

/** A new browser context (its own storage: another user) signed in as a new account. */
async function user(base = stack.url, query = ""): Promise<{ context: BrowserContext; page: Page; name: string }> {
  const browser = stack.browser;
  assert.ok(browser);
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  // The indicator's every state, in order (window.__states).
  await page.addInitScript(() => {
    const w = window as unknown as { __states: string[] };
    w.__states = [];
    document.addEventListener("DOMContentLoaded", () => {
      const status = document.getElementById("status");
      if (!status) return;
      new MutationObserver(() => {
        const state = status.dataset.state ?? "";
        if (w.__states[w.__states.length - 1] !== state) w.__states.push(state);
      }).observe(status, { attributes: true, attributeFilter: ["data-state"] });
    });
  });
  await page.goto(`${base}/${query}`);
  const name = `user${++users}${Date.now() % 1000}`;
  await page.fill("#username", name);
  await page.fill("#password", "password-123");
  await page.click("#register");
  await online(page);
  await page.waitForSelector("#rooms li.active");
  return { context, page, name };
}

async function online(page: Page, ms = 30_000): Promise<void> {
  await page.waitForSelector('[data-testid=status][data-state="open"]', { timeout: ms });
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

async function shown(page: Page): Promise<Shown[]> {
  return page.$$eval("[data-testid=message]", (items) =>
    items.map((li) => ({
      seq: Number((li as HTMLElement).dataset.seq),
      user: li.querySelector(".user")?.textContent ?? "",
      body: li.querySelector(".body")?.textContent ?? "",
    })),
  );
}

async function states(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __states: string[] }).__states);
}

/** Every message once, seqs strictly increasing without holes from the first shown. */
function assertOnceInOrder(list: Shown[], who: string): void {
  for (let i = 1; i < list.length; i++) {
    const [a, b] = [list[i - 1], list[i]];
    assert.ok(a && b && b.seq === a.seq + 1, `${who}: seq ${a?.seq} then ${b?.seq}`);
  }
  const bodies = list.map((m) => m.body);
  assert.equal(new Set(bodies).size, bodies.length, `${who}: a message shown twice`);
}

/** Waits until `page` shows every body of `expected`, then checks once-in-order. */
async function showsAll(page: Page, expected: string[], who: string, ms = 60_000): Promise<Shown[]> {
  const list = await waitFor(ms, `${who} to show ${expected.length} messages`, async () => {
    const now = await shown(page);
    const bodies = new Set(now.map((m) => m.body));
    return expected.every((b) => bodies.has(b)) ? now : undefined;
  });
  assertOnceInOrder(list, who);
  return list;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${artifacts}/${name}.png` });
}

test("two users chat in one room and each sees the other's messages in order", async () => {
  const a = await user();
  const b = await user();
  const sent: string[] = [];
  for (let i = 0; i < 5; i++) {
    for (const [who, page] of [[a.name, a.page], [b.name, b.page]] as const) {
      const text = `${who} says ${i}`;
      sent.push(text);
      await say(page, text);
    }
  }
  const seenByA = await showsAll(a.page, sent, "a");
  const seenByB = await showsAll(b.page, sent, "b");
  assert.deepEqual(seenByA.slice(-10), seenByB.slice(-10), "both show the same order");
  const mine = seenByA.filter((m) => m.body.startsWith(b.name));
  assert.ok(mine.every((m) => m.user === b.name), "the author is shown");
  assert.deepEqual(mine.map((m) => m.body), [0, 1, 2, 3, 4].map((i) => `${b.name} says ${i}`));
  await screenshot(a.page, "chat");
  await a.context.close();
  await b.context.close();
});

test("a reload and a kill -9 of a worker while both type: nothing lost or repeated, reconnecting then online", async () => {
  const a = await user();
  const b = await user();
  const sent: string[] = [];
  let typing = true;
  const type = async (page: Page, who: string) => {
    for (let i = 0; typing; i++) {
      const text = `${who} types ${i}`;
      await say(page, text);
      sent.push(text);
      await new Promise((r) => setTimeout(r, 60));
    }
  };
  const typists = [type(a.page, a.name), type(b.page, b.name)];
  await new Promise((r) => setTimeout(r, 500));
  try {
    await stack.l4Async("reload", "chat");
    // The old workers drain (1012 within DRAIN_WINDOW) after the reload has returned.
    for (const [who, page] of [["a", a.page], ["b", b.page]] as const) {
      await waitFor(15_000, `${who} to show reconnecting after the reload`, async () =>
        (await states(page)).includes("reconnecting") ? true : undefined,
      );
    }
    await Promise.all([online(a.page), online(b.page)]);
    // Kill the worker that holds a page's connection (nginx picks the least busy one).
    const holder = await waitFor(10_000, "a worker holding a page", async () => {
      for (const i of [0, 1]) if ((await stack.connections(i)) > 0) return i + 1;
      return undefined;
    });
    const victim = stack.pids()[holder - 1];
    assert.ok(victim && victim > 0);
    const before = [(await states(a.page)).length, (await states(b.page)).length];
    execFileSync("kill", ["-9", String(victim)]);
    await waitFor(15_000, "a page to notice the kill", async () => {
      const since = [(await states(a.page)).slice(before[0] ?? 0), (await states(b.page)).slice(before[1] ?? 0)];
      return since.some((s) => s.includes("reconnecting")) ? true : undefined;
    });
    await stack.bothOnline();
    await Promise.all([online(a.page), online(b.page)]);
    await new Promise((r) => setTimeout(r, 1_000));
  } finally {
    typing = false;
    await Promise.allSettled(typists);
  }
  await showsAll(a.page, sent, "a");
  await showsAll(b.page, sent, "b");
  for (const [who, page] of [["a", a.page], ["b", b.page]] as const) {
    const seen = await states(page);
    assert.equal(seen[seen.length - 1], "open", `${who}: ${seen.join(" ")}`);
  }
  await screenshot(a.page, "reload-and-kill");
  await a.context.close();
  await b.context.close();
});

test("the network cut for 20 s shows offline, then the page catches up on everything sent meanwhile", async () => {
  const a = await user();
  const b = await user();
  await say(a.page, "before the cut");
  await showsAll(b.page, ["before the cut"], "b");
  const cut = (await states(a.page)).length;
  await a.context.setOffline(true);
  await a.page.waitForSelector('[data-testid=status][data-state="offline"]', { timeout: 10_000 });
  const meanwhile: string[] = [];
  for (let i = 0; i < 8; i++) {
    const text = `while a was away ${i}`;
    meanwhile.push(text);
    await say(b.page, text);
  }
  await showsAll(b.page, meanwhile, "b");
  await new Promise((r) => setTimeout(r, 20_000));
  assert.deepEqual((await states(a.page)).slice(cut), ["offline"], "offline all along, no attempt meanwhile");
  await screenshot(a.page, "offline");
  await a.context.setOffline(false);
  await online(a.page);
  await showsAll(a.page, ["before the cut", ...meanwhile], "a");
  await screenshot(a.page, "caught-up");
  await a.context.close();
  await b.context.close();
});

test("with the server's frames blackholed the heartbeat notices within ping + pong and reconnects", async () => {
  const proxy = new Proxy(Number(new URL(stack.url).port));
  await proxy.listen();
  const pingAfterMs = 1_500;
  const pongTimeoutMs = 1_500;
  const c = await user(`http://127.0.0.1:${proxy.port}`, `?ping_after_ms=${pingAfterMs}&pong_timeout_ms=${pongTimeoutMs}`);
  await say(c.page, "before the blackhole");
  await showsAll(c.page, ["before the blackhole"], "c");
  const seenBefore = (await states(c.page)).length;
  const holed = proxy.blackhole();
  assert.ok(holed >= 1, "the page's connection goes through the proxy");
  const at = Date.now();
  // The recorded states, not the element: reconnecting may last only a few ms.
  await c.page.waitForFunction(
    (from) => (window as unknown as { __states: string[] }).__states.slice(from).includes("reconnecting"),
    seenBefore,
    { timeout: pingAfterMs + pongTimeoutMs + 10_000, polling: 20 },
  );
  const noticed = Date.now() - at;
  assert.ok(noticed <= pingAfterMs + pongTimeoutMs + 3_000, `noticed after ${noticed} ms`);
  await online(c.page);
  await say(c.page, "after the blackhole");
  await showsAll(c.page, ["before the blackhole", "after the blackhole"], "c");
  await screenshot(c.page, "heartbeat");
  await c.context.close();
  proxy.close();
});

test("a Node client (ws, MessagePack) posts 120 messages; the page pages back through all of them", async () => {
  // The client package in Node 20: no global WebSocket, so `ws`'s is passed in.
  const register = await fetch(`${stack.url}/api/auth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: `node${Date.now() % 100000}`, password: "password-123" }),
  });
  const { token } = (await register.json()) as { token: string };
  const ws = `${stack.url.replace("http", "ws")}/ws`;
  const node = new ChatClient({ url: ws, token, format: "msgpack", WebSocket: WebSocket as never }).connect();
  await node.join("paging");
  const bodies = Array.from({ length: 120 }, (_, i) => `page message ${i}`);
  const seqs = await Promise.all(bodies.map((b) => node.send("paging", b)));
  assert.deepEqual(seqs, Array.from({ length: 120 }, (_, i) => i + 1), "stored once each, in the order sent");
  node.close();

  const a = await user();
  await a.page.fill("#join-name", "paging");
  await a.page.press("#join-name", "Enter");
  await waitFor(15_000, "the newest page", async () => ((await shown(a.page)).length === 50 ? true : undefined));
  for (let pages = 0; pages < 5 && (await a.page.isVisible("[data-testid=older]")); pages++) {
    const before = (await shown(a.page)).length;
    await a.page.click("[data-testid=older]");
    await waitFor(15_000, "an older page", async () => ((await shown(a.page)).length > before ? true : undefined));
  }
  assert.equal(await a.page.isVisible("[data-testid=older]"), false, "no older button once all are shown");
  const list = await showsAll(a.page, bodies, "a");
  assert.deepEqual(list.map((m) => m.seq), seqs);
  await screenshot(a.page, "history");
  await a.context.close();
});
