/**
 * `smmu-script/1` register-level scenario scripts (format:
 * test/conformance/SMMU-SCRIPT.md): parsing with errors that name the file
 * and JSON path, and running a script against a fresh SMMU model built from
 * exactly its ID register values.
 */

import { readFileSync } from 'node:fs';
import { JsonReader, describe } from '../util/json-reader.js';

const HEX = 'a "0x..." hex string of at most 64 bits';
import { PhysMem, type RegionSpec } from '../memory/phys.js';
import { SmmuConfigError, decodeIds } from '../smmu/id.js';
import * as R from '../smmu/regs.js';
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

function parseExpect(r: JsonReader, v: unknown, path: string): Expect {
  const o = r.object(v, path);
  if ('pa' in o) return { pa: r.hex64(o.pa, `${path}.pa`, HEX) };
  if ('abort' in o) {
    if (o.abort !== true) r.fail(`${path}.abort`, `expected true, got ${describe(o.abort)}`);
    return { abort: true };
  }
  if ('stall' in o) return { stall: r.int(o.stall, `${path}.stall`, (n) => n >= 0 && n <= 2 ** 31, 'a tag number') };
  if ('oneOf' in o) return { oneOf: r.array(o.oneOf, `${path}.oneOf`).map((e, i) => parseExpect(r, e, `${path}.oneOf[${i}]`)) };
  return r.fail(path, 'expected {"pa"}, {"abort"}, {"stall"} or {"oneOf"}');
}

/** Bytes of register space of the instance that ID0..ID2 describe (throws SmmuConfigError for an impossible one). */
export function registerSpaceOf(id: { id0: number; id1: number; id2: number }): number {
  const f = decodeIds(id.id0, id.id1, id.id2);
  return 2 * f.numPage * (1 << f.pageShift);
}

function outsideText(at: number, width: number, space: number): string {
  return `register offset 0x${at.toString(16)} (${width} bytes) is outside the register space [0x0, 0x${space.toString(16)}) that ID1 gives`;
}

/**
 * Checks every register step's offset against the register space (bytes); throws a ScriptError
 * naming `$.steps[i].at` for the first offset outside it.
 */
export function checkRegisterOffsets(s: SmmuScript, file: string, space: number): void {
  s.steps.forEach((st, i) => {
    if (st.op !== 'w32' && st.op !== 'w64' && st.op !== 'r32' && st.op !== 'r64') return;
    const width = st.op.endsWith('64') ? 8 : 4;
    if (st.at + width > space) throw new ScriptError(file, `$.steps[${i}].at`, outsideText(st.at, width, space));
  });
}

/**
 * Parses and validates a script: its shape, hex values, ops, register offsets (inside the register
 * space that ID1 gives) and pending tags (stalled by an earlier dma step). Throws ScriptError.
 */
