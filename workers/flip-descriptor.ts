/**
 * Worker entry for the descriptor race tests: rewrites one descriptor as fast
 * as it can while other threads walk it, cycling through a list of 64-bit
 * values (valid -> valid, and valid -> invalid -> valid for break-before-make),
 * each written with one single-copy atomic 64-bit store.
 *
 * workerData: { mem: PhysMemShared, pa: number, values: [lo, hi][], control: SharedArrayBuffer }
 * control (Int32Array): [0] = stop flag (set by the parent), [1] = ready flag,
 * [2..3] = writes done (low/high 32 bits of the count).
 */

import { parentPort, workerData } from 'node:worker_threads';
import { PhysMem, type PhysMemShared } from '../src/memory/phys.js';

interface FlipData {
  mem: PhysMemShared;
  pa: number;
  values: Array<[number, number]>;
  control: SharedArrayBuffer;
}

const data = workerData as FlipData;
const mem = PhysMem.attach(data.mem);
const control = new Int32Array(data.control);
const off = mem.offsetOf(data.pa);
if (off < 0) throw new Error(`flip-descriptor: PA 0x${data.pa.toString(16)} is not in RAM`);
const los = Int32Array.from(data.values.map((v) => v[0] | 0));
const his = Int32Array.from(data.values.map((v) => v[1] | 0));
const n = los.length;

Atomics.store(control, 1, 1);
Atomics.notify(control, 1);
let writes = 0;
let i = 0;
while (Atomics.load(control, 0) === 0) {
  for (let k = 0; k < 4096; k++) {
    mem.storeAt(off, los[i]!, his[i]!);
    i = i + 1 === n ? 0 : i + 1;
  }
  writes += 4096;
}
Atomics.store(control, 2, writes % 4294967296 | 0);
Atomics.store(control, 3, Math.floor(writes / 4294967296));
parentPort?.postMessage({ writes });
