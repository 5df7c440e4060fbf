// A small typed event emitter (no dependency, the same in browsers and Node): a
// listener that throws is reported on the console and does not stop the others.

export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners: { [K in keyof Events]?: Set<(value: Events[K]) => void> } = {};

  /** Calls `listener` on each `event`; the returned function removes it. */
  on<K extends keyof Events>(event: K, listener: (value: Events[K]) => void): () => void {
    let set = this.listeners[event];
    if (set === undefined) {
      set = new Set();
      this.listeners[event] = set;
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of [...(this.listeners[event] ?? [])]) {
      try {
        listener(value);
      } catch (e) {
        console.error(`l4chat: a ${String(event)} listener threw`, e);
      }
    }
  }
}
