// The dashboard page in headless Chromium (Debian's, driven by playwright-core) against a
// real l4ctl daemon of this repository's debug build, over its TCP API with a token: every
// instance listed, a `kill -9` of a worker in the table and the timeline within 2 s, the
// charts drawn, a restart without the token refused with the API's 401 sentence and with
// it carried out (the pid changes). Screenshots in clients/dashboard/artifacts/.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { type Browser, type Page, chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../../..");
const bins = resolve(repo, process.env.L4_BIN_DIR ?? "target/debug");
const artifacts = resolve(repo, "clients/dashboard/artifacts");
const TOKEN = "dashboard-test-token-0123456789";

const dir = mkdtempSync(join(tmpdir(), "l4dash-"));
let browser: Browser | undefined;
let page: Page;
let url = "";
/** Every page error, and every request the page made (URL and Authorization header). */
const pageErrors: string[] = [];
const requests: { url: string; auth?: string }[] = [];

function l4(...args: string[]): string {
  const env: NodeJS.ProcessEnv = { ...process.env, L4_DASH_TOKEN: TOKEN };
  delete env.L4_HOME;
  delete env.L4_CONFIG;
  return execFileSync(join(bins, "l4ctl"), ["--config", join(dir, "l4.toml"), ...args], { cwd: dir, encoding: "utf8", env });
}

interface Row { app: string; instance: number; pid?: number | null; state: string; restarts: number }
function status(): Row[] {
  return (JSON.parse(l4("status", "--json")) as { instances: Row[] }).instances;
}
function pidOf(name: string): number | null | undefined {
  return status().find((r) => `${r.app}:${r.instance}` === name)?.pid;
}

async function waitFor<T>(ms: number, what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  const loop = "trap 'exit 0' TERM; while true; do echo \"tick $$\"; sleep 0.5; done";
  writeFileSync(
    join(dir, "l4.toml"),
    `[daemon]\nhome = "run"\nlog_dir = "logs"\napi_listen = "127.0.0.1:0"\napi_token_env = "L4_DASH_TOKEN"\nsample_interval = "1s"\n\n` +
      `[[apps]]\nname = "web"\nscript = "sh"\nargs = ["-c", ${JSON.stringify(loop)}]\ninstances = 2\nmax_memory_restart = "64M"\nrestart_delay = 200\n`,
  );
  l4("start", "l4.toml");
  const addr = await waitFor(10_000, "api.addr", () => {
    try {
      return readFileSync(join(dir, "run/api.addr"), "utf8").trim() || undefined;
    } catch {
      return undefined;
    }
  });
  url = `http://${addr}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("request", (r) => requests.push({ url: r.url(), auth: r.headers().authorization }));
  // What the Content-Security-Policy blocked, if anything (the page must need nothing it forbids).
  await page.addInitScript(() => {
    const w = window as unknown as { __csp: string[] };
    w.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => w.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  // 401s are expected before the token is entered (crash reports, logs).
  page.on("console", (m) => m.type() === "error" && !m.text().includes("401") && console.error(`console: ${m.text()}`));
  await page.goto(`${url}/`);
});

after(async () => {
  await browser?.close().catch(() => {});
  try {
    l4("kill");
  } catch {
    // not started
  }
  rmSync(dir, { recursive: true, force: true });
});

const cell = (name: string, cls: string) => page.locator(`tr[data-name="${name}"] td.${cls}`).textContent();

test("every instance is listed with its pid", async () => {
  await page.waitForSelector('tr[data-name="web:1"]', { timeout: 20_000 });
  for (const r of status()) {
    assert.equal(await cell(`${r.app}:${r.instance}`, "pid"), String(r.pid));
  }
});

test("a kill -9 of a worker shows in the table and the timeline within 2 s", async () => {
  const pid = pidOf("web:0");
  assert.ok(pid);
  const t0 = Date.now();
  process.kill(pid, "SIGKILL");
  await page.waitForFunction(
    (old) => {
      const row = document.querySelector('tr[data-name="web:0"]');
      const timeline = document.getElementById("timeline")?.textContent ?? "";
      return row?.querySelector("td.pid")?.textContent !== String(old) && timeline.includes("web:0");
    },
    pid,
    { timeout: 2000 },
  );
  console.log(`kill -9 shown in the table and the timeline after ${Date.now() - t0} ms`);
  await waitFor(20_000, "web:0 online again", () => status().find((r) => r.instance === 0 && r.state === "online"));
  await page.screenshot({ path: join(artifacts, "dashboard-after-kill.png"), fullPage: true });
});

test("the charts draw", async () => {
  await page.waitForFunction(() => {
    const lines = [...document.querySelectorAll("svg.chart polyline")];
    return lines.length >= 2 && lines.every((l) => (l.getAttribute("points") ?? "").split(" ").length >= 2);
  }, undefined, { timeout: 20_000 });
  const strip = await page.locator("svg.strip line").count();
  assert.ok(strip >= 1, "the restart is on the strip");
});

async function restartFromThePage(name: string): Promise<string> {
  await page.click(`tr[data-name="${name}"] button:has-text("restart")`);
  await page.waitForSelector("#confirm:not([hidden])");
  await page.click("#confirm-yes");
  return page
    .waitForFunction(() => {
      const m = document.getElementById("message")?.textContent ?? "";
      return m.endsWith("…") ? undefined : m;
    }, undefined, { timeout: 30_000 })
    .then((h) => h.jsonValue() as Promise<string>);
}

test("a restart without the token shows the 401 sentence and changes nothing", async () => {
  const pid = pidOf("web:1");
  const said = await restartFromThePage("web:1");
  assert.match(said, /a valid `Authorization: Bearer <token>` is required/);
  assert.equal(pidOf("web:1"), pid);
  // Crash reports and logs say why they are not shown.
  assert.match((await page.locator("#crashes").textContent()) ?? "", /Bearer/);
});

test("with the token entered once, a restart changes the pid; the token is in no URL", async () => {
  const pid = pidOf("web:1");
  await page.fill("#token", TOKEN);
  await page.click('#token-form button[type="submit"]');
  assert.equal(await page.evaluate(() => sessionStorage.getItem("l4ctl-token")), TOKEN);
  const said = await restartFromThePage("web:1");
  assert.equal(said, "restart web:1: done");
  const now = pidOf("web:1");
  assert.ok(now && now !== pid, `pid ${pid} -> ${now}`);
  await page.waitForFunction((p) => document.querySelector('tr[data-name="web:1"] td.pid')?.textContent === String(p), now, { timeout: 10_000 });
  assert.ok(!page.url().includes(TOKEN));
  // Now the crash report of the kill and the log lines show.
  await page.waitForFunction(() => (document.getElementById("crashes")?.textContent ?? "").includes("web:0"), undefined, { timeout: 10_000 });
  await page.waitForFunction(() => (document.getElementById("logs")?.textContent ?? "").includes("tick"), undefined, { timeout: 10_000 });
  await page.fill("#log-filter", "no-such-line");
  await page.waitForFunction(() => document.getElementById("logs")?.textContent === "(no lines)", undefined, { timeout: 10_000 });
  await page.fill("#log-filter", "");
  await page.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });
});

test("no page error, nothing blocked by the CSP, and the token only ever in a header", async () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(await page.evaluate(() => (window as unknown as { __csp: string[] }).__csp), []);
  assert.ok(requests.length > 10);
  assert.ok(requests.every((r) => !r.url.includes(TOKEN)), "the token in a URL");
  assert.ok(requests.some((r) => r.auth === `Bearer ${TOKEN}`), "the token was sent as a header");
});
