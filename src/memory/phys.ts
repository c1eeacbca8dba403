/**
 * Physical memory: a sparse physical address space of up to 48 bits made of
 * RAM regions at chosen bases.
 *
 * All regions are slices of one shared `WebAssembly.Memory` (the "arena"),
 * whose buffer is a SharedArrayBuffer, so every worker that attaches to it sees
 * the same bytes, and descriptor accesses can use wasm's 64-bit atomics (see
 * atomic64.ts). One arena holds up to 2 GiB of RAM (offsets must be int32); the
 * physical addresses of the regions can be anywhere below 2^48.
 *
 * Arena layout:
 *   [0, 8)          always zero: the "read-as-zero" word that unbacked reads
 *                   resolve to when the memory is built with unbacked: 'zero'
 *   [8, 12)         next free scratch slot (int32, bumped atomically)
 *   [128, 65536)    per-thread scratch slots (atomic64.ts), one per 128 bytes so that two
 *                   threads never write the same cache line (every descriptor read writes
 *                   its slot: sharing a line would bounce it between cores on every read)
 *   [65536, ...)    the regions, each starting on a 64 KiB boundary
 *
 * An access outside every region is reported, never an exception from a typed
 * array: `offsetOf` answers -1 (the walker turns that into an external abort),
 * and the slow-path accessors throw a `MemoryError` naming the address.
 */

import { atomic64For, type Atomic64 } from './atomic64.js';

export const ARENA_HEADER = 65536;
const SCRATCH_COUNTER = 8;
const SCRATCH_FIRST = 128;
const SCRATCH_STRIDE = 128;
// 2 GiB: arena offsets stay non-negative int32 values (small integers for V8), so that passing
// one to the wasm load never boxes a heap number; a wasm32 memory could be twice that.
const MAX_ARENA = 2 ** 31;
export const MAX_PA_BITS = 48;
const TWO_POW_32 = 4294967296;

/** One RAM region: `size` bytes at physical address `base`. */
export interface RegionSpec {
  base: number;
  size: number;
  name?: string;
}

/** What a worker needs to attach to the same memory (structured-cloneable). */
export interface PhysMemShared {
  memory: WebAssembly.Memory;
  regions: RegionSpec[];
  offsets: number[];
  unbacked: 'abort' | 'zero';
}

export interface PhysMemOptions {
  regions: RegionSpec[];
  /**
   * What an access outside every region does. 'abort' (the default) reports
   * it, and a table walk turns it into an external abort; 'zero' makes every
   * unbacked address read as zero (the conformance cases' "all memory is zero
   * except the listed words").
   */
  unbacked?: 'abort' | 'zero';
}

export class MemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryError';
  }
}

export function hex(n: number): string {
  return '0x' + n.toString(16);
}

function checkRegion(r: RegionSpec, i: number): void {
  const where = `region ${i}${r.name ? ` (${r.name})` : ''}`;
  if (!Number.isSafeInteger(r.base) || r.base < 0) throw new MemoryError(`${where}: base ${r.base} is not a non-negative integer`);
  if (!Number.isSafeInteger(r.size) || r.size <= 0) throw new MemoryError(`${where}: size ${r.size} is not a positive integer`);
  if (r.base % 4096 !== 0 || r.size % 4096 !== 0) {
    throw new MemoryError(`${where}: base ${hex(r.base)} and size ${hex(r.size)} must be multiples of 4 KiB`);
  }
  if (r.base + r.size > 2 ** MAX_PA_BITS) {
    throw new MemoryError(`${where}: [${hex(r.base)}, ${hex(r.base + r.size)}) reaches past the 48-bit physical address space`);
  }
}

export class PhysMem {
  readonly memory: WebAssembly.Memory;
  readonly buffer: SharedArrayBuffer;
  readonly regions: readonly RegionSpec[];
  readonly unbacked: 'abort' | 'zero';
  /** Plain views, for bulk and test use; never for racing descriptor reads. */
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  /** High word of the last `loadAt`, as int32. */
  hi = 0;

