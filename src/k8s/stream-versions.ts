import { compareDecimal } from './resource-version.js';

/**
 * The newest resourceVersion each stream showed (its events, bookmarks and relists), as client-go's
 * reflector keeps `lastSyncResourceVersion`: it relists "with a resource version no older than has
 * already been observed in relist results or watch events" (tools/cache/reflector.go
 * `relistResourceVersion`), and the API server answers such a List or watch-list "not older than"
 * it (`resourceVersionMatch=NotOlderThan`). A relist older than it is a source gone back in time
 * (a lagging API server replica, a replayed recording): it cannot speak for what the stream showed
 * since (finding 1750). Versions that are not integers are not kept nor compared.
 */
export class StreamVersions {
  private readonly newest = new Map<string, string>();

  /** `source` showed `rv` (anything but an integer string is ignored). */
  note(source: string, rv: unknown): void {
    if (typeof rv !== 'string' || !/^\d+$/.test(rv)) return;
    const before = this.newest.get(source);
    if (before === undefined || compareDecimal(rv, before) > 0) this.newest.set(source, rv);
  }

  /** The newest version `source` showed when `rv` is older than it; undefined otherwise. */
  behind(source: string, rv: string | undefined): string | undefined {
    const newest = this.newest.get(source);
    if (newest === undefined || rv === undefined || !/^\d+$/.test(rv)) return undefined;
    return compareDecimal(rv, newest) < 0 ? newest : undefined;
  }
}
