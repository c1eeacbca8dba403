/**
 * Runs `vmsa-case/1` cases through the walker: builds the case's memory
 * (zero everywhere except the listed words), decodes its regime from the
 * register-style fields, and answers every query in the `expect` schema.
 */

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PhysMem, type RegionSpec } from '../memory/phys.js';
import { paSizeEncoding } from '../pgtable/geometry.js';
import { Regime, RegimeError, decodeStage1, decodeStage2, granuleToTg0 } from '../pgtable/regime.js';
import { ACC_READ, ACC_UNPRIV, ACC_WRITE, WalkResult } from '../walk/result.js';
import { translate } from '../walk/walk.js';
import { CaseError, parseCase, type CaseExpect, type VmsaCase } from './case-file.js';

/** One query's answer, in exactly the `expect` schema. */
export type CaseAnswer = { pa: string } | { fault: { type: string; stage: number; level: number; s1ptw: boolean } };

export interface QueryOutcome {
  index: number;
  va: string;
  acc: 'r' | 'w';
  el0: boolean;
  expected: CaseAnswer | null;
  actual: CaseAnswer;
  pass: boolean;
}

export interface CaseOutcome {
  file: string;
  name: string;
  queries: QueryOutcome[];
}

const REGION = 65536;

/** The case's memory: one 64 KiB RAM region per page that holds a listed word; everything else reads as zero. */
export function caseMemory(c: VmsaCase): PhysMem {
  const pages = [...new Set(c.memory.map(([a]) => Number(a / BigInt(REGION))))].sort((a, b) => a - b);
  const regions: RegionSpec[] = [];
  for (const p of pages) {
    const last = regions[regions.length - 1];
    if (last !== undefined && last.base + last.size === p * REGION) last.size += REGION;
    else regions.push({ base: p * REGION, size: REGION });
  }
  const mem = PhysMem.create({ regions, unbacked: 'zero' });
  for (const [addr, value] of c.memory) mem.write64(Number(addr), value);
  return mem;
}

/** The case's regime, decoded from TCR/VTCR-style fields exactly as an SMMU context bank would feed them. */
export function caseRegime(c: VmsaCase): Regime {
  const regime = new Regime();
  if (c.stage1 !== null) {
    decodeStage1(
      { T0SZ: c.stage1.tsz, TG0: granuleToTg0(c.stage1.tg), IPS: paSizeEncoding(c.stage1.ps), TTBR0: Number(c.stage1.ttb), EPD1: 1 },
      regime,
    );
  }
  if (c.stage2 !== null) {
    decodeStage2(
      { T0SZ: c.stage2.tsz, SL0: c.stage2.sl0 ?? 0, TG0: granuleToTg0(c.stage2.tg), PS: paSizeEncoding(c.stage2.ps), VTTBR: Number(c.stage2.ttb) },
      regime,
    );
  }
  return regime;
}

/** A 64-bit VA as the walker's signed number (exact below 2^53 in magnitude; larger ones are out of range anyway). */
export function vaToNumber(va: bigint): number {
  return Number(BigInt.asIntN(64, va));
}

export function hexOf(n: bigint | number): string {
  return '0x' + n.toString(16);
}

export function answerOf(res: WalkResult): CaseAnswer {
  if (res.ok) return { pa: hexOf(res.pa) };
  return { fault: { type: res.faultName, stage: res.faultStage, level: res.faultLevel, s1ptw: res.s1ptw } };
}

function normalise(e: CaseExpect): CaseAnswer {
  if ('pa' in e) return { pa: hexOf(e.pa) };
  return { fault: { type: e.fault.type, stage: e.fault.stage, level: e.fault.level, s1ptw: e.fault.s1ptw } };
}

export function sameAnswer(a: CaseAnswer, b: CaseAnswer): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Runs one parsed case. Throws CaseError when its configuration cannot be decoded. */
export function runCase(c: VmsaCase, file: string): CaseOutcome {
  let regime: Regime;
  try {
    regime = caseRegime(c);
  } catch (e) {
    if (e instanceof RegimeError) throw new CaseError(file, c.stage2 !== null ? '$.stage2' : '$.stage1', e.message);
    throw e;
  }
  const mem = caseMemory(c);
  const res = new WalkResult();
  const queries = c.queries.map((q, index): QueryOutcome => {
    const acc = (q.acc === 'w' ? ACC_WRITE : ACC_READ) | (q.el0 ? ACC_UNPRIV : 0);
    translate(mem, regime, vaToNumber(q.va), acc, res);
    const actual = answerOf(res);
    const expected = q.expect === null ? null : normalise(q.expect);
    return { index, va: hexOf(q.va), acc: q.acc, el0: q.el0, expected, actual, pass: expected === null || sameAnswer(expected, actual) };
  });
  return { file, name: c.name, queries };
}

/** Parses and runs one file. */
export function runCaseFile(file: string): CaseOutcome {
  const text = readFileSync(file, 'utf8');
  return runCase(parseCase(text, file), file);
}

/** Expands files and folders (recursively, `*.json`) into a sorted list of case files. */
export function collectCaseFiles(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const st = statSync(p);
    if (st.isDirectory()) {
      const walk = (dir: string): void => {
        for (const name of readdirSync(dir).sort()) {
          const full = join(dir, name);
          if (statSync(full).isDirectory()) walk(full);
          else if (name.endsWith('.json')) out.push(full);
        }
      };
      walk(p);
    } else {
      out.push(p);
    }
  }
  return out;
}
