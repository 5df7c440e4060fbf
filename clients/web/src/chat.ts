// The chat view: the rooms followed (kept in localStorage), each room's messages in seq
// order with author and time, paging back through history, the composer, and the
// connection indicator (online / reconnecting in N s / offline). Gaps the client
// reports are filled from history, so the page never shows a room with a hole.

import type { ChatClient, ChatMessage, ConnectionState } from "@layer4/chat-client";

import { byId, clock, el } from "./dom.ts";

const ROOMS = "l4.rooms";
/** Messages kept per room; older ones are dropped (and paged back in on demand). */
const KEPT = 2000;
const PAGE = 50;

interface Room {
  messages: Map<number, ChatMessage>;
  /** Older messages exist on the server before the oldest one here. */
  more: boolean;
  unread: number;
}

export class ChatView {
  private readonly rooms = new Map<string, Room>();
  private active = "";
  private countdown: ReturnType<typeof setInterval> | undefined;
  private readonly off: (() => void)[] = [];
  private readonly abort = new AbortController();
  /** Messages being sent, shown greyed in their room until stored. */
  private readonly sending = new Set<HTMLLIElement>();

  constructor(private readonly client: ChatClient) {}

  start(): void {
    const c = this.client;
    this.off.push(
      c.on("state", (s) => this.indicate(s)),
      c.on("message", (m) => this.received(m)),
      c.on("gap", (g) => void this.fill(g.room, g.from, g.to)),
    );
    const signal = { signal: this.abort.signal };
    byId("composer").addEventListener("submit", (e) => (e.preventDefault(), this.submit()), signal);
    byId("text").addEventListener("keydown", (e) => this.enter(e as KeyboardEvent), signal);
    byId("older").addEventListener("click", () => void this.older(), signal);
    byId("join-form").addEventListener("submit", (e) => (e.preventDefault(), this.joinTyped()), signal);
    const saved = JSON.parse(localStorage.getItem(ROOMS) ?? '["lobby"]') as unknown;
    const names = Array.isArray(saved) && saved.length > 0 ? saved.filter((r) => typeof r === "string") : ["lobby"];
    c.connect();
    for (const room of names) this.follow(room);
    this.select(names[0] ?? "lobby");
  }

  stop(): void {
    for (const off of this.off.splice(0)) off();
    this.abort.abort();
    clearInterval(this.countdown);
    this.client.close();
    byId("rooms").replaceChildren();
    byId("messages").replaceChildren();
  }

  private follow(room: string): void {
    if (this.rooms.has(room)) return;
    this.rooms.set(room, { messages: new Map(), more: false, unread: 0 });
    localStorage.setItem(ROOMS, JSON.stringify([...this.rooms.keys()]));
    this.renderRooms();
    this.client
      .join(room)
      .then(async (head) => {
        const r = this.rooms.get(room);
        if (r && r.messages.size === 0 && head > 0) {
          const page = await this.client.history(room, { before: head + 1, limit: PAGE });
          this.add(room, page.messages, page.more);
        }
      })
      .catch((e: Error) => this.problem(`${room}: ${e.message}`));
  }

  private joinTyped(): void {
    const input = byId<HTMLInputElement>("join-name");
    const room = input.value.trim();
    if (!room || !input.checkValidity()) return;
    input.value = "";
    this.follow(room);
    this.select(room);
  }

  private select(room: string): void {
    this.active = room;
    const r = this.rooms.get(room);
    if (r) r.unread = 0;
    this.renderRooms();
    this.renderMessages();
    byId("text").focus();
  }

  private received(m: ChatMessage): void {
    const r = this.rooms.get(m.room);
    if (!r) return;
    if (m.room !== this.active) r.unread += 1;
    this.add(m.room, [m], undefined);
    if (m.room !== this.active) this.renderRooms();
  }

  /** Adds messages to a room (any order, repeats ignored) and redraws it if shown. */
  private add(room: string, messages: ChatMessage[], more: boolean | undefined): void {
    const r = this.rooms.get(room);
    if (!r) return;
    for (const m of messages) r.messages.set(m.seq, m);
    if (more !== undefined && (messages.length === 0 || Math.min(...messages.map((m) => m.seq)) <= this.oldest(r))) {
      r.more = more;
    }
    if (r.messages.size > KEPT) {
      const seqs = [...r.messages.keys()].sort((a, b) => a - b);
      for (const seq of seqs.slice(0, r.messages.size - KEPT)) r.messages.delete(seq);
      r.more = true;
    }
    if (room === this.active) this.renderMessages();
  }

