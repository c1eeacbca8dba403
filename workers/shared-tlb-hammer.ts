/**
 * Worker entry for the shared TLB's concurrency test (test/shared-tlb.test.ts):
 * fills, looks up and invalidates one small shared TLB as fast as it can,
 * with every entry's contents a function of its page, and counts lookups
 * that return an entry whose fields do not belong together (a torn entry).
 *
 * With `broken: true` it fills through a writer that skips the set's
 * sequence lock (the seqlock the real fill takes), to show that the test
 * sees torn entries when the protocol is broken.
 *
 * workerData: { storage: SharedTlbStorage, pages: number, seed: number, broken: boolean,
 *               control: SharedArrayBuffer }; control (Int32Array): [0] = stop flag,
 *               [1] = threads ready (each adds 1), [2] = go flag.
 * Posts { lookups, hits, fills, invalidations, torn, example }.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { SharedTlb, type SharedTlbStorage } from '../src/cache/shared-tlb.js';

interface HammerData {
  storage: SharedTlbStorage;
  pages: number;
  seed: number;
  broken: boolean;
  control: SharedArrayBuffer;
}

/** What the entry of page p holds: its output and IPA bases, permissions and aux word. */
export function expectedOut(p: number): number {
  return 2 ** 33 * (p + 1);
}
export function expectedIpa(p: number): number {
  return 4096 * (p + 1000);
}
export function expectedPerm(p: number): number {
  return 1 + (p % 7);
}

/** A writer that skips the set's lock: the bug the test must catch. */
class UnlockedWriter extends SharedTlb {
  fillUnlocked(p: number): void {
    const key = p;
    const slot = (p * 7) % this.entries;
    // Tags first, payload last: a reader between the two sees one page's tags with another's payload.
    this.key[slot] = key;
    this.size[slot] = 12;
    this.cb[slot] = 0;
    this.vmid[slot] = 1;
    this.asid[slot] = 1;
    this.out[slot] = expectedOut(p);
    this.ipa[slot] = expectedIpa(p);
    this.perm[slot] = expectedPerm(p);
    this.aux[slot] = p;
  }
}

const d = workerData as HammerData;
const tlb = new UnlockedWriter(d.storage);
const control = new Int32Array(d.control);
let x = d.seed >>> 0 || 1;
function rand(): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 4294967296;
}

Atomics.add(control, 1, 1);
Atomics.notify(control, 1);
while (Atomics.load(control, 2) === 0) Atomics.wait(control, 2, 0, 10);
let lookups = 0;
let hits = 0;
let fills = 0;
let invalidations = 0;
let torn = 0;
let example = '';
while (Atomics.load(control, 0) === 0) {
  for (let k = 0; k < 1024; k++) {
    const r = rand();
    const p = Math.floor(rand() * d.pages);
    if (r < 0.45) {
      if (d.broken) tlb.fillUnlocked(p);
      else tlb.fill(tlb.generation(), 0, 1, 1, p * 4096, 12, expectedOut(p), expectedIpa(p), expectedPerm(p), p);
      fills++;
    } else if (r < 0.98) {
      lookups++;
      const off = Math.floor(rand() * 4096);
      if (tlb.lookup(0, 1, 1, p * 4096 + off)) {
        hits++;
        const ok = tlb.hitKey === p && tlb.hitOutput(p * 4096 + off) === expectedOut(p) + off && tlb.hitIpaOf(p * 4096 + off) === expectedIpa(p) + off && tlb.hitPerm === expectedPerm(p) && tlb.hitAux === p && tlb.hitSize === 12;
        if (!ok) {
          torn++;
          if (example === '') example = `page ${p}: out 0x${tlb.hitOut.toString(16)}, ipa 0x${tlb.hitIpa.toString(16)}, perm ${tlb.hitPerm}, aux ${tlb.hitAux}`;
        }
      }
    } else {
      tlb.invalidateWhere((slot) => tlb.key[slot] === p);
      invalidations++;
    }
  }
}
parentPort?.postMessage({ lookups, hits, fills, invalidations, torn, example });
