/**
 * Worker entry for the stress tester's mutators (worker_threads): changes live
 * tables at both stages, with invalidations and syncs, until the driver sets
 * the stop word; then posts its statistics. See src/farm/stress-mutator.ts.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { runMutator, type MutatorData } from '../src/farm/stress-mutator.js';

const result = runMutator(workerData as MutatorData);
parentPort?.postMessage(result, [result.syncUs.buffer as ArrayBuffer]);
