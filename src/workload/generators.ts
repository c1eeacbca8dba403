/**
 * DMA stream generators. Each one is a small state machine that writes one
 * transaction per `emit(batch, i)` into preallocated typed arrays: nothing is
 * allocated per record (tables a generator needs, such as the Zipf
 * permutation or the ring's buffer lists, are allocated once, when it is
 * built). Every generator is infinite and deterministic for its seed, and the
 * stream does not depend on the batch sizes it is pulled with.
 *
 * Most generators produce I/Os (an access, a packet, a scatter-gather list, a
 * storage request) that are cut into transactions the way a bus cuts them: a
 * transaction is at most `maxBurst` bytes and never crosses a 4 KiB boundary
 * (the rule of AXI bursts and PCIe requests), so every transaction needs
 * exactly one translation.
 *
 * Build them from plain configuration objects with `createGenerator`
 * (src/workload/config.ts), which validates and fills defaults; the classes
 * here take resolved configurations and trust them.
 */

import { ACC_R, ACC_W, ACC_X, type Batch, type Source } from './batch.js';
import { Rng } from './rng.js';

/** A [base, base + size) range of VA a generator may touch (for mapping it before a run). */
export interface VaRegion {
  sid: number;
  base: number;
  size: number;
  what: string;
}

/** Access-kind weights (normalized when built). */
export interface AccMix {
  r: number;
  w: number;
  x: number;
}

export abstract class Generator implements Source {
  abstract readonly kind: string;

  /** Writes the next transaction at index i of the batch (does not touch batch.count). */
  abstract emit(b: Batch, i: number): void;

  /** The VA ranges this generator can touch. */
  abstract regions(): VaRegion[];

  /** Fills the whole batch; generators never run dry. */
  fill(b: Batch): number {
    const n = b.capacity;
    for (let i = 0; i < n; i++) this.emit(b, i);
    b.count = n;
    return n;
  }
}

const PAGE = 4096;

/**
 * A generator of I/O segments (a VA, a length, an access kind), cut into
 * transactions of at most maxBurst bytes that never cross a 4 KiB boundary.
 */
abstract class SegmentGenerator extends Generator {
  protected readonly rng: Rng;
  protected segVa = 0;
  protected segLeft = 0;
  protected segAcc = 0;
  private readonly c1: number;
  private readonly c2: number;

  constructor(
    readonly sid: number,
    readonly maxBurst: number,
    seed: number,
    mix: AccMix,
  ) {
    super();
    this.rng = new Rng(seed);
    const sum = mix.r + mix.w + mix.x;
    this.c1 = mix.r / sum;
    this.c2 = (mix.r + mix.w) / sum;
  }

  /** Sets segVa, segLeft (> 0) and segAcc for the next segment. */
  protected abstract nextSegment(): void;

  /** An access kind drawn from the mix (one draw). */
  protected drawAcc(): number {
    const u = this.rng.float();
    return u < this.c1 ? ACC_R : u < this.c2 ? ACC_W : ACC_X;
  }

  emit(b: Batch, i: number): void {
    if (this.segLeft <= 0) this.nextSegment();
    const va = this.segVa;
    const toPage = PAGE - (va - Math.floor(va / PAGE) * PAGE);
    let len = this.segLeft;
    if (len > this.maxBurst) len = this.maxBurst;
    if (len > toPage) len = toPage;
    b.sid[i] = this.sid;
    b.va[i] = va;
    b.acc[i] = this.segAcc;
    b.size[i] = len;
    this.segVa = va + len;
    this.segLeft -= len;
  }
}

// ------------------------------------------------------------------ sequential

export interface SequentialParams {
  sid: number;
  seed: number;
  mix: AccMix;
  maxBurst: number;
  base: number;
  footprint: number;
  accessSize: number;
  stride: number;
}

/**
 * Sequential streaming: accesses of `accessSize` bytes at base, base + stride,
 * base + 2*stride, ...; when the next access would run past the footprint the
 * stream starts again at base. The access kind of each access is drawn from
 * the mix.
 */
