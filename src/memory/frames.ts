/**
 * A frame allocator for translation-table pages: hands out naturally aligned
 * power-of-two blocks (64 B .. 1 MiB: a root table smaller than a granule, a
 * granule, up to 16 concatenated stage-2 root tables of 64 KiB) from an
 * address range. It only does the arithmetic; zeroing is up to the caller, who
 * knows which address space (PA, or an IPA behind a stage 2) the range is in.
 */

import { MemoryError, hex } from './phys.js';

export class FrameAllocator {
  private next: number;
  private readonly free = new Map<number, number[]>();
  private inUse = 0;
  private peak = 0;

  constructor(
    readonly base: number,
    readonly limit: number,
    readonly label = 'frames',
  ) {
    if (!(base >= 0 && limit > base && Number.isSafeInteger(limit))) {
      throw new MemoryError(`${label}: bad range [${hex(base)}, ${hex(limit)})`);
    }
    this.next = base;
  }

  /** Allocates `size` bytes (a power of two, at least 64) aligned to `size`. */
  alloc(size: number): number {
    if (size < 64 || (size & (size - 1)) !== 0 || size > 1 << 24) {
      throw new MemoryError(`${this.label}: frame size ${size} is not a power of two between 64 B and 16 MiB`);
    }
    const list = this.free.get(size);
    let addr: number;
    if (list !== undefined && list.length > 0) {
      addr = list.pop()!;
    } else {
      addr = Math.ceil(this.next / size) * size;
      if (addr + size > this.limit) {
        throw new MemoryError(
          `${this.label}: out of table memory allocating ${size} bytes (range [${hex(this.base)}, ${hex(this.limit)}) is full)`,
        );
      }
      // Keep the alignment padding for smaller frames.
      for (let pad = this.next; pad < addr; ) {
        let s = 64;
        while (pad % (s * 2) === 0 && pad + s * 2 <= addr) s *= 2;
        this.pushFree(pad, s);
        pad += s;
      }
      this.next = addr + size;
    }
    this.inUse += size;
    if (this.inUse > this.peak) this.peak = this.inUse;
    return addr;
  }

  /** Returns a frame obtained from `alloc(size)`. */
  release(addr: number, size: number): void {
    this.pushFree(addr, size);
    this.inUse -= size;
  }

  private pushFree(addr: number, size: number): void {
    let list = this.free.get(size);
    if (list === undefined) {
      list = [];
      this.free.set(size, list);
    }
    list.push(addr);
  }

  /** Bytes currently handed out. */
  get bytesInUse(): number {
    return this.inUse;
  }

  get peakBytes(): number {
    return this.peak;
  }
}
