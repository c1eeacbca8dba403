/**
 * The recorder: captures a run of an SMMU model as an `smmu-script/1` script, so that a scenario
 * (a driver's bring-up, an attach, a fault and its handling, an invalidation and its sync)
 * becomes a regression test in one step.
 *
 * An `SmmuRecorder` wraps an `Smmu` and is itself an `Mmio`, so a driver runs on top of it:
 *
 *   const rec = new SmmuRecorder(smmu, { name: 'attach-and-dma' });
 *   const drv = new ArmSmmuDriver(rec);              // every register access is recorded
 *   rec.on('contextFault', (cb) => drv.contextFaultIrq(cb));
 *   drv.probe(); drv.reset(); ...
 *   rec.dma(0x10, 0x10_1234, 'w', false);            // recorded with its outcome
 *   writeFileSync('attach-and-dma.json', rec.text());
 *
 * What is recorded:
 * - every register access made through it: w32/w64 with the value, r32/r64 with the value read
 *   as the expectation (exact, no mask). Reads of TLBSTATUS, sTLBGSTATUS and ATSR that find
 *   ACTIVE set are left out: a replay repeats those reads until ACTIVE clears.
 * - every `dma` with its outcome, and every `pending` with the outcome then; stall tags are
 *   renumbered 1, 2, ... in the order the transactions first stalled, and a `pending` step uses
 *   the same number as the `dma` that stalled it. Interrupt handlers run while the model delivers
 *   a transaction's interrupts; their register accesses come after the `dma` step, as in a replay.
 * - memory: every 64-bit word a table walk reads (found by watching the walker's address
 *   lookups on the model's memory while the model runs) and every word of the ranges named in
 *   `watch`. `memory` holds their values when first seen (zero words are left out, as the format
 *   reads unlisted memory as zero); a later change to one of them becomes a `mem` step, placed
 *   before the first register access or transaction after the change, so that changes keep
 *   their order relative to TLB maintenance. `mem(pa, value)` writes a word and records the
 *   change explicitly. Words no walk has read yet cannot matter to a replay (no cache can hold
 *   anything made from them), so their value when first read serves as their initial value.
 *
 * What cannot be expressed is not recorded, and says why in `warnings`: register accesses
 * outside the register space or misaligned (the model ignores them), a `pending` for a
 * transaction that stalled before recording started, and walk reads of unbacked memory (an
 * external abort here, a zero read in a replay).
 *
 * A recording reproduces the run on the caching configuration it was made with (`--caches` of
 * the replay); on another one it holds wherever the software did its TLB maintenance.
 */

import { writeFileSync } from 'node:fs';
import type { Mmio } from '../driver/arm-smmu.js';
import type { PhysMem } from '../memory/phys.js';
import type { Access, DmaOutcome, Smmu, SmmuEvents } from '../smmu/smmu.js';
import { isWaitRegister } from './script.js';

export class RecorderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecorderError';
  }
}

export interface RecorderOptions {
  /** The script's name (a replay reports it; by convention the file name without .json). Default 'recorded'. */
  name?: string;
  /** Physical ranges to snapshot now and watch for changes, besides the words walks read. Each must lie in one RAM region. */
  watch?: Array<{ base: number; size: number }>;
}

/** One step as the script writes it. */
export type RecordedStep = Record<string, unknown>;

/** An smmu-script/1 document. */
export interface RecordedScript {
  format: 'smmu-script/1';
  name: string;
  id: { ID0: string; ID1: string; ID2: string };
  memory: Array<[string, string]>;
  steps: RecordedStep[];
}

function hex(v: bigint | number, digits = 0): string {
  return '0x' + BigInt(v).toString(16).padStart(digits, '0');
}

/** A number converts as the model's write64 does: truncated, NaN and infinities as 0. */
function toU64(v: bigint | number): bigint {
  return BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(Number.isFinite(v) ? Math.trunc(v) : 0));
}

interface Watched {
  base: number;
  size: number;
  /** The arena offset of `base`. */
  off: number;
  /** The range as the replay's memory holds it now. */
  snap: Buffer;
}

