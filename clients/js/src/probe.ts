// Why did the upgrade fail? A browser's WebSocket only reports close 1006, so after a
// failed connect the client asks `POST /ws/probe` with the same token (in the query,
// and no body: a "simple" request, so no CORS preflight; a POST, so the browser names
// the page's origin as it does on the upgrade): 204 means an upgrade would be taken
// now; a refusal comes with the upgrade's status, code and Retry-After. A server
// without the probe (404, an older release) or one that cannot be reached says nothing.

import { RefusedError } from "./errors.js";

/** The probe's URL for a WebSocket URL: `wss://h/ws` -> `https://h/ws/probe?token=...`. */
export function probeUrl(wsUrl: string, token: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = `${url.pathname.replace(/\/$/, "")}/probe`;
  url.search = "";
  url.searchParams.set("token", token);
  return url.toString();
}

/** The refusal an upgrade would get now, or undefined (taken, or the server unreachable). */
export async function probe(
  fetcher: typeof fetch,
  wsUrl: string,
  token: string,
  timeoutMs: number,
): Promise<RefusedError | undefined> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetcher(probeUrl(wsUrl, token), { method: "POST", signal: abort.signal, cache: "no-store" });
    if (response.status === 204 || response.ok || response.status === 404) return undefined;
    let code = "refused";
    let message = `the server refused the connection (HTTP ${response.status})`;
    try {
      const body = (await response.json()) as { error?: unknown; message?: unknown };
      if (typeof body.error === "string") code = body.error;
      if (typeof body.message === "string") message = body.message;
    } catch {
      // Not our JSON (a proxy's page): the status says enough.
    }
    const retry = Number(response.headers.get("retry-after"));
    const retryAfterMs = Number.isFinite(retry) && retry > 0 ? Math.min(retry, 60) * 1000 : undefined;
    return new RefusedError(response.status, code, message, retryAfterMs);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
