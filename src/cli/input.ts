import { closeSync, openSync, readdirSync, readSync, realpathSync, statSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { join } from 'node:path';

/**
 * Every file the CLI reads goes through here: a size cap (a trace of the largest shipped profile
 * at --scale 5 is ~80 MB; the default leaves 3x room), chunked reads that stop at the cap (so
 * /dev/zero or a FIFO cannot grow the heap without bound), and file-system errors turned into
 * messages that name the path.
 */
export const DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024;
/** V8's longest string (2^29 - 24 UTF-16 units): a larger input could not be decoded at all. */
const MAX_INPUT_BYTES_LIMIT = 0x1fffffe8;
const CHUNK = 1 << 16;

/** Bad input the CLI reports with exit 2: a missing, unreadable, oversized or looping path. */
export class InputError extends Error {
  override readonly name = 'InputError';
}

const ERRNO_TEXT: ReadonlyMap<string, string> = new Map([
  ['ENOENT', 'no such file or directory'],
  ['EACCES', 'permission denied'],
  ['EPERM', 'operation not permitted'],
  ['EISDIR', 'is a directory'],
  ['ENOTDIR', 'a component of the path is not a directory'],
  ['ELOOP', 'too many levels of symbolic links (a symlink loop)'],
  ['ENAMETOOLONG', 'file name too long'],
  ['ENXIO', 'no such device or address'],
  ['EMFILE', 'too many open files'],
]);

function errnoCode(e: unknown): string | undefined {
  const code: unknown = e instanceof Error ? (e as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** Runs a file-system call; an errno failure becomes an InputError naming the path. */
function fsCall<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const code = errnoCode(e);
    if (code === undefined) throw e;
    throw new InputError(`${path}: ${ERRNO_TEXT.get(code) ?? (e as Error).message}`);
  }
}

/** Parses `--max-input-bytes`: a positive integer, optionally with a k/M/G (binary) suffix. */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+)\s*([kKmMgG]i?[bB]?)?\s*$/.exec(text);
  const unit = m?.[2]?.[0]?.toLowerCase();
  const n = m ? Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_INPUT_BYTES_LIMIT) {
    throw new InputError(`--max-input-bytes: "${text}" is not a size from 1 to ${MAX_INPUT_BYTES_LIMIT} bytes (e.g. 1048576, 512k, 64M)`);
  }
  return n;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Reads fd to its end, refusing more than maxBytes. A non-blocking fd (stdin) is polled. */
function readBounded(fd: number, name: string, maxBytes: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes + 1 - total));
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (errnoCode(e) === 'EAGAIN') {
        sleepMs(5);
        continue;
      }
      throw e;
    }
    if (n === 0) return Buffer.concat(chunks, total);
    total += n;
    if (total > maxBytes) tooBig(name, maxBytes);
    chunks.push(buf.subarray(0, n));
  }
}

function tooBig(name: string, maxBytes: number): never {
  throw new InputError(`${name}: larger than the input limit of ${maxBytes} bytes (raise it with --max-input-bytes)`);
}

/**
 * UTF-8, or UTF-16 after its byte order mark: kubectl reads a file through
 * `unicode.BOMOverride(unicode.UTF8.NewDecoder())` (k8s.io/cli-runtime pkg/resource/visitor.go
 * `FileVisitor.Visit`), so the UTF-16LE file Windows PowerShell writes for `kubectl get -o yaml > f`
 * applies (attack finding 2472). Text kubectl would read with U+FFFD in place of bad bytes is refused.
 */
function decode(bytes: Buffer, name: string): string {
  const utf16 = bytes[0] === 0xff && bytes[1] === 0xfe ? 'utf-16le' : bytes[0] === 0xfe && bytes[1] === 0xff ? 'utf-16be' : undefined;
  try {
    // The decoder drops the byte order mark.
    return new TextDecoder(utf16 ?? 'utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InputError(`${name}: is not ${utf16 === undefined ? 'UTF-8' : 'UTF-16'} text`);
  }
}

/** The text of a file (or of stdin for `-`), at most maxBytes long. */
export function readInputText(path: string, maxBytes: number = DEFAULT_MAX_INPUT_BYTES): string {
  const name = path === '-' ? '<stdin>' : path;
  return decode(readRaw(path, name, maxBytes), name);
}

/** The same as bytes checked to be UTF-8 (outside the JS heap: for a reader that decodes line by line). */
export function readInputUtf8(path: string, maxBytes: number = DEFAULT_MAX_INPUT_BYTES): Buffer {
  const name = path === '-' ? '<stdin>' : path;
  const bytes = readRaw(path, name, maxBytes);
  if (!isUtf8(bytes)) throw new InputError(`${name}: is not UTF-8 text`);
  return bytes;
}

function readRaw(path: string, name: string, maxBytes: number): Buffer {
  if (path === '-') return fsCall(name, () => readBounded(0, name, maxBytes));
  const st = fsCall(path, () => statSync(path));
  if (st.isDirectory()) throw new InputError(`${path}: is a directory, not a file`);
  if (st.isSocket()) throw new InputError(`${path}: is a socket, not a file`);
  if (st.isFile() && st.size > maxBytes) tooBig(path, maxBytes);
  const fd = fsCall(path, () => openSync(path, 'r'));
  try {
    return fsCall(path, () => readBounded(fd, path, maxBytes));
  } finally {
    closeSync(fd);
  }
}

/**
 * The files named by paths: files as given, directories walked in sorted order for the files
 * `wanted` accepts. A symlink that leads back to a directory being walked is an error naming it;
 * a directory reached twice by other routes is walked once.
 */
export function collectFiles(paths: readonly string[], wanted: (file: string) => boolean): string[] {
  const files: string[] = [];
  const visited = new Set<string>();
  const walk = (p: string, ancestors: ReadonlyMap<string, string>, top: boolean): void => {
    if (top && p === '-') {
      files.push(p);
      return;
    }
    const st = fsCall(p, () => statSync(p));
    if (!st.isDirectory()) {
      if (top || wanted(p)) files.push(p);
      return;
    }
    const real = fsCall(p, () => realpathSync(p));
    const loopsTo = ancestors.get(real);
    if (loopsTo !== undefined) throw new InputError(`${p}: symbolic link loop: leads back to ${loopsTo}`);
    if (visited.has(real)) return;
    visited.add(real);
    const inner = new Map(ancestors).set(real, p);
    for (const entry of fsCall(p, () => readdirSync(p)).sort()) walk(join(p, entry), inner, false);
  };
  for (const p of paths) walk(p, new Map(), true);
  return files;
}

/**
 * Stdin can be read once: a second `-` (also `--scenario -` with `-f -`) read nothing, so the manifests
 * the user piped in were silently left out (attack finding 1543).
 */
export function checkStdinOnce(paths: readonly string[]): void {
  const n = paths.filter((p) => p === '-').length;
  if (n > 1) throw new InputError(`- (stdin) is given ${n} times: stdin can be read once; give the other inputs as files`);
}

/** How a path is named in messages: `-` is stdin. */
export const inputName = (path: string): string => (path === '-' ? '<stdin>' : path);

export const isYamlFile = (f: string): boolean => /\.ya?ml$/.test(f);