  private oldest(r: Room): number {
    let min = Infinity;
    for (const seq of r.messages.keys()) min = Math.min(min, seq);
    return min;
  }

  /** A range the client could not replay: read it from history, page by page. */
  private async fill(room: string, from: number, to: number): Promise<void> {
    let upto = to;
    for (let pages = 0; upto >= from && pages < 100; pages++) {
      const page = await this.client.history(room, { before: upto + 1, limit: Math.min(500, upto - from + 1) });
      this.add(room, page.messages, undefined);
      const first = page.messages[0];
      if (!first) return;
      upto = first.seq - 1;
    }
  }

  private async older(): Promise<void> {
    const r = this.rooms.get(this.active);
    if (!r) return;
    const before = r.messages.size > 0 ? this.oldest(r) : undefined;
    const log = byId("log");
    const height = log.scrollHeight;
    try {
      const page = await this.client.history(this.active, before === undefined ? { limit: PAGE } : { before, limit: PAGE });
      r.more = page.more;
      this.add(this.active, page.messages, page.more);
      log.scrollTop = log.scrollHeight - height;
    } catch (e) {
      this.problem((e as Error).message);
    }
  }

  private enter(e: KeyboardEvent): void {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      this.submit();
    }
  }

  private submit(): void {
    const input = byId<HTMLTextAreaElement>("text");
    const body = input.value.trim();
    if (!body || !this.active) return;
    input.value = "";
    const room = this.active;
    const pending = el("li", { className: "pending", data: { testid: "pending", room } }, el("span", { className: "body", text: body }));
    this.sending.add(pending);
    byId("messages").append(pending);
    this.scrollDown();
    this.problem("");
    const done = () => {
      this.sending.delete(pending);
      pending.remove();
    };
    this.client
      .send(room, body)
      .then(done)
      .catch((e: Error) => {
        done();
        this.problem(`not sent: ${e.message}`);
      });
  }

  private problem(text: string): void {
    byId("chat-error").textContent = text;
  }

  private indicate(s: ConnectionState): void {
    const status = byId("status");
    clearInterval(this.countdown);
    status.dataset.state = s.status;
    switch (s.status) {
      case "open":
        status.textContent = "online";
        return;
      case "connecting":
        status.textContent = "connecting…";
        return;
      case "offline":
        status.textContent = "offline";
        return;
      case "closed":
        status.textContent = `disconnected: ${s.reason}`;
        return;
      case "reconnecting": {
        const at = Date.now() + s.delayMs;
        const tick = () => {
          status.textContent = `reconnecting in ${Math.max(0, Math.ceil((at - Date.now()) / 1000))} s`;
        };
        tick();
        this.countdown = setInterval(tick, 250);
        return;
      }
      default:
        status.textContent = "…";
    }
  }

  private renderRooms(): void {
    const list = byId("rooms");
    list.replaceChildren(
      ...[...this.rooms.entries()].map(([name, r]) => {
        const li = el("li", { className: name === this.active ? "active" : "", data: { room: name } }, el("span", { text: `# ${name}` }));
        if (r.unread > 0) li.append(el("span", { className: "unread", text: String(r.unread) }));
        li.addEventListener("click", () => this.select(name));
        return li;
      }),
    );
  }

  private renderMessages(): void {
    const r = this.rooms.get(this.active);
    const list = byId("messages");
    const log = byId("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const pending = [...this.sending].filter((li) => li.dataset.room === this.active);
    const sorted = r ? [...r.messages.values()].sort((a, b) => a.seq - b.seq) : [];
    list.replaceChildren(
      ...sorted.map((m) =>
        el(
          "li",
          { data: { seq: String(m.seq), testid: "message" } },
          el("div", { className: "head" }, el("span", { className: "user", text: m.user }), el("time", { text: clock(m.ts) })),
          el("div", { className: "body", text: m.body }),
        ),
      ),
      ...pending,
    );
    byId("older").hidden = !r?.more;
    if (atBottom) this.scrollDown();
  }

  private scrollDown(): void {
    const log = byId("log");
    log.scrollTop = log.scrollHeight;
  }
}
