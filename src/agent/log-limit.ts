import type { Logger } from 'pino';

/**
 * A token bucket for log lines, as Cilium's `logging.Limiter` (pkg/logging/limiter.go): on
 * average one line per `intervalMs`, up to `burst` at once. What it drops is counted and told
 * by the next line it lets through, so a flood of bad objects costs a bounded log volume.
 */
export class LogLimiter {
  private tokens: number;
  private last: number;
  private dropped = 0;

  constructor(
    private readonly now: () => number,
    private readonly intervalMs = 500,
    private readonly burst = 10,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** undefined: drop this line; else it may go, and this many were dropped since the last one. */
  take(): number | undefined {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, t - this.last) / this.intervalMs);
    this.last = Math.max(this.last, t);
    if (this.tokens < 1) {
      this.dropped++;
      return undefined;
    }
    this.tokens--;
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }
}

/**
 * `logger.warn` through a `LogLimiter`: a line the limiter drops is not written, and the next
 * one written carries `suppressed: <n>`.
 */
export function limitedWarn(logger: Logger, limiter: LogLimiter): (fields: object, msg: string) => void {
  return (fields, msg) => {
    const suppressed = limiter.take();
    if (suppressed !== undefined) logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
  };
}
