import { ManifestError } from './errors.js';

/**
 * Typed, path-tracking access to a parsed YAML/JSON document. Every accessor either returns a
 * value of the asked type or throws a ManifestError naming the source and field path.
 * YAML `null` (an empty value) counts as absent, as it does for kubectl.
 */
export class Reader {
  private deferred: ManifestError | undefined;
  private deferrals = 0;

  /**
   * `deferUnknownFields`: an unknown field is recorded as `unsupported`, not thrown, so the fields
   * read after it are still checked (a policy manifest: the API server prunes unknown fields of a
   * structural CRD and Go's decoder skips them, and Cilium or the API server still refuse the object
   * for an invalid field beside one, attack finding 1830). Only a reader whose caller throws the
   * deferred error (`readManifest`) may set it.
   */
  constructor(
    readonly source: string,
    private readonly deferUnknownFields = false,
  ) {}

  /**
   * A field distill does not read and Cilium enforces ("is not supported by distill", which the agent
   * answers with a fail-closed stand-in): recorded, not thrown, so the rest of the document is still
   * checked and an invalid field found later is the error. Cilium refuses such an object whole, and a
   * stand-in would keep allow rules the cluster never enforces (attack finding 1767). The caller
   * throws the first with `throwDeferred` once the document is read.
   */
  unsupported(path: string, detail: string): void {
    this.deferred ??= new ManifestError(this.source, path, detail, true);
    this.deferrals++;
  }

  /** How many `unsupported` calls this reader has had: a cache of parses keeps only those that made none. */
  deferralCount(): number {
    return this.deferrals;
  }

  throwDeferred(): void {
    if (this.deferred !== undefined) throw this.deferred;
  }

  fail(path: string, detail: string): never {
    throw new ManifestError(this.source, path, detail);
  }

  /** An object whose keys must all be in `allowed`. */
  object(v: unknown, path: string, allowed: readonly string[]): Record<string, unknown> {
    if (!isPlainObject(v)) this.fail(path, `expected an object, got ${describe(v)}`);
    const rec = v;
    for (const k of Object.keys(rec)) {
      if (allowed.includes(k)) continue;
      const detail = `unknown field (expected one of: ${allowed.join(', ')})`;
      if (this.deferUnknownFields) this.unsupported(join(path, k), detail);
      else this.fail(join(path, k), detail);
    }
    return rec;
  }

  optObject(v: unknown, path: string, allowed: readonly string[]): Record<string, unknown> | undefined {
    return absent(v) ? undefined : this.object(v, path, allowed);
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected a list, got ${describe(v)}`);
    return v;
  }

  optArray(v: unknown, path: string): unknown[] | undefined {
    return absent(v) ? undefined : this.array(v, path);
  }

  string(v: unknown, path: string): string {
    if (typeof v !== 'string') this.fail(path, `expected a string, got ${describe(v)}`);
    return v;
  }

  optString(v: unknown, path: string): string | undefined {
    return absent(v) ? undefined : this.string(v, path);
  }

  nonEmptyString(v: unknown, path: string): string {
    const s = this.string(v, path);
    if (s === '') this.fail(path, 'must not be empty');
    return s;
  }

  boolean(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, `expected true or false, got ${describe(v)}`);
    return v;
  }

  optBoolean(v: unknown, path: string): boolean | undefined {
    return absent(v) ? undefined : this.boolean(v, path);
  }

  integer(v: unknown, path: string): number {
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(path, `expected an integer, got ${describe(v)}`);
    return v;
  }

  /** An integer within [min, max], with "is below"/"is above" messages. */
  intInRange(v: unknown, path: string, min: number, max: number): number {
    const n = this.integer(v, path);
    if (n < min) this.fail(path, `${n} is below ${min}`);
    if (n > max) this.fail(path, `${n} is above ${max}`);
    return n;
  }

  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
    const s = this.string(v, path);
    if (!(allowed as readonly string[]).includes(s)) this.fail(path, `"${s}" is not one of: ${allowed.join(', ')}`);
    return s as T;
  }

  /**
   * A map of string to string (labels). The result has no prototype, so a key such as
   * `__proto__` or `constructor` is an ordinary key (then refused by label validation), never a
   * prototype property.
   */
  stringMap(v: unknown, path: string): Record<string, string> {
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    if (absent(v)) return out;
    if (!isPlainObject(v)) this.fail(path, `expected a map of strings, got ${describe(v)}`);
    for (const [k, val] of Object.entries(v)) {
      // YAML reads `true`, `80` or an empty value unquoted; Kubernetes would reject those, we do too.
      if (typeof val !== 'string') this.fail(join(path, k), `expected a string value, got ${describe(val)} (quote it)`);
      out[k] = val;
    }
    return out;
  }
}

/**
 * A JSON-shaped object: what JSON.parse or the YAML loader makes. A Map, Set, Date or typed array
 * (from an embedder, or a YAML tag) has no own enumerable fields, so reading one as an object saw an
 * empty selector (attack finding 875).
 */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

export function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

export function join(path: string, key: string): string {
  const k = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
  if (path === '') return k;
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}.${key}` : `${path}[${k}]`;
}

export function at(path: string, i: number): string {
  return `${path}[${i}]`;
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object' && !isPlainObject(v)) return `a ${v.constructor?.name ?? 'non-JSON'} object`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}
