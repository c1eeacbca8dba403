/**
 * Single-copy atomic 64-bit loads and stores on shared memory, for page-table
 * descriptors.
 *
 * Why this exists. Descriptors are updated by one thread while others walk
 * them (break-before-make, permission changes, unmaps). The ECMAScript memory
 * model makes a plain `BigUint64Array` or `Float64Array` read of a racing
 * location *not* tear-free, and two 32-bit reads can combine halves of two
 * different writes (A -> B -> A races give a torn (hiA, loB)). Only an atomic
 * 64-bit access is correct: `Atomics.load` on a `BigInt64Array`, or
 * WebAssembly's `i64.atomic.load` / `i64.atomic.store`, which the threads
 * proposal integrates into the same memory model.
 *
 * What we measured (bench/atomic-read.ts, `npm run bench:atomics`; results in
 * results/atomic-read.md): `Atomics.load` on a BigInt64Array costs 30-50 ns per
 * read once the halves are turned back into numbers, because each BigInt is a
 * heap allocation that V8 (Node 20) does not eliminate. A call into a 30-byte
 * wasm function that does one `i64.atomic.load`, returns the low word and
 * stores the high word into a per-thread scratch slot costs about 2-4 ns, close
 * to a plain 32-bit pair (0.6-3 ns, depending on cache misses). So descriptor
 * reads go through wasm, and the memory they read is a shared
 * `WebAssembly.Memory` whose buffer is a SharedArrayBuffer.
 *
 * The scratch slot is only ever touched by the thread that owns it: the high
 * word is written by that thread's wasm call and read back by the same thread,
 * so program order alone makes the read see it.
 *
 * The module is assembled here byte by byte (no toolchain needed); the text
 * form is given next to each function body.
 */

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function name(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...leb128(bytes.length), ...bytes];
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb128(body.length), ...body];
}

const I32 = 0x7f;
const I64 = 0x7e;

/** Builds the module that imports `env.mem` (shared, `pages` pages, fixed size). */
function moduleBytes(pages: number): Uint8Array {
  const types = section(1, [
    3,
    // type 0: (i32 off, i32 scratch) -> i32
    0x60, 2, I32, I32, 1, I32,
    // type 1: (i32 off, i32 lo, i32 hi) -> ()
    0x60, 3, I32, I32, I32, 0,
    // type 2: (i32 off, i32 expectLo, i32 expectHi, i32 lo, i32 hi) -> i32
    0x60, 5, I32, I32, I32, I32, I32, 1, I32,
  ]);
  // (import "env" "mem" (memory pages pages shared))
  const imports = section(2, [1, ...name('env'), ...name('mem'), 0x02, 0x03, ...leb128(pages), ...leb128(pages)]);
  const funcs = section(3, [3, 0, 1, 2]);
  const exports = section(7, [3, ...name('load'), 0x00, 0, ...name('store'), 0x00, 1, ...name('cas'), 0x00, 2]);

  // (func $load (param $off i32) (param $scratch i32) (result i32) (local $v i64)
  //   (local.set $v (i64.atomic.load (local.get $off)))
  //   (i32.store (local.get $scratch) (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.const 32))))
  //   (i32.wrap_i64 (local.get $v)))
  const load = [
    1, 1, I64,
    0x20, 0, 0xfe, 0x11, 3, 0, 0x21, 2,
    0x20, 1, 0x20, 2, 0x42, 32, 0x88, 0xa7, 0x36, 2, 0,
    0x20, 2, 0xa7,
    0x0b,
  ];
  // (func $store (param $off i32) (param $lo i32) (param $hi i32)
  //   (i64.atomic.store (local.get $off)
  //     (i64.or (i64.extend_i32_u (local.get $lo))
  //             (i64.shl (i64.extend_i32_u (local.get $hi)) (i64.const 32)))))
  const store = [
    0,
    0x20, 0,
    0x20, 1, 0xad,
    0x20, 2, 0xad, 0x42, 32, 0x86,
    0x84,
    0xfe, 0x18, 3, 0,
    0x0b,
  ];
  // (func $cas (param $off i32) (param $elo i32) (param $ehi i32) (param $lo i32) (param $hi i32) (result i32)
  //   ;; returns 1 when the 64-bit word equalled (ehi:elo) and was replaced by (hi:lo)
  //   (i64.eq (i64.atomic.rmw.cmpxchg (local.get $off) expected replacement) expected))
  const cas = [
    0,
    0x20, 0,
    0x20, 1, 0xad, 0x20, 2, 0xad, 0x42, 32, 0x86, 0x84,
    0x20, 3, 0xad, 0x20, 4, 0xad, 0x42, 32, 0x86, 0x84,
    0xfe, 0x49, 3, 0,
    0x20, 1, 0xad, 0x20, 2, 0xad, 0x42, 32, 0x86, 0x84,
    0x51,
    0x0b,
  ];
  const code = section(10, [3, ...leb128(load.length), ...load, ...leb128(store.length), ...store, ...leb128(cas.length), ...cas]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...imports, ...funcs, ...exports, ...code]);
}

/** The three atomic entry points over one shared memory, for one thread. */
export interface Atomic64 {
  /** `i64.atomic.load` at byte offset `off` (8-aligned); returns bits [31:0] as int32, writes bits [63:32] to `scratch`. */
  load(off: number, scratch: number): number;
  /** `i64.atomic.store` of (hi:lo) at byte offset `off`. */
  store(off: number, lo: number, hi: number): void;
  /** `i64.atomic.rmw.cmpxchg`: replaces (ehi:elo) by (hi:lo); 1 on success, 0 when the word held something else. */
  cas(off: number, elo: number, ehi: number, lo: number, hi: number): number;
}

const modules = new Map<number, WebAssembly.Module>();

/** Instantiates the atomic accessors for `memory` in the calling thread. */
export function atomic64For(memory: WebAssembly.Memory): Atomic64 {
  const pages = memory.buffer.byteLength / 65536;
  let mod = modules.get(pages);
  if (mod === undefined) {
    mod = new WebAssembly.Module(moduleBytes(pages));
    modules.set(pages, mod);
  }
  const inst = new WebAssembly.Instance(mod, { env: { mem: memory } });
  return inst.exports as unknown as Atomic64;
}
