import type { LogFn } from './held.js';

/**
 * The mirror's log callbacks, held while it changes state and called once it is consistent again
 * (finding 1524). They are the embedder's code: one that flushed the mirror (or observed another
 * item) from inside a relist's warning got a batch with the List's upserts and none of its
 * deletes, a state the cluster never had; one that threw left the relist half applied. What a
 * callback throws is dropped: a log line must not change an outcome (a flush that threw after its
 * batch was made would leave that batch open for good).
 */
export class DeferredLog {
  private depth = 0;
  private readonly queue: (() => void)[] = [];

  /** `fn`, held while `during` runs. */
  wrap(fn: LogFn): LogFn {
    return (msg, fields) => {
      if (this.depth > 0) this.queue.push(() => fn(msg, fields));
      else fn(msg, fields);
    };
  }

  /** Runs `body`; the log calls it made are delivered after it (the outermost one), in order. */
  during<T>(body: () => T): T {
    this.depth++;
    try {
      return body();
    } finally {
      if (--this.depth === 0) for (const call of this.queue.splice(0)) quietly(call);
    }
  }
}

function quietly(call: () => void): void {
  try {
    call();
  } catch {
    // The embedder's log callback failed: the mirror's state and the batch stand.
  }
}