export class SequentialGenerator extends SegmentGenerator {
  readonly kind = 'sequential';
  private off = 0;

  constructor(readonly p: SequentialParams) {
    super(p.sid, p.maxBurst, p.seed, p.mix);
  }

  protected nextSegment(): void {
    const p = this.p;
    this.segVa = p.base + this.off;
    this.segLeft = p.accessSize;
    this.segAcc = this.drawAcc();
    this.off += p.stride;
    if (this.off + p.accessSize > p.footprint) this.off = 0;
  }

  regions(): VaRegion[] {
    return [{ sid: this.sid, base: this.p.base, size: this.p.footprint, what: 'stream' }];
  }
}

// ------------------------------------------------------------------ uniform

export interface UniformParams {
  sid: number;
  seed: number;
  mix: AccMix;
  maxBurst: number;
  base: number;
  footprint: number;
  accessSize: number;
}

/** Uniform random accesses of accessSize bytes, aligned to accessSize, over [base, base + footprint). */
export class UniformGenerator extends SegmentGenerator {
  readonly kind = 'uniform';
  private readonly slots: number;

  constructor(readonly p: UniformParams) {
    super(p.sid, p.maxBurst, p.seed, p.mix);
    this.slots = Math.floor(p.footprint / p.accessSize);
  }

  protected nextSegment(): void {
    this.segVa = this.p.base + this.rng.below(this.slots) * this.p.accessSize;
    this.segLeft = this.p.accessSize;
    this.segAcc = this.drawAcc();
  }

  regions(): VaRegion[] {
    return [{ sid: this.sid, base: this.p.base, size: this.p.footprint, what: 'footprint' }];
  }
}

// ------------------------------------------------------------------ Zipf

function helper1(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.log1p(x) / x : 1 - x * (1 / 2 - x * (1 / 3 - x * (1 / 4)));
}

function helper2(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.expm1(x) / x : 1 + x * (1 / 2) * (1 + x * (1 / 3) * (1 + x * (1 / 4)));
}

/**
 * Zipf ranks k in 1..n with P(k) proportional to 1/k^s, by rejection-inversion
 * (W. Hörmann and G. Derflinger, "Rejection-inversion to generate variates
 * from monotone discrete distributions", 1996; the construction of Apache
 * Commons' ZipfRejectionInversionSampler). Exact, O(1) expected time (about
 * 1.1 draws per sample) and O(1) memory, for any s > 0 including s = 1 and
 * any n: no CDF table over pages.
 */
export class ZipfSampler {
  private readonly hX1: number;
  private readonly hN: number;
  private readonly sq: number;

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    this.hX1 = this.hIntegral(1.5) - 1;
    this.hN = this.hIntegral(n + 0.5);
    this.sq = 2 - this.hIntegralInverse(this.hIntegral(2.5) - this.h(2));
  }

  private hIntegral(x: number): number {
    const logX = Math.log(x);
    return helper2((1 - this.s) * logX) * logX;
  }

  private h(x: number): number {
    return Math.exp(-this.s * Math.log(x));
  }

  private hIntegralInverse(x: number): number {
    let t = x * (1 - this.s);
    if (t < -1) t = -1;
    return Math.exp(helper1(t) * x);
  }

  /** A rank in 1..n. */
  sample(rng: Rng): number {
    const n = this.n;
    for (;;) {
      const u = this.hN + rng.float53() * (this.hX1 - this.hN);
      const x = this.hIntegralInverse(u);
      let k = Math.floor(x + 0.5);
      if (k < 1) k = 1;
      else if (k > n) k = n;
      if (k - x <= this.sq || u >= this.hIntegral(k + 0.5) - this.h(k)) return k;
    }
  }
}

export interface ZipfParams {
  sid: number;
  seed: number;
  mix: AccMix;
  maxBurst: number;
  base: number;
  pages: number;
  pageSize: number;
  s: number;
  accessSize: number;
  scatter: boolean;
}

