/**
 * Where a table builder keeps its tables: physical memory directly (a host
 * stage 1 or a stage 2), or guest-physical memory behind a stage 2 (a guest's
 * stage-1 tables, whose addresses are IPAs). Descriptor accesses are
 * single-copy atomic 64-bit, since walkers may be reading concurrently.
 */

import { FrameAllocator } from '../memory/frames.js';
import { MemoryError, hex, type PhysMem } from '../memory/phys.js';

export interface TableMemory {
  /** Human-readable name of the address space, for errors. */
  readonly space: string;
  /** The physical memory underneath. */
  readonly mem: PhysMem;
  /** Atomically loads the descriptor at table address `addr`: returns bits [31:0] (int32), bits [63:32] in `hi`. */
  load(addr: number): number;
  hi: number;
  /** Atomically stores (hi:lo) at `addr`. */
  store(addr: number, lo: number, hi: number): void;
  /** Allocates and zeroes a naturally aligned table of `bytes`. */
  allocTable(bytes: number): number;
  freeTable(addr: number, bytes: number): void;
  /** Bytes of table memory in use. */
  readonly bytesInUse: number;
}

/** Tables in physical memory (addresses are PAs). */
export class PhysTables implements TableMemory {
  readonly space = 'PA';
  hi = 0;
  readonly frames: FrameAllocator;

  constructor(
    readonly mem: PhysMem,
    base: number,
    limit: number,
  ) {
    if (!mem.isBacked(base, limit - base)) {
      throw new MemoryError(`table memory [${hex(base)}, ${hex(limit)}) is not inside one RAM region`);
    }
    this.frames = new FrameAllocator(base, limit, `tables at ${hex(base)}`);
  }

  private offset(addr: number): number {
    const off = this.mem.offsetOf(addr);
    if (off < 0 || !this.mem.isBacked(addr, 8)) throw new MemoryError(`descriptor at PA ${hex(addr)} is outside every RAM region`);
    return off;
  }

  load(addr: number): number {
    const lo = this.mem.loadAt(this.offset(addr));
    this.hi = this.mem.hi;
    return lo;
  }

  store(addr: number, lo: number, hi: number): void {
    this.mem.storeAt(this.offset(addr), lo, hi);
  }

  allocTable(bytes: number): number {
    const addr = this.frames.alloc(bytes);
    this.mem.zero(addr, bytes);
    return addr;
  }

  freeTable(addr: number, bytes: number): void {
    this.frames.release(addr, bytes);
  }

  get bytesInUse(): number {
    return this.frames.bytesInUse;
  }
}

/** Anything that can turn an IPA into a PA the way the hypervisor sees its guest's memory. */
export interface IpaResolver {
  /** The PA for `ipa`, or -1 when it is not mapped. */
  ipaToPa(ipa: number): number;
}

/**
 * Tables in guest-physical memory: addresses are IPAs, resolved through a
 * stage 2 (what a guest's stage-1 tables look like to the hypervisor, and to
 * an SMMU doing nested translation).
 */
export class IpaTables implements TableMemory {
  readonly space = 'IPA';
  hi = 0;
  readonly frames: FrameAllocator;

  constructor(
    readonly mem: PhysMem,
    readonly stage2: IpaResolver,
    ipaBase: number,
    ipaLimit: number,
  ) {
    this.frames = new FrameAllocator(ipaBase, ipaLimit, `guest tables at IPA ${hex(ipaBase)}`);
  }

  private offset(ipa: number): number {
    const pa = this.stage2.ipaToPa(ipa);
    if (pa < 0) throw new MemoryError(`guest table at IPA ${hex(ipa)} is not mapped by stage 2`);
    const off = this.mem.offsetOf(pa);
    if (off < 0 || !this.mem.isBacked(pa, 8)) throw new MemoryError(`guest table at IPA ${hex(ipa)} (PA ${hex(pa)}) is not in RAM`);
    return off;
  }

  load(addr: number): number {
    const lo = this.mem.loadAt(this.offset(addr));
    this.hi = this.mem.hi;
    return lo;
  }

  store(addr: number, lo: number, hi: number): void {
    this.mem.storeAt(this.offset(addr), lo, hi);
  }

  allocTable(bytes: number): number {
    const ipa = this.frames.alloc(bytes);
    // Zero it 4 KiB at a time: consecutive IPA pages need not be consecutive PAs.
    for (let a = ipa; a < ipa + bytes; a += Math.min(bytes, 4096)) {
      const pa = this.stage2.ipaToPa(a);
      if (pa < 0) throw new MemoryError(`guest table at IPA ${hex(a)} is not mapped by stage 2`);
      this.mem.zero(pa, Math.min(bytes, 4096));
    }
    return ipa;
  }

  freeTable(addr: number, bytes: number): void {
    this.frames.release(addr, bytes);
  }

  get bytesInUse(): number {
    return this.frames.bytesInUse;
  }
}
