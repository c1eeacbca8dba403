/**
 * Worker entry for bench/farm.ts: publishes an invalidation and syncs, again and
 * again, while the farm's units are busy, and reports each round trip's latency.
 * workerData: { shared, strategy: 'spin' | 'wait' | 'waitAsync', count, done: SharedArrayBuffer }
 * A pending Atomics.waitAsync does not keep Node's event loop alive, so the probe holds a
 * timer while it runs (without it the worker exits mid-wait).
 */

import { parentPort, workerData } from 'node:worker_threads';
import { FarmInvalidator } from '../src/farm/invalidator.js';
import type { FarmShared } from '../src/farm/layout.js';

interface ProbeData {
  shared: FarmShared;
  strategy: 'spin' | 'wait' | 'waitAsync';
  count: number;
  done: SharedArrayBuffer;
}

const d = workerData as ProbeData;
const inv = new FarmInvalidator(d.shared, { wait: d.strategy === 'wait' ? 'wait' : 'spin' });
const lat = new Float64Array(d.count);
const done = new Int32Array(d.done);

async function main(): Promise<void> {
  const keepAlive = setInterval(() => {}, 1000);
  for (let i = 0; i < d.count; i++) {
    const t0 = performance.now();
    // A leaf invalidation of a VA no unit has cached: the cost is the protocol's alone.
    inv.invalidate({ kind: 'va', vmid: 4095, asid: 4095, allAsids: false, va: 0x7000_0000_0000 + i * 4096, leaf: true });
    if (d.strategy === 'waitAsync') await inv.syncAsync();
    else inv.sync();
    lat[i] = (performance.now() - t0) * 1000;
    // Space the round trips a little, as a driver's unmaps are.
    const until = performance.now() + 0.02;
    while (performance.now() < until);
  }
  clearInterval(keepAlive);
  Atomics.store(done, 0, 1);
  parentPort?.postMessage(lat);
}

void main();