/**
 * Zipf hot sets: the page of each access has Zipf rank k (P proportional to
 * 1/k^s) over `pages` pages; the offset in the page is uniform, aligned to
 * accessSize. With scatter, ranks are placed on pages by a seeded random
 * permutation (hot pages spread over the footprint, allocated once: 4 bytes
 * per page); without, rank k is page k-1.
 */
export class ZipfGenerator extends SegmentGenerator {
  readonly kind = 'zipf';
  private readonly sampler: ZipfSampler;
  private readonly perm: Int32Array | null;
  private readonly slotsPerPage: number;

  constructor(readonly p: ZipfParams) {
    super(p.sid, p.maxBurst, p.seed, p.mix);
    this.sampler = new ZipfSampler(p.pages, p.s);
    this.slotsPerPage = Math.floor(p.pageSize / p.accessSize);
    if (p.scatter) {
      // A separate stream for the permutation, so scatter does not shift the access stream.
      const r = new Rng(p.seed ^ 0x5bd1e995);
      const perm = new Int32Array(p.pages);
      for (let i = 0; i < p.pages; i++) perm[i] = i;
      for (let i = p.pages - 1; i > 0; i--) {
        const j = r.below(i + 1);
        const t = perm[i]!;
        perm[i] = perm[j]!;
        perm[j] = t;
      }
      this.perm = perm;
    } else {
      this.perm = null;
    }
  }

  /** The page (0-based) that holds rank k (1-based). */
  pageOfRank(k: number): number {
    return this.perm === null ? k - 1 : this.perm[k - 1]!;
  }

  protected nextSegment(): void {
    const p = this.p;
    const k = this.sampler.sample(this.rng);
    const page = this.perm === null ? k - 1 : this.perm[k - 1]!;
    this.segVa = p.base + page * p.pageSize + this.rng.below(this.slotsPerPage) * p.accessSize;
    this.segLeft = p.accessSize;
    this.segAcc = this.drawAcc();
  }

  regions(): VaRegion[] {
    return [{ sid: this.sid, base: this.p.base, size: this.p.pages * this.p.pageSize, what: 'pages' }];
  }
}

// ------------------------------------------------------------------ NIC rings

export type Recycle = 'ring' | 'page-pool';
export type Completion = 'shuffled' | 'in-order';

export interface RingParams {
  sid: number;
  seed: number;
  maxBurst: number;
  base: number;
  /** Descriptors per ring (rx and tx each). */
  entries: number;
  /** Bytes per buffer. */
  bufSize: number;
  /** Buffers per ring's pool. */
  poolBuffers: number;
  recycle: Recycle;
  /** Page-pool: buffers the stack holds before it frees one. */
  hold: number;
  completion: Completion;
  packetBytes: number;
  headroom: number;
  /** Share of packets that are transmitted (the rest are received). */
  txFraction: number;
  /** Whether descriptor fetches and write-backs are emitted. */
  descriptors: boolean;
}

export const DESC_BYTES = 16;

/** One ring (rx or tx): which buffer each slot holds and how buffers come back. */
class RingSide {
  head = 0;
  readonly slotBuf: Int32Array;
  /** Ring order: the next buffer to post. */
  posted: number;
  /** Page-pool: the LIFO free list (top at freeTop - 1). */
  readonly free: Int32Array;
  freeTop: number;
  /** Page-pool: buffers held by the stack (a bag when shuffled, a FIFO queue when in order). */
  readonly held: Int32Array;
  heldCount = 0;
  heldFirst = 0;

  constructor(
    readonly p: RingParams,
    readonly bufBase: number,
    readonly descBase: number,
  ) {
    const E = p.entries;
    const P = p.poolBuffers;
    this.slotBuf = new Int32Array(E);
    for (let i = 0; i < E; i++) this.slotBuf[i] = i;
    this.posted = E % P;
    this.free = new Int32Array(P);
    // Free list, top first: E, E+1, ..., P-1.
    this.freeTop = P - E;
    for (let j = 0; j < P - E; j++) this.free[j] = P - 1 - j;
    this.held = new Int32Array(p.hold + 1);
  }

