// The real stack the browser tests run against, made fresh per test file in a temporary
// folder: a private redis-server, `l4ctl` running two chat-server workers (the debug
// build of this repository, `L4_BIN_DIR`, default target/debug), and a real nginx
// rendered by `l4ctl nginx render`; plus Debian's Chromium driven by playwright-core,
// and a TCP proxy a test can blackhole. Everything is stopped by `stop()`, and every
// wait has a deadline.

import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { type Browser, chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../../..");
const bins = resolve(repo, process.env.L4_BIN_DIR ?? "target/debug");
export const artifacts = resolve(repo, "clients/web/artifacts");

/** A port nothing listens on now (and `n - 1` free ports after it). */
export async function freePorts(n = 1): Promise<number> {
  for (;;) {
    const base = await new Promise<number>((ok, fail) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => ok(port));
      });
      s.on("error", fail);
    });
    let all = base + n <= 65535;
    for (let i = 1; all && i < n; i++) all = await isFree(base + i);
    if (all) return base;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = net.createServer().listen(port, "127.0.0.1", () => s.close(() => ok(true)));
    s.on("error", () => ok(false));
  });
}

/** Polls `check` every 50 ms until it returns something, or fails after `ms`. */
export async function waitFor<T>(ms: number, what: string, check: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class Stack {
  readonly dir = mkdtempSync(join(tmpdir(), "l4web-"));
  private redis: ChildProcess | undefined;
  private nginxArgs: string[] = [];
  browser: Browser | undefined;
  /** The page's origin through nginx. */
  url = "";
  /** The first worker's port (instance i listens on workerPort + i). */
  workerPort = 0;

  async start(): Promise<void> {
    mkdirSync(artifacts, { recursive: true });
    const redisPort = await freePorts();
    this.redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    await waitFor(10_000, "redis-server", () => canConnect(redisPort));
    const workers = await freePorts(2);
    this.workerPort = workers;
    const nginxPort = await freePorts();
    const env: Record<string, string> = {
      JWT_SECRET: "browser-tests-secret-0123456789abcdef",
      DATABASE_URL: `sqlite://${this.dir}/chat.db`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      APP_ENV: "test",
      REGISTRATION: "open",
      DRAIN_WINDOW: "300",
      AUTH_RATE_PER_IP: "1000",
      RUST_LOG: "warn",
    };
    const envLines = Object.entries(env).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n");
    writeFileSync(
      join(this.dir, "l4.toml"),
      `[daemon]\nhome = "run"\nlog_dir = "logs"\napi_listen = "off"\n\n` +
        `[nginx]\nserver_name = "localhost"\nlisten = "127.0.0.1:${nginxPort}"\noutput = ${JSON.stringify(join(this.dir, "nginx/layer4.conf"))}\naccess_log = "off"\n\n` +
        `[[apps]]\nname = "chat"\nscript = ${JSON.stringify(join(bins, "chat-server"))}\nport = ${workers}\ninstances = 2\n` +
        `ready = "notify"\nlisten_timeout = "20s"\nkill_timeout = "10s"\n[apps.env]\n${envLines}\n`,
    );
    mkdirSync(join(this.dir, "nginx"), { recursive: true });
    this.l4("start", "l4.toml");
    this.l4("nginx", "render");
    const d = join(this.dir, "nginx");
    writeFileSync(
      join(d, "nginx.conf"),
      `pid ${d}/nginx.pid;\nerror_log ${d}/error.log;\nevents {}\nhttp {\n access_log off;\n client_body_temp_path ${d}/body;\n proxy_temp_path ${d}/proxy;\n fastcgi_temp_path ${d}/f;\n uwsgi_temp_path ${d}/u;\n scgi_temp_path ${d}/s;\n include ${d}/layer4.conf;\n}\n`,
    );
    this.nginxArgs = ["-p", `${d}/`, "-e", `${d}/error.log`, "-c", `${d}/nginx.conf`];
    execFileSync("nginx", this.nginxArgs);
    this.url = `http://127.0.0.1:${nginxPort}`;
    await waitFor(20_000, "the page through nginx", async () => {
      const r = await fetch(`${this.url}/api/health/websocket`).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    });
    this.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
  }

  /** `l4ctl --config l4.toml ARGS`; its output, or an error with the daemon's logs. */
  l4(...args: string[]): string {
    try {
      return execFileSync(join(bins, "l4ctl"), ["--config", join(this.dir, "l4.toml"), ...args], {
        cwd: this.dir,
        encoding: "utf8",
        env: withoutL4(process.env),
      });
    } catch (e) {
      throw new Error(`l4ctl ${args.join(" ")} failed: ${String(e)}\n${this.logs()}`);
    }
  }

  /** The same without blocking the event loop (the browser tests type meanwhile). */
  l4Async(...args: string[]): Promise<string> {
    return new Promise((ok, fail) => {
      execFile(join(bins, "l4ctl"), ["--config", join(this.dir, "l4.toml"), ...args], { cwd: this.dir, env: withoutL4(process.env) }, (e, out) =>
        e ? fail(new Error(`l4ctl ${args.join(" ")} failed: ${String(e)}\n${this.logs()}`)) : ok(out),
      );
    });
  }

  /** Open WebSocket connections of worker `instance` (its own /metrics). */
  async connections(instance: number): Promise<number> {
    const r = await fetch(`http://127.0.0.1:${this.workerPort + instance}/metrics`).catch(() => undefined);
    const text = r ? await r.text() : "";
    const line = text.split("\n").find((l) => l.startsWith("chat_connections_active"));
    return Number(line?.split(" ")[1] ?? 0);
  }

  /** The workers' pids, by instance. */
  pids(): number[] {
    const status = JSON.parse(this.l4("status", "--json")) as { instances: { pid?: number; state: string }[] };
    return status.instances.map((i) => i.pid ?? 0);
  }

  /** Both workers online (after a restart). */
  async bothOnline(): Promise<void> {
    await waitFor(30_000, "two online workers", () => {
      const status = JSON.parse(this.l4("status", "--json")) as { instances: { state: string }[] };
      return status.instances.filter((i) => i.state === "online").length === 2 ? true : undefined;
    });
  }

  logs(): string {
    const dir = join(this.dir, "logs");
    let out = "";
    try {
      for (const f of readdirSync(dir)) out += `\n--- ${f}\n${readFileSync(join(dir, f), "utf8").split("\n").slice(-30).join("\n")}`;
    } catch {
      // no logs yet
    }
    return out;
  }

  async stop(): Promise<void> {
    await this.browser?.close().catch(() => {});
    try {
      execFileSync("nginx", [...this.nginxArgs, "-s", "stop"], { stdio: "ignore" });
    } catch {
      // not started
    }
    try {
      this.l4("kill");
    } catch {
      // not started
    }
    this.redis?.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The environment without the variables that would point l4ctl at another daemon. */
function withoutL4(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.L4_HOME;
  delete copy.L4_CONFIG;
  return copy;
}

function canConnect(port: number): Promise<boolean | undefined> {
  return new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      ok(true);
    });
    s.on("error", () => ok(undefined));
  });
}

/** A TCP proxy to `target`; `blackhole()` stops forwarding on the connections open then. */
export class Proxy {
  private readonly server: net.Server;
  private readonly open = new Set<{ holed: boolean; client: net.Socket; upstream: net.Socket }>();
  port = 0;

  constructor(private readonly target: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      const pair = { holed: false, client, upstream };
      this.open.add(pair);
      upstream.on("data", (b) => pair.holed || client.write(b));
      client.on("data", (b) => pair.holed || upstream.write(b));
      const end = () => {
        this.open.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) {
        s.on("error", end);
        s.on("close", end);
      }
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** The connections open now go silent both ways (nothing closes them). */
  blackhole(): number {
    for (const pair of this.open) pair.holed = true;
    return this.open.size;
  }

  close(): void {
    for (const pair of this.open) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.server.close();
  }
}
