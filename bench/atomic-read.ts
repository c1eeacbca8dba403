/**
 * `npm run bench:atomics`: ways to read a 64-bit descriptor from shared memory
 * as two 32-bit numbers, side by side (tinybench), on random reads over
 * 64 MiB and on cache-hot reads. Only the tear-free ones are correct under the
 * ECMAScript memory model when another thread writes the descriptor:
 *
 *   wasm-atomic-scratch  i64.atomic.load, high word via a per-thread scratch slot (the project's choice)
 *   wasm-atomic-global   i64.atomic.load, high word via an exported mutable global's .value
 *   atomics-bigint-asint Atomics.load(BigInt64Array) + BigInt.asIntN(32, ...) (the BigInt never escapes)
 *   atomics-bigint-mask  Atomics.load(BigInt64Array) + Number(v & 0xffffffffn), Number(v >> 32n)
 *   plain-i32-pair       two plain Int32Array loads             (NOT tear-free)
 *   atomics-i32-pair     two Atomics.load on an Int32Array      (NOT tear-free: A->B->A races)
 *   plain-biguint64      a plain BigUint64Array load            (NOT tear-free)
 *
 * Figures: ns per read, median of --rounds tinybench runs, with min and max.
 * --quick: 2 rounds of 100 ms; --tiny (for tests): 1 round of 20 ms over 16 MiB.
 * results/atomic-read.json follows the smmu-farm-bench/1 schema (src/bench/schema.ts).
 */

import { Bench } from 'tinybench';
import { PhysMem } from '../src/memory/phys.js';
import { BENCH_SCHEMA, fromSpread, type BenchDoc } from '../src/bench/schema.js';
import { arg, benchMode, commandLine, fmt, machine, spread, publish, runMain, type Spread } from './lib.js';

function leb(n: number): number[] {
  const o: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    o.push(b);
  } while (n);
  return o;
}
const str = (s: string): number[] => [...leb(s.length), ...Buffer.from(s)];
const sec = (id: number, b: number[]): number[] => [id, ...leb(b.length), ...b];

/** A module with `ldg(off) -> lo` that leaves the high word in an exported mutable global `hi`. */
function globalVariant(memory: WebAssembly.Memory, pages: number): { ldg: (off: number) => number; hi: { value: number } } {
  const bytes = new Uint8Array([
    0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...sec(1, [1, 0x60, 1, 0x7f, 1, 0x7f]),
    ...sec(2, [1, ...str('env'), ...str('mem'), 0x02, 0x03, ...leb(pages), ...leb(pages)]),
    ...sec(3, [1, 0]),
    ...sec(6, [1, 0x7f, 1, 0x41, 0, 0x0b]),
    ...sec(7, [2, ...str('ldg'), 0, 0, ...str('hi'), 3, 0]),
    ...sec(10, (() => {
      const body = [1, 1, 0x7e, 0x20, 0, 0xfe, 0x11, 3, 0, 0x22, 1, 0x42, 32, 0x88, 0xa7, 0x24, 0, 0x20, 1, 0xa7, 0x0b];
      return [1, ...leb(body.length), ...body];
    })()),
  ]);
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem: memory } });
  return inst.exports as unknown as { ldg: (off: number) => number; hi: { value: number } };
}

