/**
 * Traces of DMA streams: a compact binary format for machines, JSON lines for
 * people, streaming readers and writers for both, a converter, and recording
 * of any generator (a recorded stream replays record for record).
 *
 * Binary (`.smtr`), version 1. All fields little-endian.
 *
 *   offset  bytes  field
 *   0       4      magic "SMTR" (53 4d 54 52)
 *   4       2      version: 1
 *   6       2      flags: bit 0 = every record carries a size; other bits 0
 *   8       8      record count (u64), or 2^64 - 1 = unknown (records run to the end of the file;
 *                  a writer that was not closed leaves this)
 *   16      4      metadata length M (u32, at most 1 MiB)
 *   20      4      reserved: 0
 *   24      M      metadata: a UTF-8 JSON object (nothing when M = 0), e.g. the generator
 *                  configuration a trace was recorded from
 *   24 + M  ...    records, 13 bytes each (17 with sizes), back to back:
 *                    +0   8  va: int64, two's complement (upper-half VAs are negative), |va| < 2^53
 *                    +8   4  sid: u32, at most 2^31 - 1
 *                    +12  1  acc: 0 = read, 1 = write, 2 = exec
 *                    +13  4  size in bytes: u32 (only when flags bit 0 is set)
 *
 * JSON lines (`.jsonl`): an optional header line, then one record per line
 * (blank lines are skipped):
 *
 *   {"format":"smmu-trace/1","sizes":true,"meta":{...}}
 *   {"sid":5,"va":"0x100000040","acc":"r","size":64}
 *   {"sid":5,"va":"0xffffffffffe00000","acc":"w","size":64}
 *
 * `va` is "0x..." hex (an upper-half VA as its 64-bit two's complement, or
 * "-0x..."; a plain JSON integer is accepted too), `sid` a number (or
 * "0x..."), `acc` "r", "w" or "x", and `size` is present exactly when the
 * header says `"sizes": true`. Without a header line, the first record
 * decides whether records carry sizes. Writers always write the header, so
 * binary -> JSON lines -> binary is byte-identical for traces written here.
 *
 * Readers stream: the binary reader reads fixed-size chunks into one reused
 * buffer (fs.readSync), the JSON-lines reader reads 64 KiB chunks and keeps
 * at most one partial line. Malformed input is a TraceError naming the file
 * and the record (0-based, with its byte offset) or line (1-based).
 */

import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { ACC_LETTERS, createBatch, formatVa, parseVa, type Batch, type Source } from './batch.js';

export const TRACE_MAGIC = 'SMTR';
export const TRACE_VERSION = 1;
export const TRACE_FORMAT = 'smmu-trace/1';
export const TRACE_HEADER_BYTES = 24;
export const TRACE_FLAG_SIZES = 1;
export const TRACE_RECORD_BYTES = 13;
export const TRACE_RECORD_BYTES_SIZED = 17;
export const TRACE_MAX_META = 1 << 20;

const TWO32 = 4294967296;
const MAGIC_U32 = 0x52544d53; // "SMTR" read as a little-endian u32
const MAX_LINE = 1 << 20;

export type TraceFormat = 'binary' | 'jsonl';

export interface TraceHeader {
  /** Whether records carry a size. */
  sizes: boolean;
  /** Records announced by a binary header (null: unknown, and always for JSON lines). */
  count: number | null;
  /** The metadata object, if any. */
  meta: Record<string, unknown> | null;
}

export class TraceError extends Error {
  constructor(
    readonly file: string,
    /** "header", "record 12 (byte 180)", "line 3", or null for the file as a whole. */
    readonly where: string | null,
    readonly problem: string,
  ) {
    super(where === null ? `${file}: ${problem}` : `${file}: ${where}: ${problem}`);
    this.name = 'TraceError';
  }
}

/** The format of a trace file, from its extension. */
export function traceFormatOf(file: string): TraceFormat {
  const f = file.toLowerCase();
  if (f.endsWith('.smtr')) return 'binary';
  if (f.endsWith('.jsonl')) return 'jsonl';
  throw new TraceError(file, null, 'unknown trace format: expected a .smtr (binary) or .jsonl (JSON lines) file name');
}

