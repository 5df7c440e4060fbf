// The instance table: one row per instance, state coloured, memory against its
// ceiling, and the instance's buttons (restart, stop or start).

import type { Instance } from "./api.ts";
import { bytes, duration, node } from "./format.ts";

export type Act = (what: string, path: string, body?: unknown) => void;

function memory(i: Instance): HTMLTableCellElement {
  const td = node("td", "-", "memory");
  if (i.memory_bytes == null) return td;
  const c = i.memory_ceiling_bytes;
  td.textContent = c ? `${bytes(i.memory_bytes)} / ${bytes(c)}` : bytes(i.memory_bytes);
  if (c) {
    const ratio = i.memory_bytes / c;
    if (ratio >= 0.9) td.classList.add("mem-high");
    else if (ratio >= 0.5) td.classList.add("mem-mid");
  }
  return td;
}

function button(text: string, onClick: () => void, danger = false): HTMLButtonElement {
  const b = node("button", text, danger ? "danger" : undefined);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

export function renderTable(body: HTMLTableSectionElement, rows: Instance[], act: Act): void {
  const trs = rows.map((i) => {
    const name = `${i.app}:${i.instance}`;
    const tr = node("tr");
    tr.dataset.name = name;
    tr.append(
      node("td", String(i.id)),
      node("td", name, "name"),
      node("td", i.state, `state state-${i.state}`),
      node("td", i.pid == null ? "-" : String(i.pid), "pid"),
      node("td", i.port == null ? "-" : String(i.port)),
      node("td", String(i.restarts), "restarts"),
      node("td", i.uptime_ms == null ? "-" : duration(i.uptime_ms)),
      node("td", i.cpu_percent == null ? "-" : `${i.cpu_percent.toFixed(1)}%`),
      memory(i),
    );
    const actions = node("td", undefined, "actions");
    const target = encodeURIComponent(name);
    actions.append(button("restart", () => act(`restart ${name}`, `/api/v1/apps/${target}/restart`)));
    // Stopped or given up on (errored): start; anything else, a pending restart included: stop.
    if (i.state === "stopped" || i.state === "errored") actions.append(button("start", () => act(`start ${name}`, `/api/v1/apps/${target}/start`)));
    else actions.append(button("stop", () => act(`stop ${name}`, `/api/v1/apps/${target}/stop`), true));
    tr.append(actions);
    return tr;
  });
  body.replaceChildren(...trs);
}
