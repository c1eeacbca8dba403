/**
 * Concurrency: a worker rewrites one live descriptor as fast as it can
 * (valid -> valid, and valid -> invalid -> valid as break-before-make does)
 * while this thread walks it. Every walk must return one of the legal states;
 * a torn descriptor (the halves of two different writes) gives an output
 * address that was never written, and the test counts it as a violation.
 *
 * The same harness run with a deliberately tearing read (two 32-bit loads)
 * must find violations, which shows the test can fail.
 */

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { PhysMem, type PhysMemShared } from '../src/memory/phys.js';
import { AF, DESC_TYPE_PAGE, DESC_TYPE_TABLE, S1_AP1, S1_AP2, S1_NG, S1_UXN_HI } from '../src/pgtable/descriptor.js';
import { Regime, decodeStage1 } from '../src/pgtable/regime.js';
import { ACC_READ, FAULT_TRANSLATION, PERM_ALL, PERM_PR, PERM_PX, PERM_UR, WalkResult } from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';

const WORKER = fileURLToPath(new URL('../dist/workers/flip-descriptor.js', import.meta.url));

/** Reads the two halves with separate 32-bit loads: NOT single-copy atomic. */
class TearingPhysMem extends PhysMem {
  static attachTearing(shared: PhysMemShared): TearingPhysMem {
    return new TearingPhysMem(shared);
  }
  override loadAt(off: number): number {
    const lo = Atomics.load(this.i32, off >> 2);
    // A little work between the halves, as a compiler or a slow path might put there.
    let x = 0;
    for (let i = 0; i < 4; i++) x += i;
    this.hi = Atomics.load(this.i32, (off >> 2) + 1) + (x - 6);
    return lo;
  }
}

const RAM = 0x4000_0000;
const VA = 0x0000_1234_5678_9abc;
// Two legal leaf values that differ in both halves, and invalid (0).
const PA_A = 0x0000_5555_aaaa_a000;
const PA_B = 0x0000_2222_3333_3000;
const LEAF_A: [number, number] = [((PA_A % 2 ** 32) | AF | S1_AP1 | DESC_TYPE_PAGE) | 0, Math.floor(PA_A / 2 ** 32)];
const LEAF_B: [number, number] = [((PA_B % 2 ** 32) | AF | S1_AP1 | S1_AP2 | S1_NG | DESC_TYPE_PAGE) | 0, Math.floor(PA_B / 2 ** 32) | S1_UXN_HI];
const INVALID: [number, number] = [0, 0];
// A: AP[2:1] = 01 (read/write at EL0 and EL1), executable at EL0 but not at EL1 (EL0-writable).
const PERM_A = PERM_ALL & ~PERM_PX;
// B: AP[2:1] = 11 (read-only at both), UXN: privileged execute only.
const PERM_B = PERM_PR | PERM_UR | PERM_PX;
// A -> B directly, B -> invalid -> A, A -> invalid -> B.
const CYCLE = [LEAF_A, LEAF_B, INVALID, LEAF_A, INVALID, LEAF_B];

/** A 4 KiB-granule, 48-bit stage 1 with a 4-level chain of tables for VA; returns the leaf's PA. */
function buildTables(mem: PhysMem): { regime: Regime; leafPa: number } {
  const tables = [RAM, RAM + 0x1000, RAM + 0x2000, RAM + 0x3000];
  for (let level = 0; level < 3; level++) {
    const index = Math.floor(VA / 2 ** (12 + 9 * (3 - level))) % 512;
    mem.write64Parts(tables[level]! + index * 8, tables[level + 1]! | DESC_TYPE_TABLE, 0);
  }
  const leafPa = tables[3]! + (Math.floor(VA / 4096) % 512) * 8;
  mem.write64Parts(leafPa, LEAF_A[0], LEAF_A[1]);
  const regime = decodeStage1({ T0SZ: 16, TG0: 0, IPS: 5, TTBR0: RAM }, new Regime());
  return { regime, leafPa };
}

interface RaceStats {
  walks: number;
  seenA: number;
  seenB: number;
  seenInvalid: number;
  violations: number;
  firstViolation: string;
  writes: number;
}

async function race(tearing: boolean, walks: number): Promise<RaceStats> {
  const mem = PhysMem.create({ regions: [{ base: RAM, size: 0x10000 }] });
  const { regime, leafPa } = buildTables(mem);
  const walkerMem = tearing ? TearingPhysMem.attachTearing(mem.share()) : PhysMem.attach(mem.share());
  const control = new SharedArrayBuffer(16);
  const ctl = new Int32Array(control);
  const worker = new Worker(WORKER, { workerData: { mem: mem.share(), pa: leafPa, values: CYCLE, control } });
  const done = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve());
  });
  // Wait until the flipper is running.
  while (Atomics.load(ctl, 1) === 0) await new Promise((r) => setTimeout(r, 1));

  const res = new WalkResult();
  const off = VA % 4096;
  const s: RaceStats = { walks, seenA: 0, seenB: 0, seenInvalid: 0, violations: 0, firstViolation: '', writes: 0 };
  for (let i = 0; i < walks; i++) {
    const ok = translate(walkerMem, regime, VA, ACC_READ, res);
    if (!ok) {
      if (res.fault === FAULT_TRANSLATION && res.faultLevel === 3 && res.faultStage === 1) s.seenInvalid++;
      else {
        s.violations++;
        s.firstViolation ||= JSON.stringify(res.snapshot());
      }
    } else if (res.pa === PA_A + off && res.perm === PERM_A && res.nG === 0) {
      s.seenA++;
    } else if (res.pa === PA_B + off && res.perm === PERM_B && res.nG === 1) {
      s.seenB++;
    } else {
      s.violations++;
      s.firstViolation ||= JSON.stringify(res.snapshot());
    }
  }
  Atomics.store(ctl, 0, 1);
  await done;
  s.writes = (Atomics.load(ctl, 2) >>> 0) + Atomics.load(ctl, 3) * 2 ** 32;
  return s;
}

describe('descriptor updates racing with walks', () => {
  it('has the flipper worker built (npm test builds dist/ first)', () => {
    expect(existsSync(WORKER)).toBe(true);
  });

  it('single-copy atomic reads: 2,000,000 walks (8,000,000 descriptor reads) see only legal states', async () => {
    const s = await race(false, 2_000_000);
    // The writer really raced the reader: every state was observed, many writes happened.
    expect(s.seenA).toBeGreaterThan(0);
    expect(s.seenB).toBeGreaterThan(0);
    expect(s.seenInvalid).toBeGreaterThan(0);
    expect(s.writes).toBeGreaterThan(100_000);
    expect(s.firstViolation).toBe('');
    expect(s.violations).toBe(0);
  });

  it('a deliberately tearing read (two 32-bit loads) is caught by the same check', async () => {
    const s = await race(true, 2_000_000);
    expect(s.seenA + s.seenB).toBeGreaterThan(0);
    expect(s.violations).toBeGreaterThan(0);
  });
});
