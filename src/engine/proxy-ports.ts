import { MinHeap } from 'mnemonist';

/** The proxy ports L7 redirects get (inclusive), like Cilium's range; the lowest free port is taken. */
export interface ProxyPortRange {
  readonly min: number;
  readonly max: number;
}

/** Cilium's default proxy port range (`--proxy-port-range`-like): 10000–20000. */
export const DEFAULT_PROXY_PORT_RANGE: ProxyPortRange = { min: 10000, max: 20000 };

/** A transaction refused because no proxy port was free for a new L7 redirect: nothing was applied. */
export class ProxyPortsExhaustedError extends Error {
  override readonly name = 'ProxyPortsExhaustedError';
  constructor(
    readonly endpoint: string,
    readonly redirect: string,
    readonly range: ProxyPortRange,
  ) {
    super(`no free proxy port in ${range.min}-${range.max} for endpoint ${endpoint}, redirect ${redirect}; the transaction was not applied`);
  }
}

type JournalOp = { readonly op: 'alloc' | 'free'; readonly endpoint: string; readonly redirect: string; readonly port: number };

/**
 * Node-wide proxy ports, one per (endpoint, redirect). The lowest free port is handed out, so
 * allocation is deterministic; a port stays with its redirect until the redirect is released.
 * Every change is journaled so a refused transaction can be undone exactly.
 */
export class ProxyPortAllocator {
  private readonly byEndpoint = new Map<string, Map<string, number>>();
  private readonly owners = new Map<number, { endpoint: string; redirect: string }>();
  /** Ports below `next` that were released. */
  private readonly released = new MinHeap<number>();
  private next: number;
  private journal: JournalOp[] | null = null;

  constructor(readonly range: ProxyPortRange = DEFAULT_PROXY_PORT_RANGE) {
    const { min, max } = range;
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max > 65535 || min > max) {
      throw new RangeError(`proxy port range ${min}-${max} is not within 1-65535`);
    }
    this.next = min;
  }

  portOf(endpoint: string, redirect: string): number | undefined {
    return this.byEndpoint.get(endpoint)?.get(redirect);
  }

  /** The redirect a proxy port serves for an endpoint, if any. */
  redirectOf(endpoint: string, port: number): string | undefined {
    const o = this.owners.get(port);
    return o && o.endpoint === endpoint ? o.redirect : undefined;
  }

  redirectsOf(endpoint: string): ReadonlyMap<string, number> {
    return this.byEndpoint.get(endpoint) ?? new Map();
  }

  get allocated(): number {
    return this.owners.size;
  }

  /** Gives the redirect a port (its current one, if it has one); throws when the range is used up. */
  allocate(endpoint: string, redirect: string): number {
    const have = this.portOf(endpoint, redirect);
    if (have !== undefined) return have;
    let port: number | undefined;
    while (this.released.size > 0 && port === undefined) {
      const p = this.released.pop() as number;
      if (!this.owners.has(p) && p < this.next) port = p;
    }
    if (port === undefined) {
      if (this.next > this.range.max) throw new ProxyPortsExhaustedError(endpoint, redirect, this.range);
      port = this.next++;
    }
    this.take(endpoint, redirect, port);
    this.journal?.push({ op: 'alloc', endpoint, redirect, port });
    return port;
  }

  release(endpoint: string, redirect: string): void {
    const port = this.portOf(endpoint, redirect);
    if (port === undefined) return;
    this.drop(endpoint, redirect, port);
    this.journal?.push({ op: 'free', endpoint, redirect, port });
  }

  /**
   * Gives a redirect a known port, as found in an endpoint's pinned map after a restart, so the
   * restarted engine keeps it. Refused (false) when the port is outside the range or taken.
   */
  reserve(endpoint: string, redirect: string, port: number): boolean {
    if (port < this.range.min || port > this.range.max || this.owners.has(port) || this.portOf(endpoint, redirect) !== undefined) return false;
    this.take(endpoint, redirect, port);
    return true;
  }

  /** Starts journaling; `rollback` undoes everything since, `commit` forgets it. */
  begin(): void {
    this.journal = [];
  }

  commit(): void {
    this.journal = null;
  }

  rollback(): void {
    const j = this.journal ?? [];
    this.journal = null;
    for (let i = j.length - 1; i >= 0; i--) {
      const op = j[i] as JournalOp;
      if (op.op === 'alloc') this.drop(op.endpoint, op.redirect, op.port);
      else this.take(op.endpoint, op.redirect, op.port);
    }
  }

  private take(endpoint: string, redirect: string, port: number): void {
    let m = this.byEndpoint.get(endpoint);
    if (!m) this.byEndpoint.set(endpoint, (m = new Map()));
    m.set(redirect, port);
    this.owners.set(port, { endpoint, redirect });
    if (port >= this.next) {
      // Ports skipped below the new high-water mark (a reserved port) stay allocatable.
      for (let p = this.next; p < port; p++) this.released.push(p);
      this.next = port + 1;
    }
  }

  private drop(endpoint: string, redirect: string, port: number): void {
    const m = this.byEndpoint.get(endpoint);
    m?.delete(redirect);
    if (m?.size === 0) this.byEndpoint.delete(endpoint);
    this.owners.delete(port);
    this.released.push(port);
  }
}
