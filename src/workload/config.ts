/**
 * Workload configurations: plain, JSON-able objects that name a generator and
 * its parameters, validated with errors that give the JSON path and what is
 * wrong (`$.streams[1].s: expected a number > 0, got -1`), and the named
 * presets.
 *
 * Common fields of every generator (all optional):
 *   sid       stream ID, 0 .. 2^31-1 (default 0; streams[i] of an interleave: i)
 *   seed      0 .. 2^32-1 (default 1; streams[i] of an interleave: derived from its seed and i)
 *   base      first VA: a number, or "0x..." (16 digits with bit 63 set, or "-0x...", for an
 *             upper-half VA); default 0
 *   mix       {"r", "w", "x"} weights >= 0 (default {"r": 1}); not for "ring", whose kinds follow
 *             from the protocol
 *   maxBurst  the largest transaction in bytes, 1 .. 4096 (default 4096); a transaction never
 *             crosses a 4 KiB boundary
 *
 * Kinds and their own fields (defaults in brackets; sizes in bytes, as numbers or "0x..."):
 *   sequential  footprint [64 MiB], accessSize [64], stride [accessSize]
 *   uniform     footprint [1 GiB], accessSize [64]
 *   zipf        pages [262144], pageSize [4096], s [0.99], accessSize [64], scatter [true]
 *   ring        entries [256], bufSize [2048], recycle ["ring"] | "page-pool",
 *               poolBuffers [ring: entries; page-pool: entries + hold], hold [page-pool: entries/2],
 *               completion ["shuffled"] | "in-order" (page-pool), packetBytes [1514], headroom [64],
 *               txFraction [0.5], descriptors [true]
 *   sg          footprint [256 MiB], pageSize [4096], segments [[1, 16]], segmentBytes [[512, 4096]],
 *               align [512]   (segments and segmentBytes: a number or [min, max])
 *   storage     footprint [1 GiB], seqFraction [0.25], seqBytes [128 KiB], randBytes [4096],
 *               seqStreams [1]
 *   interleave  streams (required: configs, each with an optional "weight" [1]),
 *               order ["weighted"] | "round-robin", run [1]   (no base, mix or maxBurst)
 */

import {
  Generator,
  InterleaveGenerator,
  RingGenerator,
  SequentialGenerator,
  SgGenerator,
  StorageGenerator,
  UniformGenerator,
  ZipfGenerator,
  type AccMix,
  type Completion,
  type InterleaveOrder,
  type Recycle,
} from './generators.js';
import { formatVa, parseVa } from './batch.js';
import { deriveSeed } from './rng.js';

export type NumberLike = number | string;
export type RangeLike = NumberLike | [NumberLike, NumberLike];

interface CommonConfig {
  sid?: number;
  seed?: number;
  base?: NumberLike;
  mix?: Partial<AccMix>;
  maxBurst?: number;
  /** Only inside an interleave's streams. */
  weight?: number;
}

export interface SequentialConfig extends CommonConfig {
  kind: 'sequential';
  footprint?: NumberLike;
  accessSize?: NumberLike;
  stride?: NumberLike;
}
export interface UniformConfig extends CommonConfig {
  kind: 'uniform';
  footprint?: NumberLike;
  accessSize?: NumberLike;
}
export interface ZipfConfig extends CommonConfig {
  kind: 'zipf';
  pages?: NumberLike;
  pageSize?: NumberLike;
  s?: number;
  accessSize?: NumberLike;
  scatter?: boolean;
}
export interface RingConfig extends Omit<CommonConfig, 'mix'> {
  kind: 'ring';
  entries?: NumberLike;
  bufSize?: NumberLike;
  recycle?: Recycle;
  poolBuffers?: NumberLike;
  hold?: NumberLike;
  completion?: Completion;
  packetBytes?: NumberLike;
  headroom?: NumberLike;
  txFraction?: number;
  descriptors?: boolean;
}
export interface SgConfig extends CommonConfig {
  kind: 'sg';
  footprint?: NumberLike;
  pageSize?: NumberLike;
  segments?: RangeLike;
  segmentBytes?: RangeLike;
  align?: NumberLike;
}
export interface StorageConfig extends CommonConfig {
  kind: 'storage';
  footprint?: NumberLike;
  seqFraction?: number;
  seqBytes?: NumberLike;
  randBytes?: NumberLike;
  seqStreams?: NumberLike;
}
export interface InterleaveConfig {
  kind: 'interleave';
  seed?: number;
  /** Only inside another interleave's streams. */
  weight?: number;
  streams: WorkloadConfig[];
  order?: InterleaveOrder;
  run?: number;
}

