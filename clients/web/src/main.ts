// The web chat page: sign in (or create an account) against the server's auth routes,
// keep the token for this tab (sessionStorage), and run the chat view on the client
// package. A refused or expired token brings the sign-in form back with the reason.

import { ChatClient, RefusedError } from "@layer4/chat-client";

import { ChatView } from "./chat.ts";
import { byId } from "./dom.ts";

const TOKEN = "l4.token";
const USER = "l4.user";

let view: ChatView | undefined;

function showLogin(reason = ""): void {
  view?.stop();
  view = undefined;
  sessionStorage.removeItem(TOKEN);
  byId("chat").hidden = true;
  byId("logout").hidden = true;
  byId("me").textContent = "";
  byId("login").hidden = false;
  byId("login-error").textContent = reason;
  const status = byId("status");
  status.dataset.state = "idle";
  status.textContent = "signed out";
  byId<HTMLInputElement>("username").focus();
}

function start(token: string, user: string): void {
  sessionStorage.setItem(TOKEN, token);
  sessionStorage.setItem(USER, user);
  byId("login").hidden = true;
  byId("chat").hidden = false;
  byId("logout").hidden = false;
  byId("me").textContent = user;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = new ChatClient({ url: `${scheme}://${location.host}/ws`, token, ...testTiming() });
  client.on("state", (s) => {
    if (s.status === "closed" && s.error instanceof RefusedError) showLogin(s.error.message);
  });
  view = new ChatView(client);
  view.start();
}

/** Shorter heartbeat intervals for the browser tests (`?ping_after_ms=...&pong_timeout_ms=...`),
 * never under a second: a crafted link cannot make the page ping faster than that. */
function testTiming(): { pingAfterMs?: number; pongTimeoutMs?: number } {
  const q = new URLSearchParams(location.search);
  const n = (k: string) => {
    const v = Number(q.get(k));
    return Number.isFinite(v) && v > 0 ? Math.max(1_000, v) : undefined;
  };
  const out: { pingAfterMs?: number; pongTimeoutMs?: number } = {};
  const ping = n("ping_after_ms");
  const pong = n("pong_timeout_ms");
  if (ping !== undefined) out.pingAfterMs = ping;
  if (pong !== undefined) out.pongTimeoutMs = pong;
  return out;
}

async function authenticate(route: "login" | "register"): Promise<void> {
  const username = byId<HTMLInputElement>("username").value.trim();
  const password = byId<HTMLInputElement>("password").value;
  const error = byId("login-error");
  error.textContent = "";
  try {
    const response = await fetch(`/api/auth/${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = (await response.json().catch(() => ({}))) as {
      token?: string;
      user?: { name?: string };
      message?: string;
    };
    if (!response.ok || !body.token) {
      error.textContent = body.message ?? `the server answered ${response.status}`;
      return;
    }
    byId<HTMLInputElement>("password").value = "";
    start(body.token, body.user?.name ?? username);
  } catch {
    error.textContent = "the server cannot be reached; try again";
  }
}

byId("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void authenticate("login");
});
byId("register").addEventListener("click", () => {
  const form = byId<HTMLFormElement>("login-form");
  if (form.reportValidity()) void authenticate("register");
});
byId("logout").addEventListener("click", () => showLogin());

const saved = sessionStorage.getItem(TOKEN);
if (saved) start(saved, sessionStorage.getItem(USER) ?? "");
else showLogin();