export function parseScript(text: string, file: string): SmmuScript {
  const r = new JsonReader(file, (f, p, m) => new ScriptError(f, p, m));
  const o = r.document(text);
  if (o.format !== 'smmu-script/1') r.fail('$.format', `expected "smmu-script/1", got ${describe(o.format)}`);
  if (typeof o.name !== 'string' || o.name === '') r.fail('$.name', `expected a non-empty string, got ${describe(o.name)}`);
  const ido = r.object(o.id, '$.id');
  const id32 = (k: string): number => {
    const v = r.hex64(ido[k], `$.id.${k}`, HEX);
    if (v > 0xffffffffn) r.fail(`$.id.${k}`, 'an ID register is 32 bits');
    return Number(v);
  };
  const id = { id0: id32('ID0'), id1: id32('ID1'), id2: id32('ID2') };
  // The instance must exist: the register space (and so which offsets are valid) follows from ID1.
  let space = 0;
  try {
    space = registerSpaceOf(id);
  } catch (e) {
    if (e instanceof SmmuConfigError) r.fail('$.id', `not an SMMUv2 instance: ${e.message}`);
    throw e;
  }
  const memory: Array<[bigint, bigint]> = r.array(o.memory ?? [], '$.memory').map((w, i) => {
    const pair = r.array(w, `$.memory[${i}]`);
    if (pair.length !== 2) r.fail(`$.memory[${i}]`, `expected [address, value], got ${pair.length} elements`);
    const at = r.hex64(pair[0], `$.memory[${i}][0]`, HEX);
    if (at % 8n !== 0n || at >= 1n << 48n) r.fail(`$.memory[${i}][0]`, 'expected an 8-byte aligned address below 2^48');
    return [at, r.hex64(pair[1], `$.memory[${i}][1]`, HEX)];
  });
  const steps: Step[] = r.array(o.steps, '$.steps').map((sv, i): Step => {
    const p = `$.steps[${i}]`;
    const s = r.object(sv, p);
    const offset = (): number => {
      const at = r.hex64(s.at, `${p}.at`, HEX);
      if (at % 4n !== 0n || at >= 1n << 32n) r.fail(`${p}.at`, `register offset ${s.at as string} is not a 4-byte aligned 32-bit offset`);
      const width = s.op === 'w64' || s.op === 'r64' ? 8 : 4;
      if (Number(at) + width > space) r.fail(`${p}.at`, outsideText(Number(at), width, space));
      return Number(at);
    };
    switch (s.op) {
      case 'w32':
      case 'w64': {
        const value = r.hex64(s.value, `${p}.value`, HEX);
        if (s.op === 'w32' && value > 0xffffffffn) r.fail(`${p}.value`, 'a w32 value must fit in 32 bits');
        return { op: s.op, at: offset(), value };
      }
      case 'r32':
      case 'r64':
        return { op: s.op, at: offset(), expect: r.hex64(s.expect, `${p}.expect`, HEX), mask: s.mask === undefined ? null : r.hex64(s.mask, `${p}.mask`, HEX) };
      case 'mem': {
        const at = r.hex64(s.at, `${p}.at`, HEX);
        if (at % 8n !== 0n || at >= 1n << 48n) r.fail(`${p}.at`, 'expected an 8-byte aligned physical address below 2^48');
        return { op: 'mem', at: Number(at), value: r.hex64(s.value, `${p}.value`, HEX) };
      }
      case 'dma': {
        if (s.acc !== 'r' && s.acc !== 'w' && s.acc !== 'x') r.fail(`${p}.acc`, `expected "r", "w" or "x", got ${describe(s.acc)}`);
        return {
          op: 'dma',
          sid: r.int(s.sid, `${p}.sid`, (n) => n >= 0 && n <= 0xffff, 'a stream ID (a non-negative integer below 2^16)'),
          va: r.hex64(s.va, `${p}.va`, HEX),
          acc: s.acc as 'r' | 'w' | 'x',
          priv: r.bool(s.priv, `${p}.priv`),
          expect: parseExpect(r, s.expect, `${p}.expect`),
        };
      }
      case 'pending':
        return { op: 'pending', tag: r.int(s.tag, `${p}.tag`, (n) => n >= 0 && n <= 2 ** 31, 'a tag number'), expect: parseExpect(r, s.expect, `${p}.expect`) };
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
  /** What the step touches, for messages: `0x10058`, or `sid 0x5 va 0x12345000 w unpriv`, or `tag 1`. */
  what: string;
  pass: boolean;
  /** The expectation as text: a register value (with its mask), or the `expect` object as JSON; '' for writes and mem. */
  expected: string;
  /** What happened, in the same form; '' for writes and mem. */
  actual: string;
  /**
   * The outcome in the `expect` schema (dma/pending: {"pa"}, {"abort": true} or {"stall": N} with
   * N in the script's own tag numbering), the value read (r32/r64: {"value"}), or {} for writes and mem.
   */
  json: Record<string, unknown>;
}

export interface ScriptOutcome {
  file: string;
  name: string;
  steps: StepResult[];
}

export type SmmuBuilder = (mem: PhysMem, script: SmmuScript) => Smmu;

/** Reads of these registers wait: the replay repeats the read until ACTIVE (bit 0) is clear (SMMU-SCRIPT.md). */
export function isWaitRegister(f: { pageShift: number; numPage: number }, off: number): boolean {
  const page = Math.floor(off / (1 << f.pageShift));
  const r = off % (1 << f.pageShift);
  if (page === 0) return r === R.GR0_sTLBGSTATUS;
  return page >= f.numPage && (r === R.CB_TLBSTATUS || r === R.CB_ATSR);
}

/** How many times a waiting read is repeated before it is compared anyway. */
export const WAIT_READS = 1000;

function stallTags(e: Expect): number[] {
  return 'stall' in e ? [e.stall] : 'oneOf' in e ? e.oneOf.flatMap(stallTags) : [];
}

/**
 * The script's tags and the model's: a script tag names a transaction that a dma step expected to
 * stall. It is bound to the model's tag when the model stalls it, or settled with the outcome the
 * transaction had at once when the model did not stall it (a later `pending` step then reports
 * that outcome). Model tags the script never named get numbers above every tag the script uses.
 */
class TagMap {
  private readonly toModel = new Map<number, number>();
  private readonly toScript = new Map<number, number>();
  private readonly settled = new Map<number, DmaOutcome>();
  private next: number;

  constructor(s: SmmuScript) {
    let max = 0;
    for (const st of s.steps) {
      if (st.op === 'pending') max = Math.max(max, st.tag);
      if (st.op === 'dma' || st.op === 'pending') for (const t of stallTags(st.expect)) max = Math.max(max, t);
    }
    this.next = max + 1;
  }

  /** Binds script tag `s` to model tag `m` unless either is bound already; true when `s` names `m`. */
  bind(s: number, m: number): boolean {
    const bound = this.toModel.get(s);
    if (bound !== undefined) return bound === m;
    if (this.toScript.has(m) || this.settled.has(s)) return false;
    this.toModel.set(s, m);
    this.toScript.set(m, s);
    return true;
  }

  /** After a dma step: script tags its expect names that are still unbound follow this transaction. */
  settle(e: Expect, o: DmaOutcome): void {
    for (const t of stallTags(e)) {
      if (this.toModel.has(t) || this.settled.has(t)) continue;
      if (o.kind === 'stall' && !this.toScript.has(o.tag)) this.bind(t, o.tag);
      else if (o.kind !== 'stall') this.settled.set(t, o);
    }
  }

  /** The outcome now of the transaction that script tag `s` names; null when none does. */
  pending(smmu: Smmu, s: number): DmaOutcome | null {
    const m = this.toModel.get(s);
    if (m !== undefined) return smmu.pending(m);
    return this.settled.get(s) ?? null;
  }

  scriptTag(m: number): number {
    let s = this.toScript.get(m);
    if (s === undefined) {
      s = this.next++;
      this.toScript.set(m, s);
      this.toModel.set(s, m);
    }
    return s;
  }
}

function hexPa(pa: number): string {
  return '0x' + BigInt.asUintN(64, BigInt(pa)).toString(16);
}

/** An outcome in the `expect` schema, with stall tags in the script's numbering. */
function outcomeJson(o: DmaOutcome, tags: TagMap): Record<string, unknown> {
  if (o.kind === 'pa') return { pa: hexPa(o.pa) };
  if (o.kind === 'stall') return { stall: tags.scriptTag(o.tag) };
  return { abort: true };
}

function matches(e: Expect, o: DmaOutcome, tags: TagMap): boolean {
  if ('oneOf' in e) return e.oneOf.some((x) => matches(x, o, tags));
  if ('pa' in e) return o.kind === 'pa' && BigInt.asUintN(64, BigInt(o.pa)) === e.pa;
  if ('abort' in e) return o.kind === 'abort';
  return o.kind === 'stall' && tags.bind(e.stall, o.tag);
}

/** An `expect` object as the script writes it. */
export function expectJson(e: Expect): unknown {
  if ('oneOf' in e) return { oneOf: e.oneOf.map(expectJson) };
  if ('pa' in e) return { pa: '0x' + e.pa.toString(16) };
  if ('abort' in e) return { abort: true };
  return { stall: e.stall };
}

function hexW(v: bigint, digits: number): string {
  return '0x' + v.toString(16).padStart(digits, '0');
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

/**
 * Runs every step on a fresh model (from `build`, default: `new Smmu(s.id, mem)`, uncached); a
 * step that does not hold is reported and the later steps still run. Register offsets are checked
 * against the model's register space before any step runs (a ScriptError naming the step).
 */
export function runScript(s: SmmuScript, file: string, build?: SmmuBuilder): ScriptOutcome {
  const mem = scriptMemory(s);
  const smmu = build ? build(mem, s) : new Smmu(s.id, mem);
  checkRegisterOffsets(s, file, smmu.registerSpaceBytes);
  const tags = new TagMap(s);
  const results = s.steps.map((st, index): StepResult => {
    switch (st.op) {
      case 'w32':
      case 'w64': {
        if (st.op === 'w32') smmu.write32(st.at, Number(st.value));
        else smmu.write64(st.at, st.value);
        return { index, op: st.op, what: `0x${st.at.toString(16)}`, pass: true, expected: '', actual: '', json: {} };
      }
      case 'r32':
      case 'r64': {
        const read = (): bigint => (st.op === 'r32' ? BigInt(smmu.read32(st.at)) : smmu.read64(st.at));
        let v = read();
        if (isWaitRegister(smmu.features, st.at)) for (let i = 1; i < WAIT_READS && (v & 1n) !== 0n; i++) v = read();
        const full = st.op === 'r32' ? 0xffffffffn : 0xffffffffffffffffn;
        const mask = st.mask ?? full;
        const w = st.op === 'r32' ? 8 : 16;
        return {
          index,
          op: st.op,
          what: `0x${st.at.toString(16)}`,
          pass: (v & mask) === (st.expect & mask),
          expected: `${hexW(st.expect, w)}${st.mask === null ? '' : ` (mask ${hexW(st.mask, w)})`}`,
          actual: hexW(v, w),
          json: { value: hexW(v, w) },
        };
      }
      case 'mem':
        mem.write64(st.at, st.value);
        return { index, op: st.op, what: `0x${st.at.toString(16)}`, pass: true, expected: '', actual: '', json: {} };
      case 'dma': {
        const o = smmu.dma(st.sid, Number(BigInt.asIntN(64, st.va)), st.acc, st.priv);
        const pass = matches(st.expect, o, tags);
        tags.settle(st.expect, o);
        const json = outcomeJson(o, tags);
        const what = `sid 0x${st.sid.toString(16)} va 0x${st.va.toString(16)} ${st.acc} ${st.priv ? 'priv' : 'unpriv'}`;
        return { index, op: st.op, what, pass, expected: JSON.stringify(expectJson(st.expect)), actual: JSON.stringify(json) + (o.kind === 'abort' && !pass ? ` (${o.reason})` : ''), json };
      }
      case 'pending': {
        const o = tags.pending(smmu, st.tag);
        const expected = JSON.stringify(expectJson(st.expect));
        if (o === null) {
          // Unreachable for parsed scripts (parseScript checks that an earlier dma step stalled the tag).
          return { index, op: st.op, what: `tag ${st.tag}`, pass: false, expected, actual: 'no transaction has this tag', json: {} };
        }
        const pass = matches(st.expect, o, tags);
        const json = outcomeJson(o, tags);
        return { index, op: st.op, what: `tag ${st.tag}`, pass, expected, actual: JSON.stringify(json) + (o.kind === 'abort' && !pass ? ` (${o.reason})` : ''), json };
      }
    }
  });
  return { file, name: s.name, steps: results };
}

export function runScriptFile(file: string, build?: SmmuBuilder): ScriptOutcome {
  return runScript(parseScript(readFileSync(file, 'utf8'), file), file, build);
}