export type WorkloadConfig =
  | SequentialConfig
  | UniformConfig
  | ZipfConfig
  | RingConfig
  | SgConfig
  | StorageConfig
  | InterleaveConfig;

export const WORKLOAD_KINDS = ['sequential', 'uniform', 'zipf', 'ring', 'sg', 'storage', 'interleave'] as const;

// ------------------------------------------------------------------ errors

export class WorkloadConfigError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = 'WorkloadConfigError';
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function fail(path: string, problem: string): never {
  throw new WorkloadConfigError(path, problem);
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const LIMIT = 2 ** 48; // sizes: at most 256 TiB

function fmtNum(n: number): string {
  if (n >= GiB && n % GiB === 0) return `${n / GiB} GiB`;
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  return String(n);
}

class Fields {
  private readonly used = new Set<string>();

  constructor(
    readonly o: Record<string, unknown>,
    readonly path: string,
  ) {}

  static of(v: unknown, path: string): Fields {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(path, `expected an object, got ${describe(v)}`);
    return new Fields(v as Record<string, unknown>, path);
  }

  p(k: string): string {
    return `${this.path}.${k}`;
  }

  get(k: string): unknown {
    this.used.add(k);
    return this.o[k];
  }

  has(k: string): boolean {
    return this.o[k] !== undefined;
  }

  /** Fails on properties nobody asked for. */
  done(): void {
    const allowed = [...this.used];
    for (const k of Object.keys(this.o)) {
      if (!this.used.has(k)) fail(this.p(k), `unknown property (expected one of: ${allowed.join(', ')})`);
    }
  }

  /** An integer in [min, max]: a JSON number or a "0x..." string. */
  int(k: string, dflt: number, min: number, max: number, what = 'an integer'): number {
    const v = this.get(k);
    if (v === undefined) return dflt;
    let n: number | undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v)) n = v;
    else if (typeof v === 'string' && /^0x[0-9a-fA-F]{1,13}$/.test(v)) n = parseInt(v.slice(2), 16);
    if (n === undefined) fail(this.p(k), `expected ${what} (a number or a "0x..." string), got ${describe(v)}`);
    if (n < min || n > max) fail(this.p(k), `expected ${what} from ${fmtNum(min)} to ${fmtNum(max)}, got ${describe(v)}`);
    return n;
  }

  /** A finite number in [min, max] (or (min, max] when minExclusive). */
  real(k: string, dflt: number, min: number, max: number, minExclusive = false): number {
    const v = this.get(k);
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(this.p(k), `expected a number, got ${describe(v)}`);
    if (minExclusive ? v <= min : v < min) fail(this.p(k), `expected a number ${minExclusive ? '>' : '>='} ${min}, got ${describe(v)}`);
    if (v > max) fail(this.p(k), `expected a number <= ${max}, got ${describe(v)}`);
    return v;
  }

  bool(k: string, dflt: boolean): boolean {
    const v = this.get(k);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') fail(this.p(k), `expected true or false, got ${describe(v)}`);
    return v;
  }

  oneOf<T extends string>(k: string, dflt: T, options: readonly T[]): T {
    const v = this.get(k);
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      fail(this.p(k), `expected ${options.map((o) => JSON.stringify(o)).join(' or ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  /** A VA: a safe integer, or "0x..." / "-0x..." (upper-half VAs negative). */
  va(k: string, dflt: number): number {
    const v = this.get(k);
    if (v === undefined) return dflt;
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    if (typeof v === 'string') {
      const n = parseVa(v);
      if (n !== undefined) return n;
    }
    return fail(this.p(k), `expected a VA (an integer below 2^53 in magnitude, or a "0x..." string), got ${describe(v)}`);
  }

  /** An integer or an inclusive [min, max] range of integers within [lo, hi]. */
  range(k: string, dflt: [number, number], lo: number, hi: number, what: string): [number, number] {
    const v = this.get(k);
    if (v === undefined) return dflt;
    if (Array.isArray(v)) {
      if (v.length !== 2) fail(this.p(k), `expected ${what} or a [min, max] pair, got ${describe(v)}`);
      const sub = new Fields({ 0: v[0], 1: v[1] }, this.path);
      const a = sub.intAt(`${k}[0]`, v[0], lo, hi, what);
      const b = sub.intAt(`${k}[1]`, v[1], lo, hi, what);
      if (a > b) fail(this.p(k), `expected min <= max, got ${describe(v)}`);
      return [a, b];
    }
    const n = this.intAt(k, v, lo, hi, what);
    return [n, n];
  }

  private intAt(k: string, v: unknown, min: number, max: number, what: string): number {
    return new Fields({ [k]: v }, this.path).int(k, 0, min, max, what);
  }

  mix(k: string): AccMix {
    const v = this.get(k);
    if (v === undefined) return { r: 1, w: 0, x: 0 };
    const f = Fields.of(v, this.p(k));
    const m = { r: f.real('r', 0, 0, 1e9), w: f.real('w', 0, 0, 1e9), x: f.real('x', 0, 0, 1e9) };
    f.done();
    if (m.r + m.w + m.x <= 0) fail(this.p(k), 'expected at least one of r, w, x to be > 0');
    return m;
  }
}

// ------------------------------------------------------------------ resolved configurations

interface Common {
  sid: number;
  seed: number;
  base: number;
  mix: AccMix;
  maxBurst: number;
}

/** A validated configuration with every default filled in (numbers only; JSON-able). */
export type ResolvedConfig =
  | ({ kind: 'sequential' } & Common & { footprint: number; accessSize: number; stride: number })
  | ({ kind: 'uniform' } & Common & { footprint: number; accessSize: number })
  | ({ kind: 'zipf' } & Common & { pages: number; pageSize: number; s: number; accessSize: number; scatter: boolean })
  | ({ kind: 'ring' } & Omit<Common, 'mix'> & {
        entries: number;
        bufSize: number;
        recycle: Recycle;
        poolBuffers: number;
        /** Page-pool only. */
        hold?: number;
        /** Page-pool only. */
        completion?: Completion;
        packetBytes: number;
        headroom: number;
        txFraction: number;
        descriptors: boolean;
      })
  | ({ kind: 'sg' } & Common & {
        footprint: number;
        pageSize: number;
        segments: [number, number];
        segmentBytes: [number, number];
        align: number;
      })
  | ({ kind: 'storage' } & Common & {
        footprint: number;
        seqFraction: number;
        seqBytes: number;
        randBytes: number;
        seqStreams: number;
      })
  | { kind: 'interleave'; seed: number; order: InterleaveOrder; run: number; streams: Array<ResolvedConfig & { weight: number }> };

/** The [base, base + extent) region must stay in one half of the VA space and below 2^53. */
function checkRegion(path: string, base: number, extent: number): void {
  const end = base + extent;
  if (!Number.isSafeInteger(end)) fail(path, `the region [${formatVa(base)}, +${extent}) ends beyond 2^53`);
  if (base < 0 && end > 0) fail(path, `the region [${formatVa(base)}, +${extent}) crosses from the upper (TTBR1) half into the lower half`);
}

function resolveAt(v: unknown, path: string, inherited: { sid: number; seed: number } | null, inInterleave: boolean): ResolvedConfig & { weight?: number } {
  const f = Fields.of(v, path);
  const kind = f.oneOf('kind', undefined as unknown as (typeof WORKLOAD_KINDS)[number], WORKLOAD_KINDS);
  if (kind === undefined) fail(f.p('kind'), `required: one of ${WORKLOAD_KINDS.map((k) => JSON.stringify(k)).join(', ')}`);
  const seed = f.int('seed', inherited?.seed ?? 1, 0, 0xffffffff, 'a seed');
  const weight = inInterleave ? f.real('weight', 1, 0, 1e9, true) : undefined;
  const withWeight = <T extends object>(r: T): T & { weight?: number } => (weight === undefined ? r : { ...r, weight });

  if (kind === 'interleave') {
    const sv = f.get('streams');
    if (!Array.isArray(sv)) fail(f.p('streams'), `expected a non-empty array of workload configurations, got ${describe(sv)}`);
    if (sv.length === 0 || sv.length > 4096) fail(f.p('streams'), `expected 1 to 4096 streams, got ${sv.length}`);
    const order = f.oneOf<InterleaveOrder>('order', 'weighted', ['weighted', 'round-robin']);
    const run = f.int('run', 1, 1, 1 << 20, 'a run length');
    f.done();
    const streams = sv.map((c, i) => {
      const r = resolveAt(c, `${f.p('streams')}[${i}]`, { sid: i, seed: deriveSeed(seed, i) }, true);
      return r as ResolvedConfig & { weight: number };
    });
    return withWeight({ kind, seed, order, run, streams });
  }

  const sid = f.int('sid', inherited?.sid ?? 0, 0, 0x7fffffff, 'a stream ID');
  const base = f.va('base', 0);
  const maxBurst = f.int('maxBurst', 4096, 1, 4096, 'a burst size');
  const common = { sid, seed, base, maxBurst };

  switch (kind) {
    case 'sequential': {
      const mix = f.mix('mix');
      const footprint = f.int('footprint', 64 * MiB, 1, LIMIT, 'a size');
      const accessSize = f.int('accessSize', 64, 1, footprint, 'an access size (at most the footprint)');
      const stride = f.int('stride', accessSize, 1, LIMIT, 'a stride');
      f.done();
      checkRegion(path, base, footprint);
      return withWeight({ kind, ...common, mix, footprint, accessSize, stride });
    }
    case 'uniform': {
      const mix = f.mix('mix');
      const footprint = f.int('footprint', GiB, 1, LIMIT, 'a size');
      const accessSize = f.int('accessSize', 64, 1, footprint, 'an access size (at most the footprint)');
      f.done();
      checkRegion(path, base, footprint);
      return withWeight({ kind, ...common, mix, footprint, accessSize });
    }
    case 'zipf': {
      const mix = f.mix('mix');
      const scatter = f.bool('scatter', true);
      const maxPages = scatter ? 1 << 24 : 0x7fffffff;
      const pages = f.int('pages', 262144, 1, maxPages, scatter ? 'a page count (scatter keeps a 4-byte permutation entry per page; use scatter: false above)' : 'a page count');
      const pageSize = f.int('pageSize', 4096, 1, GiB, 'a page size');
      const s = f.real('s', 0.99, 0, 100, true);
      const accessSize = f.int('accessSize', 64, 1, pageSize, 'an access size (at most the page size)');
      f.done();
      checkRegion(path, base, pages * pageSize);
      return withWeight({ kind, ...common, mix, pages, pageSize, s, accessSize, scatter });
    }
    case 'ring': {
      if (f.has('mix')) {
        f.get('mix');
        fail(f.p('mix'), 'not used by "ring": rx data is written, tx data read, descriptors read then written back (set txFraction instead)');
      }
      const entries = f.int('entries', 256, 1, 65536, 'a ring size');
      const bufSize = f.int('bufSize', 2048, 1, 1 << 20, 'a buffer size');
      const recycle = f.oneOf<Recycle>('recycle', 'ring', ['ring', 'page-pool']);
      let hold = 0;
      let completion: Completion = 'shuffled';
      if (recycle === 'page-pool') {
        hold = f.int('hold', Math.floor(entries / 2), 0, 1 << 24, 'a buffer count');
        completion = f.oneOf<Completion>('completion', 'shuffled', ['shuffled', 'in-order']);
      } else {
        for (const k of ['hold', 'completion']) {
          if (f.has(k)) {
            f.get(k);
            fail(f.p(k), 'only for recycle "page-pool"');
          }
        }
      }
      const poolBuffers = f.int('poolBuffers', entries + hold, 1, 1 << 24, 'a buffer count');
      if (poolBuffers < entries + hold) {
        fail(
          f.p('poolBuffers'),
          recycle === 'ring'
            ? `expected at least entries (${entries}) buffers, got ${poolBuffers}`
            : `expected at least entries + hold (${entries} + ${hold} = ${entries + hold}) buffers, got ${poolBuffers}`,
        );
      }
      const headroom = f.int('headroom', Math.min(64, bufSize - 1), 0, bufSize - 1, 'a headroom (less than bufSize)');
      const packetBytes = f.int('packetBytes', Math.min(1514, bufSize - headroom), 1, bufSize - headroom, `a packet size (at most bufSize - headroom = ${bufSize - headroom})`);
      const txFraction = f.real('txFraction', 0.5, 0, 1);
      const descriptors = f.bool('descriptors', true);
      f.done();
      const poolBytes = Math.ceil((poolBuffers * bufSize) / 4096) * 4096;
      const ringBytes = Math.ceil((entries * 16) / 4096) * 4096;
      checkRegion(path, base, 2 * poolBytes + 2 * ringBytes);
      const pool = recycle === 'page-pool' ? { hold, completion } : {};
      return withWeight({ kind, ...common, entries, bufSize, recycle, poolBuffers, ...pool, packetBytes, headroom, txFraction, descriptors });
    }
    case 'sg': {
      const mix = f.mix('mix');
      const pageSize = f.int('pageSize', 4096, 1, GiB, 'a page size');
      const footprint = f.int('footprint', 256 * MiB, pageSize, LIMIT, `a size (at least pageSize, ${pageSize})`);
      const segments = f.range('segments', [1, 16], 1, 1 << 16, 'a segment count');
      const align = f.int('align', 512, 1, pageSize, 'an alignment');
      const segmentBytes = f.range('segmentBytes', [Math.min(512, pageSize), Math.min(4096, pageSize)], 1, pageSize, `a segment size (at most pageSize, ${pageSize})`);
      f.done();
      if (segmentBytes[0] % align !== 0 || segmentBytes[1] % align !== 0) {
        fail(f.p('segmentBytes'), `expected multiples of align (${align}), got ${describe(f.o.segmentBytes ?? segmentBytes)}`);
      }
      checkRegion(path, base, footprint);
      return withWeight({ kind, ...common, mix, footprint, pageSize, segments, segmentBytes, align });
    }
    case 'storage': {
      const mix = f.mix('mix');
      const footprint = f.int('footprint', GiB, 4096, LIMIT, 'a size (at least 4096)');
      const seqFraction = f.real('seqFraction', 0.25, 0, 1);
      const seqStreams = f.int('seqStreams', 1, 1, 1024, 'a stream count');
      const slice = Math.floor(footprint / seqStreams / 4096) * 4096;
      if (slice < 4096) fail(f.p('seqStreams'), `too many streams for the footprint: each needs at least 4 KiB`);
      const seqBytes = f.int('seqBytes', Math.min(128 * KiB, slice), 1, slice, `an I/O size (at most footprint / seqStreams rounded down to 4 KiB, ${slice})`);
      const randBytes = f.int('randBytes', 4096, 1, footprint, 'an I/O size (at most the footprint)');
      f.done();
      checkRegion(path, base, footprint);
      return withWeight({ kind, ...common, mix, footprint, seqFraction, seqBytes, randBytes, seqStreams });
    }
  }
  return fail(f.p('kind'), `unknown kind ${describe(kind)}`);
}

/** Validates a configuration and fills its defaults. Throws WorkloadConfigError. */
export function resolveConfig(config: unknown, overrides: { seed?: number } = {}): ResolvedConfig {
  let c = config;
  if (overrides.seed !== undefined) {
    if (!Number.isInteger(overrides.seed) || overrides.seed < 0 || overrides.seed > 0xffffffff) {
      fail('seed', `expected a seed from 0 to 4294967295, got ${describe(overrides.seed)}`);
    }
    if (typeof c === 'object' && c !== null && !Array.isArray(c)) c = { ...(c as object), seed: overrides.seed };
  }
  return resolveAt(c, '$', null, false);
}

/** Builds the generator a resolved configuration describes. */
export function buildGenerator(r: ResolvedConfig): Generator {
  switch (r.kind) {
    case 'sequential':
      return new SequentialGenerator(r);
    case 'uniform':
      return new UniformGenerator(r);
    case 'zipf':
      return new ZipfGenerator(r);
    case 'ring':
      return new RingGenerator({ ...r, hold: r.hold ?? 0, completion: r.completion ?? 'shuffled' });
    case 'sg':
      return new SgGenerator({
        ...r,
        segmentsMin: r.segments[0],
        segmentsMax: r.segments[1],
        segmentBytesMin: r.segmentBytes[0],
        segmentBytesMax: r.segmentBytes[1],
      });
    case 'storage':
      return new StorageGenerator(r);
    case 'interleave':
      return new InterleaveGenerator(
        r.streams.map((s) => buildGenerator(s)),
        r.streams.map((s) => s.weight),
        r.order,
        r.run,
        r.seed,
      );
  }
}

/** Validates a configuration (a plain object, e.g. parsed JSON) and builds its generator. */
export function createGenerator(config: unknown, overrides: { seed?: number } = {}): Generator {
  return buildGenerator(resolveConfig(config, overrides));
}

// ------------------------------------------------------------------ presets

export interface Preset {
  description: string;
  config: WorkloadConfig;
}

const BASE = '0x100000000';

const ringPagePool: RingConfig = {
  kind: 'ring',
  base: BASE,
  entries: 1024,
  bufSize: 4096,
  recycle: 'page-pool',
  poolBuffers: 2048,
  hold: 512,
  completion: 'shuffled',
  packetBytes: 1514,
  headroom: 256,
  txFraction: 0.5,
};

/** Named presets (every footprint starts at IOVA 4 GiB). */
export const WORKLOAD_PRESETS: Readonly<Record<string, Preset>> = {
  'seq-stream': {
    description: 'sequential streaming reads, 256-byte accesses at a 256-byte stride over 64 MiB',
    config: { kind: 'sequential', base: BASE, footprint: 64 * MiB, accessSize: 256, stride: 256, mix: { r: 1 } },
  },
  'uniform-1g': {
    description: 'uniform random 64-byte accesses over 1 GiB, 70% reads / 30% writes',
    config: { kind: 'uniform', base: BASE, footprint: GiB, accessSize: 64, mix: { r: 0.7, w: 0.3 } },
  },
  'zipf-0.99': {
    description: 'Zipf (s = 0.99) hot set over 262144 pages of 4 KiB (1 GiB), scattered, 64-byte accesses, 70% reads',
    config: { kind: 'zipf', base: BASE, pages: 262144, pageSize: 4096, s: 0.99, accessSize: 64, scatter: true, mix: { r: 0.7, w: 0.3 } },
  },
  'ring-4k': {
    description: 'NIC rx/tx rings of 1024 descriptors, 4 KiB buffers reposted in ring order, 1514-byte packets, half rx half tx',
    config: { kind: 'ring', base: BASE, entries: 1024, bufSize: 4096, recycle: 'ring', packetBytes: 1514, headroom: 256, txFraction: 0.5 },
  },
  'ring-pagepool': {
    description: 'the ring-4k NIC with page_pool recycling: 2048-buffer pools, the stack holds 512, frees them shuffled onto a LIFO free list',
    config: ringPagePool,
  },
  'sg-list': {
    description: 'scatter-gather I/Os of 1-16 segments (512 B - 4 KiB, 512-aligned) at random pages of 256 MiB, half reads half writes',
    config: { kind: 'sg', base: BASE, footprint: 256 * MiB, segments: [1, 16], segmentBytes: [512, 4096], align: 512, mix: { r: 0.5, w: 0.5 } },
  },
  'storage-mix': {
    description: 'storage: 25% large sequential I/Os (128 KiB, 2 streams) and 75% small random ones (4 KiB) over 1 GiB, 70% reads',
    config: { kind: 'storage', base: BASE, footprint: GiB, seqFraction: 0.25, seqBytes: 128 * KiB, randBytes: 4096, seqStreams: 2, mix: { r: 0.7, w: 0.3 } },
  },
  'multi-device': {
    description: 'three devices interleaved in runs of 8: a page-pool NIC (sid 0x100), storage (0x200) and an accelerator with Zipf reads/writes/instruction fetches (0x300), weights 4:2:1',
    config: {
      kind: 'interleave',
      order: 'weighted',
      run: 8,
      streams: [
        { ...ringPagePool, sid: 0x100, weight: 4 },
        { kind: 'storage', sid: 0x200, weight: 2, base: BASE, footprint: GiB, seqFraction: 0.25, seqBytes: 128 * KiB, randBytes: 4096, mix: { r: 0.7, w: 0.3 } },
        { kind: 'zipf', sid: 0x300, weight: 1, base: BASE, pages: 65536, s: 0.99, accessSize: 64, mix: { r: 0.6, w: 0.2, x: 0.2 } },
      ],
    },
  },
};

export function workloadPresetNames(): string[] {
  return Object.keys(WORKLOAD_PRESETS);
}

export class UnknownWorkloadError extends Error {
  constructor(readonly preset: string) {
    super(`unknown workload preset ${JSON.stringify(preset)} (known: ${workloadPresetNames().join(', ')})`);
    this.name = 'UnknownWorkloadError';
  }
}

/** A preset's configuration (a fresh deep copy: callers may change it). */
export function presetConfig(name: string): WorkloadConfig {
  const p = Object.prototype.hasOwnProperty.call(WORKLOAD_PRESETS, name) ? WORKLOAD_PRESETS[name] : undefined;
  if (p === undefined) throw new UnknownWorkloadError(name);
  return structuredClone(p.config);
}

/** The generator of a preset, with its seed (default 1). */
export function createPreset(name: string, seed = 1): Generator {
  return createGenerator(presetConfig(name), { seed });
}