  // The wasm entry points, held directly: a call through the exports object costs far more.
  private readonly wasmLoad: Atomic64['load'];
  private readonly wasmStore: Atomic64['store'];
  private readonly wasmCas: Atomic64['cas'];
  private readonly scratch: number;
  private readonly scratchIdx: number;
  private readonly rBase: Float64Array;
  private readonly rLimit: Float64Array;
  private readonly rOff: Float64Array;
  private readonly nRegions: number;
  private readonly unbackedOffset: number;
  private lastRegion = 0;

  /** Creates a new memory with the given regions (zero-filled). */
  static create(opts: PhysMemOptions): PhysMem {
    const regions = opts.regions.map((r) => ({ ...r }));
    regions.forEach(checkRegion);
    const sorted = [...regions].sort((a, b) => a.base - b.base);
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1]!;
      const b = sorted[i]!;
      if (a.base + a.size > b.base) {
        throw new MemoryError(
          `regions overlap: [${hex(a.base)}, ${hex(a.base + a.size)}) and [${hex(b.base)}, ${hex(b.base + b.size)})`,
        );
      }
    }
    const offsets: number[] = [];
    let arena = ARENA_HEADER;
    for (const r of sorted) {
      offsets.push(arena);
      arena += Math.ceil(r.size / 65536) * 65536;
    }
    if (arena > MAX_ARENA) {
      throw new MemoryError(`regions need ${arena} bytes of backing; one memory holds at most 2 GiB of RAM`);
    }
    const pages = arena / 65536;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    return new PhysMem({ memory, regions: sorted, offsets, unbacked: opts.unbacked ?? 'abort' });
  }

  /** Attaches to a memory created elsewhere (in another worker, say). */
  static attach(shared: PhysMemShared): PhysMem {
    return new PhysMem(shared);
  }

  protected constructor(shared: PhysMemShared) {
    this.memory = shared.memory;
    this.buffer = shared.memory.buffer as unknown as SharedArrayBuffer;
    this.regions = shared.regions;
    this.unbacked = shared.unbacked;
    this.u8 = new Uint8Array(this.buffer);
    this.i32 = new Int32Array(this.buffer);
    const atom = atomic64For(shared.memory);
    this.wasmLoad = atom.load;
    this.wasmStore = atom.store;
    this.wasmCas = atom.cas;
    const slot = Atomics.add(this.i32, SCRATCH_COUNTER >> 2, 1);
    this.scratch = SCRATCH_FIRST + SCRATCH_STRIDE * (slot % ((ARENA_HEADER - SCRATCH_FIRST) / SCRATCH_STRIDE));
    this.scratchIdx = this.scratch >> 2;
    const n = shared.regions.length;
    this.nRegions = n;
    this.rBase = new Float64Array(n);
    this.rLimit = new Float64Array(n);
    this.rOff = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.rBase[i] = shared.regions[i]!.base;
      this.rLimit[i] = shared.regions[i]!.base + shared.regions[i]!.size;
      this.rOff[i] = shared.offsets[i]!;
    }
    this.unbackedOffset = shared.unbacked === 'zero' ? 0 : -1;
  }

  /** The structured-cloneable handle a worker passes to `PhysMem.attach`. */
  share(): PhysMemShared {
    return {
      memory: this.memory,
      regions: this.regions.map((r) => ({ ...r })),
      offsets: Array.from(this.rOff),
      unbacked: this.unbacked,
    };
  }

  /**
   * The arena offset of the 8 bytes at physical address `pa`, or -1 when they
   * lie outside every region (in 'zero' mode: the offset of the always-zero
   * word, for reads only). `pa` must be 8-aligned.
   */
  offsetOf(pa: number): number {
    let i = this.lastRegion;
    if (pa >= this.rBase[i]! && pa < this.rLimit[i]!) return (this.rOff[i]! + (pa - this.rBase[i]!)) | 0;
    for (i = 0; i < this.nRegions; i++) {
      if (pa >= this.rBase[i]! && pa < this.rLimit[i]!) {
        this.lastRegion = i;
        return (this.rOff[i]! + (pa - this.rBase[i]!)) | 0;
      }
    }
    return this.unbackedOffset;
  }

  /** True when [pa, pa+len) lies inside one region. */
  isBacked(pa: number, len = 1): boolean {
    for (let i = 0; i < this.nRegions; i++) {
      if (pa >= this.rBase[i]! && pa + len <= this.rLimit[i]!) return true;
    }
    return false;
  }

  /**
   * Single-copy atomic 64-bit load at an arena offset from `offsetOf`:
   * returns bits [31:0] as int32 and leaves bits [63:32] in `this.hi`.
   */
  loadAt(off: number): number {
    const lo = this.wasmLoad(off, this.scratch);
    this.hi = this.i32[this.scratchIdx]!;
    return lo;
  }

  /** Single-copy atomic 64-bit store at an arena offset. */
  storeAt(off: number, lo: number, hi: number): void {
    this.wasmStore(off, lo, hi);
  }

  /** Atomic compare-and-swap of a 64-bit word at an arena offset; true on success. */
  casAt(off: number, elo: number, ehi: number, lo: number, hi: number): boolean {
    return this.wasmCas(off, elo, ehi, lo, hi) === 1;
  }

  private writableOffset(pa: number, len: number, what: string): number {
    if (!Number.isSafeInteger(pa) || pa < 0) throw new MemoryError(`${what}: address ${pa} is not a non-negative integer`);
    for (let i = 0; i < this.nRegions; i++) {
      if (pa >= this.rBase[i]! && pa + len <= this.rLimit[i]!) return this.rOff[i]! + (pa - this.rBase[i]!);
    }
    throw new MemoryError(`${what}: [${hex(pa)}, ${hex(pa + len)}) is outside every RAM region`);
  }

  private readableOffset(pa: number, what: string): number {
    if (pa % 8 !== 0) throw new MemoryError(`${what}: address ${hex(pa)} is not 8-byte aligned`);
    const off = this.offsetOf(pa);
    if (off < 0) throw new MemoryError(`${what}: ${hex(pa)} is outside every RAM region`);
    return off;
  }

  /** Atomic 64-bit read of a descriptor at `pa` (slow path: allocates a BigInt). */
  read64(pa: number): bigint {
    const lo = this.loadAt(this.readableOffset(pa, 'read64'));
    return (BigInt(this.hi >>> 0) << 32n) | BigInt(lo >>> 0);
  }

  /** Atomic 64-bit read returning [lo, hi] as uint32 numbers. */
  read64Parts(pa: number): [number, number] {
    const lo = this.loadAt(this.readableOffset(pa, 'read64'));
    return [lo >>> 0, this.hi >>> 0];
  }

  /** Atomic 64-bit write of `value` (a BigInt, or [lo, hi] words) at `pa`. */
  write64(pa: number, value: bigint): void {
    if (pa % 8 !== 0) throw new MemoryError(`write64: address ${hex(pa)} is not 8-byte aligned`);
    const v = BigInt.asUintN(64, value);
    this.storeAt(this.writableOffset(pa, 8, 'write64'), Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0);
  }

  write64Parts(pa: number, lo: number, hi: number): void {
    if (pa % 8 !== 0) throw new MemoryError(`write64: address ${hex(pa)} is not 8-byte aligned`);
    this.storeAt(this.writableOffset(pa, 8, 'write64'), lo | 0, hi | 0);
  }

  /** Zero-fills [pa, pa+len). Not atomic: only for memory no walker can reach yet. */
  zero(pa: number, len: number): void {
    const off = this.writableOffset(pa, len, 'zero');
    this.u8.fill(0, off, off + len);
  }

  /** Copies bytes in (not atomic; for data, not descriptors). */
  writeBytes(pa: number, bytes: Uint8Array): void {
    const off = this.writableOffset(pa, bytes.length, 'writeBytes');
    this.u8.set(bytes, off);
  }

  readBytes(pa: number, len: number): Uint8Array {
    const off = this.writableOffset(pa, len, 'readBytes');
    return this.u8.slice(off, off + len);
  }

  /** Total bytes of RAM. */
  get ramBytes(): number {
    let t = 0;
    for (const r of this.regions) t += r.size;
    return t;
  }
}

/** Splits a number below 2^53 into [lo, hi] 32-bit words. */
export function splitWords(n: number): [number, number] {
  return [n >>> 0, Math.floor(n / TWO_POW_32) >>> 0];
}