export class SmmuRecorder implements Mmio {
  readonly smmu: Smmu;
  readonly name: string;
  /** What could not be recorded, and why. */
  readonly warnings: string[] = [];

  /** Steps; a dma step's slot is reserved before the transaction runs (its interrupt handlers' accesses come after it). */
  private readonly steps: Array<RecordedStep | null> = [];
  /** The script's `memory`: words by physical address, as first seen. */
  private readonly initial = new Map<number, bigint>();
  /** Words the replay's memory holds now (outside the watched ranges), by physical address. */
  private readonly known = new Map<number, bigint>();
  private readonly watched: Watched[] = [];
  /** Model tag -> script tag. */
  private readonly tags = new Map<number, number>();
  private nextTag = 1;
  private depth = 0;
  private readonly offsetOf: (pa: number) => number;
  private savedOwnOffsetOf: PropertyDescriptor | undefined;

  constructor(smmu: Smmu, opts: RecorderOptions = {}) {
    this.smmu = smmu;
    this.name = opts.name ?? 'recorded';
    if (this.name === '') throw new RecorderError('a script name must not be empty');
    const mem = smmu.mem;
    // The memory's own lookup, which the recorder's own reads use (never the watching one).
    const lookup = (Object.getOwnPropertyDescriptor(mem, 'offsetOf')?.value as PhysMem['offsetOf'] | undefined) ?? Object.getPrototypeOf(mem).offsetOf;
    this.offsetOf = (pa: number) => lookup.call(mem, pa) as number;
    for (const w of opts.watch ?? []) this.watch(w.base, w.size);
  }

  // ---------------------------------------------------------------- the register interface

  read32(off: number): number {
    this.flush();
    const v = this.model(() => this.smmu.read32(off)) >>> 0;
    if (this.recordable(off, 4, 'r32') && !(isWaitRegister(this.smmu.features, off) && (v & 1) !== 0)) {
      this.steps.push({ op: 'r32', at: hex(off), expect: hex(v, 8) });
    }
    return v;
  }

  read64(off: number): bigint {
    this.flush();
    const v = this.model(() => this.smmu.read64(off));
    if (this.recordable(off, 8, 'r64') && !(isWaitRegister(this.smmu.features, off) && (v & 1n) !== 0n)) {
      this.steps.push({ op: 'r64', at: hex(off), expect: hex(v, 16) });
    }
    return v;
  }

  write32(off: number, value: number): void {
    this.flush();
    const v = value >>> 0;
    if (this.recordable(off, 4, 'w32')) this.steps.push({ op: 'w32', at: hex(off), value: hex(v, 8) });
    this.model(() => this.smmu.write32(off, v));
  }

  write64(off: number, value: bigint | number): void {
    this.flush();
    const v = toU64(value);
    if (this.recordable(off, 8, 'w64')) this.steps.push({ op: 'w64', at: hex(off), value: hex(v, 16) });
    this.model(() => this.smmu.write64(off, v));
  }

  // ---------------------------------------------------------------- transactions and memory

  /** One transaction, as `Smmu.dma` (a TTBR1-half `va` is negative), recorded with its outcome. */
  dma(sid: number, va: number, acc: Access, priv: boolean): DmaOutcome {
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new RecorderError(`dma: stream ID ${sid} is not an integer in 0..0xffff (what smmu-script/1 can express)`);
    if (!Number.isSafeInteger(va)) throw new RecorderError(`dma: input address ${va} is not a safe integer`);
    if (acc !== 'r' && acc !== 'w' && acc !== 'x') throw new RecorderError(`dma: access ${JSON.stringify(acc)} is not "r", "w" or "x"`);
    this.flush();
    const slot = this.steps.length;
    this.steps.push(null);
    const o = this.model(() => this.smmu.dma(sid, va, acc, priv));
    this.steps[slot] = { op: 'dma', sid, va: hex(BigInt.asUintN(64, BigInt(va))), acc, priv: priv === true, expect: this.expect(o) };
    return o;
  }