async function main(): Promise<void> {
  const mode = benchMode();
  const quick = mode !== 'full';
  const rounds = Number(arg('--rounds', mode === 'tiny' ? '1' : quick ? '2' : '5'));
  const timeMs = Number(arg('--time', mode === 'tiny' ? '20' : quick ? '100' : '300'));
  const outDir = arg('--out', 'results');
  const SIZE = mode === 'tiny' ? 16 << 20 : 64 << 20;
  const mem = PhysMem.create({ regions: [{ base: 0, size: SIZE }] });
  const words = SIZE / 8;
  const base = mem.offsetOf(0);
  for (let i = 0; i < words; i += 1) mem.storeAt(base + i * 8, (i * 2654435761) | 0, (i * 40503) | 0);
  const i32 = new Int32Array(mem.buffer);
  const b64 = new BigInt64Array(mem.buffer);
  const bu64 = new BigUint64Array(mem.buffer);
  const g = globalVariant(mem.memory, mem.buffer.byteLength / 65536);
  const N = 4096;
  const patterns: Record<string, Int32Array> = {
    // 2^20 random offsets, swept N at a time, so most reads miss the caches.
    random: Int32Array.from({ length: 1 << 20 }, () => base + Math.floor(Math.random() * words) * 8),
    hot: Int32Array.from({ length: N }, (_, i) => base + ((i * 33) % 512) * 8),
  };
  let sink = 0;
  const candidates: Record<string, { tearFree: boolean; fn: (offs: Int32Array, start: number) => number }> = {
    'wasm-atomic-scratch': {
      tearFree: true,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const lo = mem.loadAt(offs[(start + i) & (offs.length - 1)]!);
          a = (a + lo + mem.hi) | 0;
        }
        return a;
      },
    },
    'wasm-atomic-global': {
      tearFree: true,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const lo = g.ldg(offs[(start + i) & (offs.length - 1)]!);
          a = (a + lo + g.hi.value) | 0;
        }
        return a;
      },
    },
    'atomics-bigint-asint': {
      tearFree: true,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const v = Atomics.load(b64, offs[(start + i) & (offs.length - 1)]! >> 3);
          a = (a + Number(BigInt.asIntN(32, v)) + Number(BigInt.asIntN(32, v >> 32n))) | 0;
        }
        return a;
      },
    },
    'atomics-bigint-mask': {
      tearFree: true,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const v = Atomics.load(b64, offs[(start + i) & (offs.length - 1)]! >> 3);
          a = (a + Number(v & 0xffffffffn) + Number((v >> 32n) & 0xffffffffn)) | 0;
        }
        return a;
      },
    },
    'plain-i32-pair': {
      tearFree: false,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const j = offs[(start + i) & (offs.length - 1)]! >> 2;
          a = (a + i32[j]! + i32[j + 1]!) | 0;
        }
        return a;
      },
    },
    'atomics-i32-pair': {
      tearFree: false,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const j = offs[(start + i) & (offs.length - 1)]! >> 2;
          a = (a + Atomics.load(i32, j) + Atomics.load(i32, j + 1)) | 0;
        }
        return a;
      },
    },
    'plain-biguint64': {
      tearFree: false,
      fn: (offs, start) => {
        let a = 0;
        for (let i = 0; i < N; i++) {
          const v = bu64[offs[(start + i) & (offs.length - 1)]! >> 3]!;
          a = (a + Number(v & 0xffffffffn) + Number(v >> 32n)) | 0;
        }
        return a;
      },
    },
  };
  const results: Record<string, Record<string, Spread & { tearFree: boolean }>> = {};
  for (const [pattern, offs] of Object.entries(patterns)) {
    results[pattern] = {};
    for (const [name, c] of Object.entries(candidates)) {
      const samples: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const bench = new Bench({ time: timeMs, warmupTime: Math.min(100, timeMs) });
        let cursor = 0;
        bench.add(name, () => {
          sink ^= c.fn(offs, cursor);
          cursor = (cursor + N) & (offs.length - 1);
        });
        await bench.run();
        samples.push((bench.tasks[0]!.result!.latency.p50! * 1e6) / N);
      }
      results[pattern]![name] = { ...spread(samples), tearFree: c.tearFree };
    }
  }
  const m = machine();
  const figures = Object.entries(results).flatMap(([pattern, byName]) =>
    Object.entries(byName).map(([construction, r]) =>
      fromSpread('ns per read', 'ns', { construction, pattern, tearFree: r.tearFree ? 'yes' : 'no' }, r),
    ),
  );
  const json: BenchDoc = {
    schema: BENCH_SCHEMA,
    suite: 'atomics',
    benchmark: 'atomic-read',
    command: commandLine('bench:atomics', mode),
    config: { mode, memoryMiB: SIZE / 2 ** 20, rounds, tinybenchTimeMs: timeMs, readsPerCall: N, patterns: Object.keys(patterns) },
    headline: { title: 'Reading a 64-bit descriptor: ns per read, by construction (random over the buffer vs cache-hot)', metric: 'ns per read', x: 'construction', series: 'pattern' },
    figures,
    machine: m,
    rounds,
    tinybenchTimeMs: timeMs,
    readsPerCall: N,
    results,
    sink,
  };
  const md = [
    '# Reading a 64-bit descriptor as two 32-bit numbers',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    `ns per read: median of ${rounds} tinybench runs (${timeMs} ms each, ${N} reads per call), min-max beside it. Random: 2^20 offsets drawn uniformly over ${SIZE / 2 ** 20} MiB, swept in order; hot: 512 words.`,
    '',
    '| construction | tear-free | random ns/read | hot ns/read | hot, relative to plain-i32-pair |',
    '|---|---|---:|---:|---:|',
    ...Object.keys(candidates).map((name) => {
      const r = results.random![name]!;
      const h = results.hot![name]!;
      return `| ${name} | ${r.tearFree ? 'yes' : '**no**'} | ${fmt(r.median, 2)} (${fmt(r.min, 2)}-${fmt(r.max, 2)}) | ${fmt(h.median, 2)} (${fmt(h.min, 2)}-${fmt(h.max, 2)}) | ${fmt(h.median / results.hot!['plain-i32-pair']!.median, 1)}x |`;
    }),
    '',
    'The project reads descriptors with `wasm-atomic-scratch` (src/memory/atomic64.ts): the fastest construction that is single-copy atomic by the language\'s memory model.',
    '',
  ].join('\n');
  publish('atomic-read', json, md, outDir);
}

runMain('atomics', main);