function openOrThrow(file: string, flags: string): number {
  try {
    return openSync(file, flags);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a folder' : err.message;
    throw new TraceError(file, null, `cannot open: ${why}`);
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

// ------------------------------------------------------------------ readers

export interface TraceReader extends Source {
  readonly file: string;
  readonly format: TraceFormat;
  readonly header: TraceHeader;
  /** Records delivered so far. */
  readonly position: number;
  /** Releases the file (also done at the end of the trace and on an error). */
  close(): void;
}

export interface TraceReaderOptions {
  /** Bytes of the reused read buffer (default 64 KiB; at least one record). */
  bufferBytes?: number;
}

/** Streams a binary (.smtr) trace through one reused buffer. */
export class BinaryTraceReader implements TraceReader {
  readonly format = 'binary';
  readonly header: TraceHeader;
  readonly recordBytes: number;
  /** File offset of record 0. */
  readonly dataStart: number;
  private fd: number | null;
  private readonly buf: Uint8Array;
  private readonly dv: DataView;
  private lo = 0;
  private hi = 0;
  private filePos: number;
  private index = 0;

  constructor(
    readonly file: string,
    opts: TraceReaderOptions = {},
  ) {
    const fd = openOrThrow(file, 'r');
    this.fd = fd;
    try {
      const h = new Uint8Array(TRACE_HEADER_BYTES);
      const n = readFully(fd, h, 0, TRACE_HEADER_BYTES, 0);
      const hv = new DataView(h.buffer);
      if (n < 4 || hv.getUint32(0, true) !== MAGIC_U32) {
        const got = Array.from(h.subarray(0, Math.min(n, 4)), (b) => b.toString(16).padStart(2, '0')).join(' ');
        throw new TraceError(file, 'header', `bad magic: expected "SMTR" (53 4d 54 52), got ${n === 0 ? 'an empty file' : got}`);
      }
      if (n < TRACE_HEADER_BYTES) throw new TraceError(file, 'header', `truncated: ${n} of ${TRACE_HEADER_BYTES} bytes`);
      const version = hv.getUint16(4, true);
      if (version !== TRACE_VERSION) throw new TraceError(file, 'header', `unsupported version ${version} (this reader knows version ${TRACE_VERSION})`);
      const flags = hv.getUint16(6, true);
      if ((flags & ~TRACE_FLAG_SIZES) !== 0) throw new TraceError(file, 'header', `unknown flags 0x${flags.toString(16)} (only bit 0, sizes, is defined)`);
      const cLo = hv.getUint32(8, true);
      const cHi = hv.getUint32(12, true);
      let count: number | null;
      if (cLo === 0xffffffff && cHi === 0xffffffff) count = null;
      else if (cHi > 0x1fffff) throw new TraceError(file, 'header', `record count 0x${cHi.toString(16)}${cLo.toString(16).padStart(8, '0')} is too large`);
      else count = cHi * TWO32 + cLo;
      const metaLen = hv.getUint32(16, true);
      if (metaLen > TRACE_MAX_META) throw new TraceError(file, 'header', `metadata length ${metaLen} exceeds ${TRACE_MAX_META} bytes`);
      if (hv.getUint32(20, true) !== 0) throw new TraceError(file, 'header', 'reserved bytes 20..23 are not zero');
      let meta: Record<string, unknown> | null = null;
      if (metaLen > 0) {
        const m = new Uint8Array(metaLen);
        const got = readFully(fd, m, 0, metaLen, TRACE_HEADER_BYTES);
        if (got < metaLen) throw new TraceError(file, 'header', `metadata truncated: ${got} of ${metaLen} bytes`);
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(m));
        } catch (e) {
          throw new TraceError(file, 'header', `metadata is not UTF-8 JSON: ${(e as Error).message}`);
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          throw new TraceError(file, 'header', `metadata: expected a JSON object, got ${describe(parsed)}`);
        }
        meta = parsed as Record<string, unknown>;
      }
      const sizes = (flags & TRACE_FLAG_SIZES) !== 0;
      this.header = { sizes, count, meta };
      this.recordBytes = sizes ? TRACE_RECORD_BYTES_SIZED : TRACE_RECORD_BYTES;
      this.dataStart = TRACE_HEADER_BYTES + metaLen;
      this.filePos = this.dataStart;
      const want = Math.max(this.recordBytes, opts.bufferBytes ?? 1 << 16);
      this.buf = new Uint8Array(Math.floor(want / this.recordBytes) * this.recordBytes);
      this.dv = new DataView(this.buf.buffer);
    } catch (e) {
      closeSync(fd);
      this.fd = null;
      throw e;
    }
  }

  get position(): number {
    return this.index;
  }

  /** Buffer size in bytes (a multiple of the record size). */
  get bufferBytes(): number {
    return this.buf.length;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private where(index: number): string {
    return `record ${index} (byte ${this.dataStart + index * this.recordBytes})`;
  }

  private fault(index: number, problem: string): TraceError {
    this.close();
    return new TraceError(this.file, this.where(index), problem);
  }

  /** Moves the unread bytes to the front and reads more after them; false at the end of the file. */
  private refill(): boolean {
    const left = this.hi - this.lo;
    if (this.lo > 0) {
      this.buf.copyWithin(0, this.lo, this.hi);
      this.lo = 0;
      this.hi = left;
    }
    const n = readSync(this.fd!, this.buf, this.hi, this.buf.length - this.hi, this.filePos);
    this.filePos += n;
    this.hi += n;
    return n > 0;
  }

  fill(b: Batch): number {
    let i = 0;
    if (this.fd === null) {
      b.count = 0;
      return 0;
    }
    const rb = this.recordBytes;
    const cap = b.capacity;
    const sized = this.header.sizes;
    const count = this.header.count;
    const dv = this.dv;
    const buf = this.buf;
    while (i < cap) {
      if (count !== null && this.index === count) {
        // Everything announced was read: there must be nothing after it.
        if (this.hi > this.lo || readSync(this.fd, new Uint8Array(1), 0, 1, this.filePos) > 0) {
          throw this.fault(count, `trailing data after the ${count} records the header announces`);
        }
        this.close();
        break;
      }
      if (this.hi - this.lo < rb) {
        if (!this.refill()) {
          const left = this.hi - this.lo;
          if (left > 0) throw this.fault(this.index, `truncated: ${left} of ${rb} bytes`);
          if (count !== null) throw this.fault(this.index, `missing: the header announces ${count} records, the file ends after ${this.index}`);
          this.close();
          break;
        }
        continue;
      }
      let o = this.lo;
      const hi = this.hi;
      let idx = this.index;
      const stop = count === null ? Infinity : count;
      while (i < cap && hi - o >= rb && idx < stop) {
        const vlo = dv.getUint32(o, true);
        const vhi = dv.getInt32(o + 4, true);
        const sid = dv.getInt32(o + 8, true);
        const acc = buf[o + 12]!;
        if (vhi > 0x1fffff || vhi < -0x200000 || (vhi === -0x200000 && vlo === 0)) {
          throw this.fault(idx, `va 0x${(vhi >>> 0).toString(16).padStart(8, '0')}${vlo.toString(16).padStart(8, '0')} is not below 2^53 in magnitude`);
        }
        if (sid < 0) throw this.fault(idx, `sid ${sid >>> 0} exceeds 2^31 - 1`);
        if (acc > 2) throw this.fault(idx, `acc ${acc}: expected 0 (read), 1 (write) or 2 (exec)`);
        b.va[i] = vhi * TWO32 + vlo;
        b.sid[i] = sid;
        b.acc[i] = acc;
        b.size[i] = sized ? dv.getUint32(o + 13, true) : 0;
        o += rb;
        i++;
        idx++;
      }
      this.lo = o;
      this.index = idx;
    }
    b.count = i;
    return i;
  }
}

function readFully(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

const RECORD_KEYS = ['sid', 'va', 'acc', 'size'];
const HEADER_KEYS = ['format', 'sizes', 'meta'];

/** Streams a JSON-lines (.jsonl) trace, 64 KiB at a time. */
export class JsonlTraceReader implements TraceReader {
  readonly format = 'jsonl';
  readonly header: TraceHeader;
  private fd: number | null;
  private readonly buf: Uint8Array;
  private readonly decoder = new StringDecoder('utf8');
  private lines: string[] = [];
  private li = 0;
  private carry = '';
  private eof = false;
  /** Number of the line last taken (1-based). */
  private lineNo = 0;
  private index = 0;
  /** A first line that turned out to be a record (no header line). */
  private pushedBack: string | null = null;

  constructor(
    readonly file: string,
    opts: TraceReaderOptions = {},
  ) {
    this.fd = openOrThrow(file, 'r');
    this.buf = new Uint8Array(Math.max(256, opts.bufferBytes ?? 1 << 16));
    try {
      let first: string | null;
      do first = this.nextLine();
      while (first !== null && first.trim() === '');
      if (first === null) {
        this.header = { sizes: false, count: null, meta: null };
        return;
      }
      const o = this.parseObject(first);
      if ('format' in o) {
        for (const k of Object.keys(o)) if (!HEADER_KEYS.includes(k)) throw this.fault(`header: unknown key "${k}" (expected ${HEADER_KEYS.join(', ')})`);
        if (o.format !== TRACE_FORMAT) throw this.fault(`header: format: expected "${TRACE_FORMAT}", got ${describe(o.format)}`);
        if (o.sizes !== undefined && typeof o.sizes !== 'boolean') throw this.fault(`header: sizes: expected true or false, got ${describe(o.sizes)}`);
        if (o.meta !== undefined && (typeof o.meta !== 'object' || o.meta === null || Array.isArray(o.meta))) {
          throw this.fault(`header: meta: expected an object, got ${describe(o.meta)}`);
        }
        this.header = { sizes: o.sizes === true, count: null, meta: (o.meta as Record<string, unknown> | undefined) ?? null };
      } else {
        this.header = { sizes: 'size' in o, count: null, meta: null };
        this.pushedBack = first;
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  get position(): number {
    return this.index;
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private fault(problem: string): TraceError {
    this.close();
    return new TraceError(this.file, `line ${this.lineNo}`, problem);
  }

  /** The next line (without its end of line), or null at the end of the file. */
  private nextLine(): string | null {
    for (;;) {
      if (this.li < this.lines.length) {
        this.lineNo++;
        const l = this.lines[this.li++]!;
        return l.endsWith('\r') ? l.slice(0, -1) : l;
      }
      if (this.eof) return null;
      const n = this.fd === null ? 0 : readSync(this.fd, this.buf, 0, this.buf.length, null);
      let text: string;
      if (n === 0) {
        this.eof = true;
        text = this.carry + this.decoder.end();
        this.carry = '';
        this.lines = text.length > 0 ? [text] : [];
      } else {
        text = this.carry + this.decoder.write(this.buf.subarray(0, n));
        const parts = text.split('\n');
        this.carry = parts.pop()!;
        if (this.carry.length > MAX_LINE) {
          this.lineNo += parts.length + 1;
          throw this.fault(`longer than ${MAX_LINE} characters`);
        }
        this.lines = parts;
      }
      this.li = 0;
    }
  }

  private parseObject(line: string): Record<string, unknown> {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw this.fault(`not JSON: ${(e as Error).message}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.fault(`expected an object like {"sid": 5, "va": "0x1000", "acc": "r"}, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }

  fill(b: Batch): number {
    let i = 0;
    const cap = b.capacity;
    while (i < cap) {
      let line: string | null;
      if (this.pushedBack !== null) {
        line = this.pushedBack;
        this.pushedBack = null;
      } else {
        line = this.nextLine();
      }
      if (line === null) {
        this.close();
        break;
      }
      if (line.trim() === '') continue;
      this.parseRecord(line, b, i);
      i++;
      this.index++;
    }
    b.count = i;
    return i;
  }

  private parseRecord(line: string, b: Batch, i: number): void {
    const o = this.parseObject(line);
    for (const k of Object.keys(o)) {
      if (!RECORD_KEYS.includes(k)) throw this.fault(`unknown key "${k}" (expected sid, va, acc${this.header.sizes ? ', size' : ''})`);
    }
    const sv = o.sid;
    let sid: number | undefined;
    if (typeof sv === 'number' && Number.isInteger(sv)) sid = sv;
    else if (typeof sv === 'string' && /^0x[0-9a-fA-F]{1,8}$/.test(sv)) sid = parseInt(sv.slice(2), 16);
    if (sid === undefined || sid < 0 || sid > 0x7fffffff) throw this.fault(`sid: expected an integer from 0 to 2147483647 (or "0x..."), got ${describe(sv)}`);
    const vv = o.va;
    let va: number | undefined;
    if (typeof vv === 'string') va = parseVa(vv);
    else if (typeof vv === 'number' && Number.isSafeInteger(vv)) va = vv;
    if (va === undefined) {
      throw this.fault(`va: expected "0x..." hex (at most 16 digits; bit 63 set or "-0x..." for an upper-half VA) below 2^53 in magnitude, got ${describe(vv)}`);
    }
    const a = o.acc;
    const acc = a === 'r' ? 0 : a === 'w' ? 1 : a === 'x' ? 2 : -1;
    if (acc < 0) throw this.fault(`acc: expected "r", "w" or "x", got ${describe(a)}`);
    let size = 0;
    if (this.header.sizes) {
      const z = o.size;
      if (typeof z !== 'number' || !Number.isInteger(z) || z < 0 || z > 0xffffffff) {
        throw this.fault(`size: expected an integer from 0 to 4294967295${z === undefined ? ' (the trace has sizes)' : ''}, got ${describe(z)}`);
      }
      size = z;
    } else if (o.size !== undefined) {
      throw this.fault('size: not expected: records of this trace carry no size (the header or the first record says so)');
    }
    b.sid[i] = sid;
    b.va[i] = va;
    b.acc[i] = acc;
    b.size[i] = size;
  }
}

/** Opens a trace for streaming; the format comes from the extension (.smtr or .jsonl). */
export function openTraceReader(file: string, opts: TraceReaderOptions = {}): TraceReader {
  return traceFormatOf(file) === 'binary' ? new BinaryTraceReader(file, opts) : new JsonlTraceReader(file, opts);
}

// ------------------------------------------------------------------ writers

export interface TraceWriterOptions {
  /** Whether records carry sizes (default true). */
  sizes?: boolean;
  /** A JSON-able object stored in the header. */
  meta?: Record<string, unknown> | null;
}

export interface TraceWriter {
  readonly file: string;
  readonly format: TraceFormat;
  /** Records written so far. */
  readonly count: number;
  /** Writes records [from, to) of the batch (default: all it holds). */
  write(b: Batch, from?: number, to?: number): void;
  /** Flushes, completes the header, and closes. */
  close(): void;
  /** Closes and deletes the file (after a failure). */
  abort(): void;
}

function checkRecord(file: string, index: number, sid: number, va: number, acc: number): void {
  if (!Number.isSafeInteger(va)) throw new TraceError(file, `record ${index}`, `va ${va} is not an integer below 2^53 in magnitude`);
  if (!(sid >= 0 && sid <= 0x7fffffff)) throw new TraceError(file, `record ${index}`, `sid ${sid} is not from 0 to 2^31 - 1`);
  if (!(acc <= 2)) throw new TraceError(file, `record ${index}`, `acc ${acc} is not 0, 1 or 2`);
}

export class BinaryTraceWriter implements TraceWriter {
  readonly format = 'binary';
  readonly sizes: boolean;
  private fd: number | null;
  private readonly buf: Uint8Array;
  private readonly dv: DataView;
  private used = 0;
  private n = 0;
  private readonly recordBytes: number;

  constructor(
    readonly file: string,
    opts: TraceWriterOptions = {},
  ) {
    this.sizes = opts.sizes ?? true;
    this.recordBytes = this.sizes ? TRACE_RECORD_BYTES_SIZED : TRACE_RECORD_BYTES;
    const meta = opts.meta ?? null;
    const metaBytes = meta === null ? new Uint8Array(0) : new TextEncoder().encode(JSON.stringify(meta));
    if (metaBytes.length > TRACE_MAX_META) throw new TraceError(file, 'header', `metadata of ${metaBytes.length} bytes exceeds ${TRACE_MAX_META}`);
    this.fd = openOrThrow(file, 'w');
    const h = new Uint8Array(TRACE_HEADER_BYTES);
    const hv = new DataView(h.buffer);
    hv.setUint32(0, MAGIC_U32, true);
    hv.setUint16(4, TRACE_VERSION, true);
    hv.setUint16(6, this.sizes ? TRACE_FLAG_SIZES : 0, true);
    hv.setUint32(8, 0xffffffff, true); // unknown until close()
    hv.setUint32(12, 0xffffffff, true);
    hv.setUint32(16, metaBytes.length, true);
    writeSync(this.fd, h);
    if (metaBytes.length > 0) writeSync(this.fd, metaBytes);
    this.buf = new Uint8Array(Math.floor((1 << 16) / this.recordBytes) * this.recordBytes);
    this.dv = new DataView(this.buf.buffer);
  }

  get count(): number {
    return this.n;
  }

  write(b: Batch, from = 0, to = b.count): void {
    if (this.fd === null) throw new TraceError(this.file, null, 'write after close');
    const rb = this.recordBytes;
    const dv = this.dv;
    for (let i = from; i < to; i++) {
      const va = b.va[i]!;
      const sid = b.sid[i]!;
      const acc = b.acc[i]!;
      checkRecord(this.file, this.n, sid, va, acc);
      if (this.used + rb > this.buf.length) this.flush();
      const o = this.used;
      const vhi = Math.floor(va / TWO32);
      dv.setUint32(o, va - vhi * TWO32, true);
      dv.setInt32(o + 4, vhi, true);
      dv.setUint32(o + 8, sid, true);
      dv.setUint8(o + 12, acc);
      if (this.sizes) dv.setUint32(o + 13, b.size[i]!, true);
      this.used = o + rb;
      this.n++;
    }
  }

  private flush(): void {
    if (this.used > 0) writeSync(this.fd!, this.buf, 0, this.used);
    this.used = 0;
  }

  close(): void {
    if (this.fd === null) return;
    this.flush();
    const c = new Uint8Array(8);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, this.n % TWO32, true);
    cv.setUint32(4, Math.floor(this.n / TWO32), true);
    writeSync(this.fd, c, 0, 8, 8);
    closeSync(this.fd);
    this.fd = null;
  }

  abort(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
    try {
      unlinkSync(this.file);
    } catch {
      /* already gone */
    }
  }
}

export class JsonlTraceWriter implements TraceWriter {
  readonly format = 'jsonl';
  readonly sizes: boolean;
  private fd: number | null;
  private pending = '';
  private n = 0;

  constructor(
    readonly file: string,
    opts: TraceWriterOptions = {},
  ) {
    this.sizes = opts.sizes ?? true;
    const header: Record<string, unknown> = { format: TRACE_FORMAT, sizes: this.sizes };
    if (opts.meta) header.meta = opts.meta;
    this.fd = openOrThrow(file, 'w');
    this.pending = JSON.stringify(header) + '\n';
  }

  get count(): number {
    return this.n;
  }

  write(b: Batch, from = 0, to = b.count): void {
    if (this.fd === null) throw new TraceError(this.file, null, 'write after close');
    for (let i = from; i < to; i++) {
      const va = b.va[i]!;
      const sid = b.sid[i]!;
      const acc = b.acc[i]!;
      checkRecord(this.file, this.n, sid, va, acc);
      this.pending +=
        `{"sid":${sid},"va":"${formatVa(va)}","acc":"${ACC_LETTERS[acc]}"` + (this.sizes ? `,"size":${b.size[i]}}\n` : '}\n');
      this.n++;
      if (this.pending.length >= 1 << 16) this.flush();
    }
  }

  private flush(): void {
    if (this.pending.length > 0) writeSync(this.fd!, this.pending);
    this.pending = '';
  }

  close(): void {
    if (this.fd === null) return;
    this.flush();
    closeSync(this.fd);
    this.fd = null;
  }

  abort(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
    try {
      unlinkSync(this.file);
    } catch {
      /* already gone */
    }
  }
}

/** Creates a trace; the format comes from the extension (.smtr or .jsonl). */
export function openTraceWriter(file: string, opts: TraceWriterOptions = {}): TraceWriter {
  return traceFormatOf(file) === 'binary' ? new BinaryTraceWriter(file, opts) : new JsonlTraceWriter(file, opts);
}

// ------------------------------------------------------------------ conversion and recording

/** Copies every record from a source into a writer; on an error the output file is deleted. */
function pump(src: Source, w: TraceWriter, limit: number, batchSize: number): number {
  const b = createBatch(Math.max(1, Math.min(batchSize, limit === Infinity ? batchSize : limit)));
  try {
    while (w.count < limit) {
      const n = src.fill(b);
      if (n === 0) break;
      w.write(b, 0, Math.min(n, limit - w.count));
    }
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.count;
}

/** Converts a trace between the binary and JSON-lines forms (formats from the extensions). Returns the record count. */
export function convertTrace(inFile: string, outFile: string, opts: TraceReaderOptions = {}): number {
  if (resolve(inFile) === resolve(outFile)) throw new TraceError(outFile, null, 'the output would overwrite the input');
  traceFormatOf(outFile);
  const r = openTraceReader(inFile, opts);
  try {
    const w = openTraceWriter(outFile, { sizes: r.header.sizes, meta: r.header.meta });
    return pump(r, w, Infinity, 4096);
  } finally {
    r.close();
  }
}

export interface RecordOptions extends TraceWriterOptions {
  /** Records to write (required for generators, which never end). */
  count: number;
  /** Records pulled per fill (default 4096); the stream does not depend on it. */
  batchSize?: number;
}

/**
 * Records the first `count` records of a source (a generator, or another
 * trace) into a trace file. Reading it back gives the same records in the
 * same order. Returns the number written (fewer only if the source ends).
 */
export function recordTrace(src: Source, file: string, opts: RecordOptions): number {
  if (!Number.isSafeInteger(opts.count) || opts.count < 0) throw new TraceError(file, null, `count: expected a non-negative integer, got ${String(opts.count)}`);
  const w = openTraceWriter(file, opts);
  return pump(src, w, opts.count, opts.batchSize ?? 4096);
}

// ------------------------------------------------------------------ statistics

export interface StreamInfo {
  sid: number;
  count: number;
  r: number;
  w: number;
  x: number;
  /** Distinct 4 KiB pages touched (with sizes: every page a record spans). */
  pages: number;
  vaMin: number;
  vaMax: number;
  /** Sum of sizes (0 without sizes). */
  bytes: number;
}

export interface TraceInfo {
  file: string;
  format: TraceFormat;
  sizes: boolean;
  meta: Record<string, unknown> | null;
  count: number;
  r: number;
  w: number;
  x: number;
  bytes: number;
  /** Sum over streams of distinct 4 KiB pages (each stream is its own address space). */
  footprintPages: number;
  streams: StreamInfo[];
}

/** Reads a whole trace (streaming) and summarizes it. */
export function traceInfo(file: string, opts: TraceReaderOptions = {}): TraceInfo {
  const r = openTraceReader(file, opts);
  const b = createBatch(4096);
  const per = new Map<number, { info: StreamInfo; pages: Set<number> }>();
  try {
    for (;;) {
      const n = r.fill(b);
      if (n === 0) break;
      for (let i = 0; i < n; i++) {
        const sid = b.sid[i]!;
        let s = per.get(sid);
        if (s === undefined) {
          s = { info: { sid, count: 0, r: 0, w: 0, x: 0, pages: 0, vaMin: Infinity, vaMax: -Infinity, bytes: 0 }, pages: new Set() };
          per.set(sid, s);
        }
        const st = s.info;
        const va = b.va[i]!;
        const size = b.size[i]!;
        st.count++;
        const acc = b.acc[i]!;
        if (acc === 0) st.r++;
        else if (acc === 1) st.w++;
        else st.x++;
        if (va < st.vaMin) st.vaMin = va;
        const last = size > 0 ? va + size - 1 : va;
        if (last > st.vaMax) st.vaMax = last;
        st.bytes += size;
        const p0 = Math.floor(va / 4096);
        const p1 = Math.floor(last / 4096);
        for (let p = p0; p <= p1; p++) s.pages.add(p);
      }
    }
  } finally {
    r.close();
  }
  const streams = [...per.values()].map((s) => ({ ...s.info, pages: s.pages.size })).sort((a, b2) => a.sid - b2.sid);
  const sum = (k: 'count' | 'r' | 'w' | 'x' | 'bytes' | 'pages'): number => streams.reduce((a, s) => a + s[k], 0);
  return {
    file,
    format: r.format,
    sizes: r.header.sizes,
    meta: r.header.meta,
    count: sum('count'),
    r: sum('r'),
    w: sum('w'),
    x: sum('x'),
    bytes: sum('bytes'),
    footprintPages: sum('pages'),
    streams,
  };
}
