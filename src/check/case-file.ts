/**
 * `vmsa-case/1` translation case files (format: test/conformance/FORMAT.md):
 * parsing and validation, with errors that name the file and the JSON path of
 * the bad field.
 */

import { JsonReader, describe } from '../util/json-reader.js';

export type CaseFaultType = 'translation' | 'access-flag' | 'permission' | 'address-size' | 'external';

export interface CaseFault {
  type: CaseFaultType;
  stage: number;
  level: number;
  s1ptw: boolean;
}

export type CaseExpect = { pa: bigint } | { fault: CaseFault };

export interface CaseQuery {
  va: bigint;
  acc: 'r' | 'w';
  el0: boolean;
  expect: CaseExpect | null;
}

export interface CaseStage {
  tg: 4 | 16 | 64;
  tsz: number;
  ttb: bigint;
  ps: number;
  sl0?: number;
}

export interface VmsaCase {
  name: string;
  memory: Array<[bigint, bigint]>;
  stage1: CaseStage | null;
  stage2: CaseStage | null;
  queries: CaseQuery[];
}

export class CaseError extends Error {
  constructor(
    readonly file: string,
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${file}: ${path}: ${problem}`);
    this.name = 'CaseError';
  }
}

const FAULT_TYPES: readonly string[] = ['translation', 'access-flag', 'permission', 'address-size', 'external'];
const PS_VALUES: readonly number[] = [32, 36, 40, 42, 44, 48];

function parseStage(r: JsonReader, v: unknown, path: string, stage: 1 | 2): CaseStage | null {
  if (v === null) return null;
  const o = r.object(v, path);
  const tg = r.int(o.tg, `${path}.tg`, (n) => n === 4 || n === 16 || n === 64, 'a granule of 4, 16 or 64 (KiB)') as 4 | 16 | 64;
  const tsz = r.int(o.tsz, `${path}.tsz`, (n) => n >= 16 && n <= 39, 'a TxSZ from 16 to 39');
  const ttb = r.hex64(o.ttb, `${path}.ttb`);
  if (ttb >= 1n << 48n) r.fail(`${path}.ttb`, `table base ${o.ttb as string} does not fit in 48 bits`);
  const ps = r.int(o.ps, `${path}.ps`, (n) => PS_VALUES.includes(n), 'an output size of 32, 36, 40, 42, 44 or 48');
  const out: CaseStage = { tg, tsz, ttb, ps };
  if (stage === 2) out.sl0 = r.int(o.sl0, `${path}.sl0`, (n) => n >= 0 && n <= 3, 'an SL0 value from 0 to 3');
  return out;
}

function parseExpect(r: JsonReader, v: unknown, path: string): CaseExpect {
  const o = r.object(v, path);
  if ('pa' in o) {
    const pa = r.hex64(o.pa, `${path}.pa`);
    return { pa };
  }
  if ('fault' in o) {
    const f = r.object(o.fault, `${path}.fault`);
    if (typeof f.type !== 'string' || !FAULT_TYPES.includes(f.type)) {
      r.fail(`${path}.fault.type`, `expected one of ${FAULT_TYPES.join(', ')}, got ${describe(f.type)}`);
    }
    return {
      fault: {
        type: f.type as CaseFaultType,
        stage: r.int(f.stage, `${path}.fault.stage`, (n) => n === 1 || n === 2, 'stage 1 or 2'),
        level: r.int(f.level, `${path}.fault.level`, (n) => n >= 0 && n <= 3, 'a level from 0 to 3'),
        s1ptw: r.bool(f.s1ptw, `${path}.fault.s1ptw`),
      },
    };
  }
  return r.fail(path, 'expected {"pa": ...} or {"fault": {...}}');
}

/** Parses and validates one case from its JSON text. Throws CaseError. */
export function parseCase(text: string, file: string): VmsaCase {
  const r = new JsonReader(file, (f, p, m) => new CaseError(f, p, m));
  const o = r.document(text);
  if (o.format !== 'vmsa-case/1') r.fail('$.format', `expected "vmsa-case/1", got ${describe(o.format)}`);
  const name = o.name;
  if (typeof name !== 'string' || name.length === 0) r.fail('$.name', `expected a non-empty string, got ${describe(name)}`);
  const memory: Array<[bigint, bigint]> = [];
  r.array(o.memory, '$.memory').forEach((w, i) => {
    const p = `$.memory[${i}]`;
    const pair = r.array(w, p);
    if (pair.length !== 2) r.fail(p, `expected [address, value], got ${pair.length} elements`);
    const addr = r.hex64(pair[0], `${p}[0]`);
    if (addr % 8n !== 0n) r.fail(`${p}[0]`, `address ${pair[0] as string} is not 8-byte aligned`);
    if (addr >= 1n << 48n) r.fail(`${p}[0]`, `address ${pair[0] as string} is beyond the 48-bit physical address space`);
    memory.push([addr, r.hex64(pair[1], `${p}[1]`)]);
  });
  const stage1 = parseStage(r, o.stage1, '$.stage1', 1);
  const stage2 = parseStage(r, o.stage2, '$.stage2', 2);
  const queries: CaseQuery[] = r.array(o.queries, '$.queries').map((q, i) => {
    const p = `$.queries[${i}]`;
    const qo = r.object(q, p);
    const va = r.hex64(qo.va, `${p}.va`);
    if (qo.acc !== 'r' && qo.acc !== 'w') r.fail(`${p}.acc`, `expected "r" or "w", got ${describe(qo.acc)}`);
    const acc = qo.acc as 'r' | 'w';
    const el0 = r.bool(qo.el0, `${p}.el0`);
    const expect = qo.expect === undefined ? null : parseExpect(r, qo.expect, `${p}.expect`);
    return { va, acc, el0, expect };
  });
  return { name: name as string, memory, stage1, stage2, queries };
}
