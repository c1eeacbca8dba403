/**
 * `smmu-script/1` register-level scenario scripts (format:
 * test/conformance/SMMU-SCRIPT.md): parsing with errors that name the file
 * and JSON path, and running a script against a fresh SMMU model built from
 * exactly its ID register values.
 */

import { readFileSync } from 'node:fs';
import { PhysMem, type RegionSpec } from '../memory/phys.js';
import { Smmu, type DmaOutcome } from '../smmu/smmu.js';

export class ScriptError extends Error {
  constructor(
    readonly file: string,
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${file}: ${path}: ${problem}`);
    this.name = 'ScriptError';
  }
}

export type Expect = { pa: bigint } | { abort: true } | { stall: number } | { oneOf: Expect[] };

export type Step =
  | { op: 'w32' | 'w64'; at: number; value: bigint }
  | { op: 'r32' | 'r64'; at: number; expect: bigint; mask: bigint | null }
  | { op: 'mem'; at: number; value: bigint }
  | { op: 'dma'; sid: number; va: bigint; acc: 'r' | 'w' | 'x'; priv: boolean; expect: Expect }
  | { op: 'pending'; tag: number; expect: Expect };

export interface SmmuScript {
  name: string;
  id: { id0: number; id1: number; id2: number };
  memory: Array<[bigint, bigint]>;
  steps: Step[];
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

class Reader {
  constructor(readonly file: string) {}
  fail(path: string, problem: string): never {
    throw new ScriptError(this.file, path, problem);
  }
  object(v: unknown, path: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `expected an object, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }
  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, got ${describe(v)}`);
    return v;
  }
  hex(v: unknown, path: string): bigint {
    if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{1,16}$/.test(v)) this.fail(path, `expected a "0x..." hex string of at most 64 bits, got ${describe(v)}`);
    return BigInt(v);
  }
  int(v: unknown, path: string, what: string, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) this.fail(path, `expected ${what}, got ${describe(v)}`);
    return v;
  }
  bool(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, `expected true or false, got ${describe(v)}`);
    return v;
  }
}

function parseExpect(r: Reader, v: unknown, path: string): Expect {
  const o = r.object(v, path);
  if ('pa' in o) return { pa: r.hex(o.pa, `${path}.pa`) };
  if ('abort' in o) {
    if (o.abort !== true) r.fail(`${path}.abort`, `expected true, got ${describe(o.abort)}`);
    return { abort: true };
  }
  if ('stall' in o) return { stall: r.int(o.stall, `${path}.stall`, 'a tag number', 2 ** 31) };
  if ('oneOf' in o) return { oneOf: r.array(o.oneOf, `${path}.oneOf`).map((e, i) => parseExpect(r, e, `${path}.oneOf[${i}]`)) };
  return r.fail(path, 'expected {"pa"}, {"abort"}, {"stall"} or {"oneOf"}');
}

/** Parses and validates a script; `registerSpace` (bytes) bounds register offsets once the IDs are known. */
export function parseScript(text: string, file: string): SmmuScript {
  const r = new Reader(file);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    r.fail('$', `not valid JSON (${(e as Error).message})`);
  }
  const o = r.object(doc, '$');
  if (o.format !== 'smmu-script/1') r.fail('$.format', `expected "smmu-script/1", got ${describe(o.format)}`);
  if (typeof o.name !== 'string' || o.name === '') r.fail('$.name', `expected a non-empty string, got ${describe(o.name)}`);
  const ido = r.object(o.id, '$.id');
  const id32 = (k: string): number => {
    const v = r.hex(ido[k], `$.id.${k}`);
    if (v > 0xffffffffn) r.fail(`$.id.${k}`, 'an ID register is 32 bits');
    return Number(v);
  };
  const id = { id0: id32('ID0'), id1: id32('ID1'), id2: id32('ID2') };
  const memory: Array<[bigint, bigint]> = r.array(o.memory ?? [], '$.memory').map((w, i) => {
    const pair = r.array(w, `$.memory[${i}]`);
    if (pair.length !== 2) r.fail(`$.memory[${i}]`, `expected [address, value], got ${pair.length} elements`);
    const at = r.hex(pair[0], `$.memory[${i}][0]`);
    if (at % 8n !== 0n || at >= 1n << 48n) r.fail(`$.memory[${i}][0]`, 'expected an 8-byte aligned address below 2^48');
    return [at, r.hex(pair[1], `$.memory[${i}][1]`)];
  });
  const steps: Step[] = r.array(o.steps, '$.steps').map((sv, i): Step => {
    const p = `$.steps[${i}]`;
    const s = r.object(sv, p);
    const offset = (): number => {
      const at = r.hex(s.at, `${p}.at`);
      if (at % 4n !== 0n || at >= 1n << 32n) r.fail(`${p}.at`, `register offset ${s.at as string} is not a 4-byte aligned 32-bit offset`);
      return Number(at);
    };
    switch (s.op) {
      case 'w32':
      case 'w64': {
        const value = r.hex(s.value, `${p}.value`);
        if (s.op === 'w32' && value > 0xffffffffn) r.fail(`${p}.value`, 'a w32 value must fit in 32 bits');
        return { op: s.op, at: offset(), value };
      }
      case 'r32':
      case 'r64':
        return { op: s.op, at: offset(), expect: r.hex(s.expect, `${p}.expect`), mask: s.mask === undefined ? null : r.hex(s.mask, `${p}.mask`) };
      case 'mem': {
        const at = r.hex(s.at, `${p}.at`);
        if (at % 8n !== 0n || at >= 1n << 48n) r.fail(`${p}.at`, 'expected an 8-byte aligned physical address below 2^48');
        return { op: 'mem', at: Number(at), value: r.hex(s.value, `${p}.value`) };
      }
      case 'dma': {
        if (s.acc !== 'r' && s.acc !== 'w' && s.acc !== 'x') r.fail(`${p}.acc`, `expected "r", "w" or "x", got ${describe(s.acc)}`);
        return {
          op: 'dma',
          sid: r.int(s.sid, `${p}.sid`, 'a stream ID (a non-negative integer below 2^16)', 0xffff),
          va: r.hex(s.va, `${p}.va`),
          acc: s.acc as 'r' | 'w' | 'x',
          priv: r.bool(s.priv, `${p}.priv`),
          expect: parseExpect(r, s.expect, `${p}.expect`),
        };
      }
      case 'pending':
        return { op: 'pending', tag: r.int(s.tag, `${p}.tag`, 'a tag number', 2 ** 31), expect: parseExpect(r, s.expect, `${p}.expect`) };
      default:
        return r.fail(`${p}.op`, `unknown op ${describe(s.op)} (expected w32, w64, r32, r64, mem, dma or pending)`);
    }
  });
  // Tags must have been stalled by an earlier dma step before a pending step uses them.
  const stalled = new Set<number>();
  const tagsOf = (e: Expect): number[] => ('stall' in e ? [e.stall] : 'oneOf' in e ? e.oneOf.flatMap(tagsOf) : []);
  steps.forEach((s, i) => {
    if (s.op === 'dma') tagsOf(s.expect).forEach((t) => stalled.add(t));
    if (s.op === 'pending' && !stalled.has(s.tag)) r.fail(`$.steps[${i}].tag`, `tag ${s.tag} was never stalled by an earlier dma step`);
  });
  return { name: o.name as string, id, memory, steps };
}

export interface StepResult {
  index: number;
  op: Step['op'];
  pass: boolean;
  expected: string;
  actual: string;
  /** The outcome in the `expect` schema (dma/pending), the value read (r32/r64), or {} for writes and mem. */
  json: Record<string, unknown>;
}

export interface ScriptOutcome {
  file: string;
  name: string;
  steps: StepResult[];
}

function outcomeJson(o: DmaOutcome | null): Record<string, unknown> {
  if (o === null) return { error: 'unknown tag' };
  if (o.kind === 'pa') return { pa: '0x' + BigInt.asUintN(64, BigInt(o.pa)).toString(16) };
  if (o.kind === 'stall') return { stall: o.tag };
  return { abort: true };
}

function matches(e: Expect, o: DmaOutcome | null, tagMap: Map<number, number>): boolean {
  if (o === null) return false;
  if ('oneOf' in e) return e.oneOf.some((x) => matches(x, o, tagMap));
  if ('pa' in e) return o.kind === 'pa' && BigInt.asUintN(64, BigInt(o.pa)) === e.pa;
  if ('abort' in e) return o.kind === 'abort';
  if (o.kind !== 'stall') return false;
  // Script tags name stalled transactions; bind each to the model's tag the first time it appears.
  const bound = tagMap.get(e.stall);
  if (bound === undefined) {
    tagMap.set(e.stall, o.tag);
    return true;
  }
  return bound === o.tag;
}

function expectText(e: Expect): string {
  if ('oneOf' in e) return `oneOf(${e.oneOf.map(expectText).join(', ')})`;
  if ('pa' in e) return `pa 0x${e.pa.toString(16)}`;
  if ('abort' in e) return 'abort';
  return `stall ${e.stall}`;
}

/** The script's memory: every 64 KiB page named by `memory` or a `mem` step is RAM; the rest reads as zero. */
export function scriptMemory(s: SmmuScript): PhysMem {
  const pages = new Set<number>();
  for (const [a] of s.memory) pages.add(Number(a >> 16n));
  for (const st of s.steps) if (st.op === 'mem') pages.add(Math.floor(st.at / 65536));
  const regions: RegionSpec[] = [];
  for (const p of [...pages].sort((a, b) => a - b)) {
    const last = regions[regions.length - 1];
    if (last !== undefined && last.base + last.size === p * 65536) last.size += 65536;
    else regions.push({ base: p * 65536, size: 65536 });
  }
  const mem = PhysMem.create({ regions, unbacked: 'zero' });
  for (const [a, v] of s.memory) mem.write64(Number(a), v);
  return mem;
}

/** Runs every step; a step that does not hold is reported and the later steps still run. */
export function runScript(s: SmmuScript, file: string, build?: (mem: PhysMem) => Smmu): ScriptOutcome {
  const mem = scriptMemory(s);
  const smmu = build ? build(mem) : new Smmu(s.id, mem);
  const space = smmu.registerSpaceBytes;
  const tagMap = new Map<number, number>();
  const results = s.steps.map((st, index): StepResult => {
    const base = { index, op: st.op };
    if ((st.op === 'w32' || st.op === 'w64' || st.op === 'r32' || st.op === 'r64') && st.at + (st.op.endsWith('64') ? 8 : 4) > space) {
      return { ...base, pass: false, expected: `an offset below 0x${space.toString(16)}`, actual: `0x${st.at.toString(16)} is outside the register space`, json: { error: 'offset outside the register space' } };
    }
    switch (st.op) {
      case 'w32':
        smmu.write32(st.at, Number(st.value));
        return { ...base, pass: true, expected: '', actual: '', json: {} };
      case 'w64':
        smmu.write64(st.at, st.value);
        return { ...base, pass: true, expected: '', actual: '', json: {} };
      case 'r32':
      case 'r64': {
        const v = st.op === 'r32' ? BigInt(smmu.read32(st.at)) : smmu.read64(st.at);
        const mask = st.mask ?? (st.op === 'r32' ? 0xffffffffn : 0xffffffffffffffffn);
        const pass = (v & mask) === (st.expect & mask);
        const w = st.op === 'r32' ? 8 : 16;
        return {
          ...base,
          pass,
          expected: `0x${st.expect.toString(16).padStart(w, '0')}${st.mask === null ? '' : ` (mask 0x${st.mask.toString(16)})`}`,
          actual: `0x${v.toString(16).padStart(w, '0')}`,
          json: { value: '0x' + v.toString(16).padStart(w, '0') },
        };
      }
      case 'mem':
        mem.write64(st.at, st.value);
        return { ...base, pass: true, expected: '', actual: '', json: {} };
      case 'dma': {
        const o = smmu.dma(st.sid, Number(BigInt.asIntN(64, st.va)), st.acc, st.priv);
        const json = outcomeJson(o);
        return { ...base, pass: matches(st.expect, o, tagMap), expected: expectText(st.expect), actual: JSON.stringify(json), json };
      }
      case 'pending': {
        const tag = tagMap.get(st.tag);
        const o = tag === undefined ? null : smmu.pending(tag);
        const json = outcomeJson(o);
        return { ...base, pass: matches(st.expect, o, tagMap), expected: expectText(st.expect), actual: JSON.stringify(json), json };
      }
    }
  });
  return { file, name: s.name, steps: results };
}

export function runScriptFile(file: string): ScriptOutcome {
  return runScript(parseScript(readFileSync(file, 'utf8'), file), file);
}