  /** The outcome of a stalled transaction (`tag` is the model's, as `dma` returned it), recorded. */
  pending(tag: number): DmaOutcome | null {
    this.flush();
    const o = this.model(() => this.smmu.pending(tag));
    const s = this.tags.get(tag);
    if (o === null || s === undefined) {
      this.warn(`pending(${tag}): ${o === null ? 'no transaction has this tag' : 'this transaction did not stall in a recorded dma'}; not recorded`);
      return o;
    }
    this.steps.push({ op: 'pending', tag: s, expect: this.expect(o) });
    return o;
  }

  /** Writes a 64-bit word of memory (a page-table update) and records it as a `mem` step. */
  mem(pa: number, value: bigint | number): void {
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % 8 !== 0 || pa >= 2 ** 48) throw new RecorderError(`mem: ${pa} is not an 8-byte aligned physical address below 2^48`);
    this.flush();
    const v = toU64(value);
    this.smmu.mem.write64(pa, v);
    this.steps.push({ op: 'mem', at: hex(pa), value: hex(v, 16) });
    const w = this.watchedAt(pa);
    if (w !== undefined) this.readInto(w.snap, w.off + (pa - w.base), pa - w.base);
    else this.known.set(pa, v);
  }

  /** Snapshots [base, base+size) now and records later changes to it. */
  watch(base: number, size: number): void {
    const mem = this.smmu.mem;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0 || base % 8 !== 0 || size % 8 !== 0) {
      throw new RecorderError(`watch: [${base}, +${size}) must be 8-byte aligned with a positive size`);
    }
    if (!mem.isBacked(base, size)) throw new RecorderError(`watch: [${hex(base)}, ${hex(base + size)}) is not inside one RAM region`);
    this.flush();
    const off = this.offsetOf(base);
    const snap = Buffer.alloc(size);
    Buffer.from(mem.buffer, off, size).copy(snap);
    this.watched.push({ base, size, off, snap });
    // After the flush, words already known hold what memory holds now; the others have not been read
    // by a walk yet, so their value now serves as their initial value.
    for (let i = 0; i < size; i += 8) {
      const pa = base + i;
      const v = snap.readBigUInt64LE(i);
      if (!this.known.delete(pa) && !this.initial.has(pa) && v !== 0n) this.initial.set(pa, v);
    }
  }

  /** Subscribes to the model's interrupts (as `Smmu.on`). */
  on<K extends keyof SmmuEvents>(event: K, handler: SmmuEvents[K]): () => void {
    return this.smmu.on(event, handler);
  }

  // ---------------------------------------------------------------- the script

  /** The recording so far as an smmu-script/1 document. */
  script(): RecordedScript {
    this.flush();
    const f = this.smmu.features;
    const memory: Array<[string, string]> = [...this.initial.entries()]
      .filter(([, v]) => v !== 0n)
      .sort((a, b) => a[0] - b[0])
      .map(([pa, v]) => [hex(pa), hex(v, 16)]);
    return {
      format: 'smmu-script/1',
      name: this.name,
      id: { ID0: hex(f.id0 >>> 0, 8), ID1: hex(f.id1 >>> 0, 8), ID2: hex(f.id2 >>> 0, 8) },
      memory,
      steps: this.steps.filter((s): s is RecordedStep => s !== null),
    };
  }

  /** The document as text: one memory word and one step per line. */
  text(): string {
    const d = this.script();
    const list = (xs: unknown[]): string => (xs.length === 0 ? '[]' : `[\n${xs.map((x) => '    ' + JSON.stringify(x)).join(',\n')}\n  ]`);
    return (
      '{\n' +
      `  "format": ${JSON.stringify(d.format)},\n` +
      `  "name": ${JSON.stringify(d.name)},\n` +
      `  "id": ${JSON.stringify(d.id)},\n` +
      `  "memory": ${list(d.memory)},\n` +
      `  "steps": ${list(d.steps)}\n` +
      '}\n'
    );
  }

  /** Writes `text()` to `file`. */
  save(file: string): void {
    writeFileSync(file, this.text());
  }

  // ---------------------------------------------------------------- internals

  private warn(msg: string): void {
    if (!this.warnings.includes(msg)) this.warnings.push(msg);
  }

  /** Whether a register access can be written in a script; the model still sees it either way. */
  private recordable(off: number, width: number, op: string): boolean {
    if (Number.isInteger(off) && off >= 0 && off % 4 === 0 && off + width <= this.smmu.registerSpaceBytes) return true;
    this.warn(`${op} at ${Number.isInteger(off) && off >= 0 ? hex(off) : String(off)} is misaligned or outside the register space (0x${this.smmu.registerSpaceBytes.toString(16)} bytes); the model ignores it, and it is not recorded`);
    return false;
  }

  private expect(o: DmaOutcome): Record<string, unknown> {
    if (o.kind === 'pa') return { pa: hex(BigInt.asUintN(64, BigInt(o.pa))) };
    if (o.kind === 'abort') return { abort: true };
    let s = this.tags.get(o.tag);
    if (s === undefined) {
      s = this.nextTag++;
      this.tags.set(o.tag, s);
    }
    return { stall: s };
  }

  /** Runs a call into the model while watching which memory words its walks read. */
  private model<T>(fn: () => T): T {
    const mem = this.smmu.mem as PhysMem & { offsetOf: (pa: number) => number };
    if (this.depth === 0) {
      this.savedOwnOffsetOf = Object.getOwnPropertyDescriptor(mem, 'offsetOf');
      const lookup = this.offsetOf;
      mem.offsetOf = (pa: number): number => {
        this.seen(pa);
        return lookup(pa);
      };
    }
    this.depth++;
    try {
      return fn();
    } finally {
      if (--this.depth === 0) {
        if (this.savedOwnOffsetOf !== undefined) Object.defineProperty(mem, 'offsetOf', this.savedOwnOffsetOf);
        else delete (mem as { offsetOf?: unknown }).offsetOf;
      }
    }
  }

  /** A word the model is about to read (or a handler's table update is about to write). */
  private seen(pa: number): void {
    if (!Number.isSafeInteger(pa) || pa < 0 || pa % 8 !== 0 || this.known.has(pa) || this.watchedAt(pa) !== undefined) return;
    const off = this.offsetOf(pa);
    if (off < 0) {
      this.warn(`a walk read ${hex(pa)}, outside every RAM region (an external abort here; a replay reads zero there, so its outcome may differ)`);
      this.known.set(pa, 0n);
      return;
    }
    const v = this.read(off);
    this.known.set(pa, v);
    if (!this.initial.has(pa) && v !== 0n) this.initial.set(pa, v);
  }

  private watchedAt(pa: number): Watched | undefined {
    return this.watched.find((w) => pa >= w.base && pa < w.base + w.size);
  }

  private read(off: number): bigint {
    const mem = this.smmu.mem;
    const lo = mem.loadAt(off);
    return (BigInt(mem.hi >>> 0) << 32n) | BigInt(lo >>> 0);
  }

  private readInto(snap: Buffer, off: number, at: number): void {
    snap.writeBigUInt64LE(this.read(off), at);
  }

  /** Records, as `mem` steps, the changes to watched words since the last step. */
  private flush(): void {
    const changes: Array<[number, bigint]> = [];
    for (const [pa, v] of this.known) {
      const off = this.offsetOf(pa);
      if (off < 0) continue;
      const now = this.read(off);
      if (now !== v) changes.push([pa, now]);
    }
    for (const w of this.watched) {
      const live = Buffer.from(this.smmu.mem.buffer, w.off, w.size);
      if (live.equals(w.snap)) continue;
      for (let i = 0; i < w.size; i += 8) {
        const now = live.readBigUInt64LE(i);
        if (now !== w.snap.readBigUInt64LE(i)) changes.push([w.base + i, now]);
      }
      live.copy(w.snap);
    }
    changes.sort((a, b) => a[0] - b[0]);
    for (const [pa, v] of changes) {
      if (this.known.has(pa)) this.known.set(pa, v);
      this.steps.push({ op: 'mem', at: hex(pa), value: hex(v, 16) });
    }
  }
}