  /** Consumes the head slot: returns its buffer, recycles, and refills the slot. */
  take(rng: Rng): number {
    const p = this.p;
    const slot = this.head;
    this.head = slot + 1 === p.entries ? 0 : slot + 1;
    const buf = this.slotBuf[slot]!;
    if (p.recycle === 'ring') {
      this.slotBuf[slot] = this.posted;
      this.posted = this.posted + 1 === p.poolBuffers ? 0 : this.posted + 1;
      return buf;
    }
    // Page pool: the buffer goes up the stack; when the stack holds more than `hold`, one comes back
    // (a random one when shuffled, the oldest when in order) onto the LIFO free list; the slot is
    // refilled from the top of the free list.
    const cap = this.held.length;
    if (p.completion === 'in-order') {
      this.held[(this.heldFirst + this.heldCount) % cap] = buf;
      this.heldCount++;
      if (this.heldCount > p.hold) {
        this.free[this.freeTop++] = this.held[this.heldFirst]!;
        this.heldFirst = this.heldFirst + 1 === cap ? 0 : this.heldFirst + 1;
        this.heldCount--;
      }
    } else {
      this.held[this.heldCount++] = buf;
      if (this.heldCount > p.hold) {
        const j = rng.below(this.heldCount);
        this.free[this.freeTop++] = this.held[j]!;
        this.held[j] = this.held[--this.heldCount]!;
      }
    }
    this.slotBuf[slot] = this.free[--this.freeTop]!;
    return buf;
  }
}

/**
 * A NIC with an rx ring and a tx ring of `entries` 16-byte descriptors each.
 * Each packet is rx (with probability 1 - txFraction) or tx, at the head slot
 * of its ring, and is three I/Os: the device fetches the descriptor (read),
 * moves the packet (rx: writes packetBytes at buffer + headroom; tx: reads
 * them), and writes the descriptor back (write). Without `descriptors`, only
 * the data moves.
 *
 * Buffers come back in one of two ways:
 * - `ring`: packet n of a ring uses buffer n mod poolBuffers (buffers are
 *   reposted in the order they were posted; with poolBuffers = entries every
 *   slot keeps its own buffer). It assumes the stack has let go of a buffer by
 *   the time the ring comes back to it.
 * - `page-pool`: Linux page_pool's fast path. A received buffer goes up the
 *   stack, which holds up to `hold` buffers; when it holds more, it frees one:
 *   a uniformly random one of those it holds (`shuffled`: sockets and GRO
 *   consume out of order) or the oldest (`in-order`). Freed buffers go onto a
 *   LIFO free list (page_pool's per-CPU alloc cache) and the slot is refilled
 *   from its top, so recently freed (cache-hot) buffers are reused first and
 *   only entries + hold buffers of the pool are ever touched. The ptr_ring
 *   path for buffers freed on other CPUs (FIFO) is not modelled. Initially
 *   slot i holds buffer i and the free list pops entries, entries + 1, ...
 *   The tx ring recycles its own pool the same way.
 *
 * Layout from base: rx buffers, tx buffers (each pool rounded up to 4 KiB),
 * rx descriptors, tx descriptors (each ring rounded up to 4 KiB).
 */
export class RingGenerator extends SegmentGenerator {
  readonly kind = 'ring';
  readonly rx: RingSide;
  readonly tx: RingSide;
  readonly layout: { rxBuf: number; txBuf: number; rxDesc: number; txDesc: number; end: number };
  /** Packets started (rx, tx). */
  rxPackets = 0;
  txPackets = 0;
  private phase = 0;
  private pktDesc = 0;
  private pktData = 0;
  private pktTx = false;

  constructor(readonly p: RingParams) {
    super(p.sid, p.maxBurst, p.seed, { r: 1, w: 0, x: 0 });
    const poolBytes = Math.ceil((p.poolBuffers * p.bufSize) / PAGE) * PAGE;
    const ringBytes = Math.ceil((p.entries * DESC_BYTES) / PAGE) * PAGE;
    const rxBuf = p.base;
    const txBuf = rxBuf + poolBytes;
    const rxDesc = txBuf + poolBytes;
    const txDesc = rxDesc + ringBytes;
    this.layout = { rxBuf, txBuf, rxDesc, txDesc, end: txDesc + ringBytes };
    this.rx = new RingSide(p, rxBuf, rxDesc);
    this.tx = new RingSide(p, txBuf, txDesc);
  }

