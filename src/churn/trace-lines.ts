/** A trace's text, line by line: `next` is the index of the next newline from `from` (-1: none). */
export class TextLines {
  constructor(private readonly text: string) {}
  get length(): number {
    return this.text.length;
  }
  next(from: number): number {
    return this.text.indexOf('\n', from);
  }
  slice(start: number, end: number): string {
    return this.text.slice(start, end);
  }
  /** Lines as `split('\n')` counts them. */
  count(): number {
    let n = 1;
    for (let at = this.next(0); at >= 0; at = this.next(at + 1)) n++;
    return n;
  }
}

/** The same over UTF-8 bytes (a leading byte-order mark skipped, as TextDecoder does). */
export class ByteLines extends TextLines {
  readonly #bytes: Buffer;
  constructor(bytes: Uint8Array) {
    super('');
    const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
    this.#bytes = Buffer.from(bytes.buffer, bytes.byteOffset + bom, bytes.byteLength - bom);
  }
  override get length(): number {
    return this.#bytes.length;
  }
  override next(from: number): number {
    return this.#bytes.indexOf(0x0a, from);
  }
  override slice(start: number, end: number): string {
    return this.#bytes.toString('utf8', start, end);
  }
}