  protected nextSegment(): void {
    const p = this.p;
    if (this.phase === 0) {
      // A new packet.
      this.pktTx = p.txFraction > 0 && this.rng.float() < p.txFraction;
      const side = this.pktTx ? this.tx : this.rx;
      if (this.pktTx) this.txPackets++;
      else this.rxPackets++;
      this.pktDesc = side.descBase + side.head * DESC_BYTES;
      this.pktData = side.bufBase + side.take(this.rng) * p.bufSize + p.headroom;
      if (p.descriptors) {
        this.segVa = this.pktDesc;
        this.segLeft = DESC_BYTES;
        this.segAcc = ACC_R;
        this.phase = 1;
        return;
      }
      this.phase = 1;
    }
    if (this.phase === 1) {
      this.segVa = this.pktData;
      this.segLeft = p.packetBytes;
      this.segAcc = this.pktTx ? ACC_R : ACC_W;
      this.phase = p.descriptors ? 2 : 0;
      return;
    }
    this.segVa = this.pktDesc;
    this.segLeft = DESC_BYTES;
    this.segAcc = ACC_W;
    this.phase = 0;
  }

  regions(): VaRegion[] {
    const l = this.layout;
    const r: VaRegion[] = [
      { sid: this.sid, base: l.rxBuf, size: l.txBuf - l.rxBuf, what: 'rx buffers' },
      { sid: this.sid, base: l.txBuf, size: l.rxDesc - l.txBuf, what: 'tx buffers' },
    ];
    if (this.p.descriptors) {
      r.push({ sid: this.sid, base: l.rxDesc, size: l.txDesc - l.rxDesc, what: 'rx descriptors' });
      r.push({ sid: this.sid, base: l.txDesc, size: l.end - l.txDesc, what: 'tx descriptors' });
    }
    return r;
  }
}

// ------------------------------------------------------------------ scatter-gather

export interface SgParams {
  sid: number;
  seed: number;
  mix: AccMix;
  maxBurst: number;
  base: number;
  footprint: number;
  pageSize: number;
  segmentsMin: number;
  segmentsMax: number;
  segmentBytesMin: number;
  segmentBytesMax: number;
  align: number;
}

/**
 * Scatter-gather lists: each I/O is a list of segmentsMin..segmentsMax
 * segments (uniform), all in one direction drawn from the mix. Each segment
 * lies in one page chosen uniformly from the footprint, with a length drawn
 * uniformly from the multiples of `align` in [segmentBytesMin,
 * segmentBytesMax] and an offset (a multiple of align) that keeps it inside
 * the page.
 */
export class SgGenerator extends SegmentGenerator {
  readonly kind = 'sg';
  /** I/Os (lists) started, and segments emitted. */
  ios = 0;
  segments = 0;
  private left = 0;
  private ioAcc = 0;
  private readonly pages: number;

  constructor(readonly p: SgParams) {
    super(p.sid, p.maxBurst, p.seed, p.mix);
    this.pages = Math.floor(p.footprint / p.pageSize);
  }

  protected nextSegment(): void {
    const p = this.p;
    if (this.left === 0) {
      this.ios++;
      this.left = p.segmentsMin + this.rng.below(p.segmentsMax - p.segmentsMin + 1);
      this.ioAcc = this.drawAcc();
    }
    this.left--;
    this.segments++;
    const page = this.rng.below(this.pages);
    const len = p.segmentBytesMin + this.rng.below((p.segmentBytesMax - p.segmentBytesMin) / p.align + 1) * p.align;
    const off = this.rng.below((p.pageSize - len) / p.align + 1) * p.align;
    this.segVa = p.base + page * p.pageSize + off;
    this.segLeft = len;
    this.segAcc = this.ioAcc;
  }

  regions(): VaRegion[] {
    return [{ sid: this.sid, base: this.p.base, size: this.pages * this.p.pageSize, what: 'pages' }];
  }
}

// ------------------------------------------------------------------ storage

export interface StorageParams {
  sid: number;
  seed: number;
  mix: AccMix;
  maxBurst: number;
  base: number;
  footprint: number;
  /** Share of I/Os that are large and sequential. */
  seqFraction: number;
  seqBytes: number;
  randBytes: number;
  /** Concurrent sequential streams, each in its own slice of the footprint. */
  seqStreams: number;
}

/**
 * A storage-like mix: each I/O is, with probability seqFraction, a large
 * sequential one (seqBytes, continuing one of seqStreams streams, each
 * confined to an equal 4 KiB-aligned slice of the footprint and wrapping to
 * its start), and otherwise a small random one (randBytes, aligned to
 * randBytes, uniform over the footprint). Each I/O has one direction drawn
 * from the mix.
 */
export class StorageGenerator extends SegmentGenerator {
  readonly kind = 'storage';
  seqIos = 0;
  randIos = 0;
  private readonly cursor: Float64Array;
  private readonly slice: number;
  private readonly randSlots: number;

  constructor(readonly p: StorageParams) {
    super(p.sid, p.maxBurst, p.seed, p.mix);
    this.slice = Math.floor(p.footprint / p.seqStreams / PAGE) * PAGE;
    this.cursor = new Float64Array(p.seqStreams);
    this.randSlots = Math.floor(p.footprint / p.randBytes);
  }

  protected nextSegment(): void {
    const p = this.p;
    if (this.rng.float() < p.seqFraction) {
      this.seqIos++;
      const j = p.seqStreams === 1 ? 0 : this.rng.below(p.seqStreams);
      let c = this.cursor[j]!;
      if (c + p.seqBytes > this.slice) c = 0;
      this.segVa = p.base + j * this.slice + c;
      this.segLeft = p.seqBytes;
      this.cursor[j] = c + p.seqBytes;
    } else {
      this.randIos++;
      this.segVa = p.base + this.rng.below(this.randSlots) * p.randBytes;
      this.segLeft = p.randBytes;
    }
    this.segAcc = this.drawAcc();
  }

  regions(): VaRegion[] {
    return [{ sid: this.sid, base: this.p.base, size: this.p.footprint, what: 'footprint' }];
  }
}

// ------------------------------------------------------------------ several devices

export type InterleaveOrder = 'weighted' | 'round-robin';

/**
 * Several streams (usually several devices, each with its own stream ID)
 * interleaved: every `run` transactions the next stream is chosen by weight
 * (`weighted`) or in turn (`round-robin`), and it emits the next `run`
 * transactions of its own stream.
 */
export class InterleaveGenerator extends Generator {
  readonly kind = 'interleave';
  private readonly rng: Rng;
  private readonly cum: Float64Array;
  private cur = 0;
  private left = 0;

  constructor(
    readonly children: Generator[],
    weights: number[],
    readonly order: InterleaveOrder,
    readonly run: number,
    seed: number,
  ) {
    super();
    this.rng = new Rng(seed);
    this.cum = new Float64Array(children.length);
    const sum = weights.reduce((a, b) => a + b, 0);
    let acc = 0;
    for (let i = 0; i < children.length; i++) {
      acc += weights[i]!;
      this.cum[i] = acc / sum;
    }
    this.cum[children.length - 1] = 1;
    this.cur = children.length - 1;
  }

  emit(b: Batch, i: number): void {
    if (this.left === 0) {
      const n = this.children.length;
      if (this.order === 'round-robin') {
        this.cur = this.cur + 1 === n ? 0 : this.cur + 1;
      } else {
        const u = this.rng.float();
        let k = 0;
        while (k < n - 1 && u >= this.cum[k]!) k++;
        this.cur = k;
      }
      this.left = this.run;
    }
    this.left--;
    this.children[this.cur]!.emit(b, i);
  }

  regions(): VaRegion[] {
    return this.children.flatMap((c) => c.regions());
  }
}
