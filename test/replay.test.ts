/**
 * `smmu-farm replay` and the recorder: the public scripts through the command line, the --json
 * shape checked against each script's own ops and expectations, failing steps and malformed
 * scripts reported as promised, --caches, and scripts recorded from the driver side's own
 * scenarios (bring-up, attach + DMA, faults with stall and RESUME, invalidations and syncs)
 * replaying identically on a fresh model.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CACHE_PRESETS } from '../src/cache/presets.js';
import { describe, expect, it } from 'vitest';
import { NoCache } from '../src/cache/interface.js';
import { ArmSmmuDriver, type FaultInfo } from '../src/driver/arm-smmu.js';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1, createStage1, createStage2 } from '../src/pgtable/builder.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { cacheFactory, cachePresetNames } from '../src/replay/caches.js';
import { RecorderError, SmmuRecorder, type RecordedScript } from '../src/replay/recorder.js';
import { ScriptError, parseScript, runScript } from '../src/replay/script.js';
import { encodeIds } from '../src/smmu/id.js';
import * as R from '../src/smmu/regs.js';
import { Smmu } from '../src/smmu/smmu.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const SCRIPTS = fileURLToPath(new URL('./conformance/scripts', import.meta.url));
const FILES = readdirSync(SCRIPTS)
  .filter((f) => f.endsWith('.json'))
  .sort();

type Json = Record<string, unknown>;
interface Doc {
  name: string;
  id: Json;
  memory: unknown[];
  steps: Json[];
}

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

function load(f: string): Doc {
  return JSON.parse(readFileSync(join(SCRIPTS, f), 'utf8')) as Doc;
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'smmu-replay-'));
}

/** Does a --json entry for a dma/pending step satisfy the script's expect (stall tags compared as the script numbers them)? */
function satisfies(entry: Json, e: Json): boolean {
  if ('oneOf' in e) return (e.oneOf as Json[]).some((x) => satisfies(entry, x));
  if ('pa' in e) return typeof entry.pa === 'string' && BigInt(entry.pa) === BigInt(e.pa as string);
  if ('abort' in e) return entry.abort === true;
  return entry.stall === e.stall;
}

/** Bytes of register space ID1 gives: two halves of NUMPAGE pages (IHI 0062). */
function spaceOf(id1: string): number {
  const v = Number(BigInt(id1));
  const pageShift = (v >>> 31) & 1 ? 16 : 12;
  const numPage = 1 << (((v >>> 28) & 7) + 1);
  return 2 * numPage * 2 ** pageShift;
}

const TOTAL_STEPS = FILES.reduce((n, f) => n + load(f).steps.length, 0);

describe('smmu-farm replay on the public scripts', () => {
  it(`passes every step of the ${FILES.length} public scripts and ends with the step count`, () => {
    expect(FILES).toHaveLength(79);
    expect(TOTAL_STEPS).toBe(3961);
    const r = run('replay', SCRIPTS);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual([`${TOTAL_STEPS} passed, 0 failed`]);
    expect(r.status).toBe(0);
  });

  it('--json: one object per script, one entry per step, each agreeing with the script', () => {
    const r = run('replay', '--json', SCRIPTS);
    expect(r.status).toBe(0);
    expect(lines(r.stderr)).toEqual([`${TOTAL_STEPS} passed, 0 failed`]);
    const out = lines(r.stdout).map((l) => JSON.parse(l) as { name: string; steps: Json[] });
    expect(out.map((o) => o.name)).toEqual(FILES.map((f) => f.replace(/\.json$/, '')));
    let stalls = 0;
    out.forEach((o, k) => {
      expect(Object.keys(o).sort()).toEqual(['name', 'steps']);
      const doc = load(FILES[k]!);
      expect(o.steps).toHaveLength(doc.steps.length);
      doc.steps.forEach((st, i) => {
        const got = o.steps[i]!;
        const where = `${o.name} step ${i} ${st.op as string}`;
        switch (st.op) {
          case 'w32':
          case 'w64':
          case 'mem':
            expect(got, where).toEqual({});
            break;
          case 'r32':
          case 'r64': {
            expect(Object.keys(got), where).toEqual(['value']);
            expect(got.value, where).toMatch(st.op === 'r32' ? /^0x[0-9a-f]{8}$/ : /^0x[0-9a-f]{16}$/);
            const mask = BigInt((st.mask as string | undefined) ?? (st.op === 'r32' ? '0xffffffff' : '0xffffffffffffffff'));
            expect(BigInt(got.value as string) & mask, where).toBe(BigInt(st.expect as string) & mask);
            break;
          }
          case 'dma':
          case 'pending': {
            expect(Object.keys(got), where).toHaveLength(1);
            expect(['pa', 'abort', 'stall'], where).toContain(Object.keys(got)[0]);
            expect(satisfies(got, st.expect as Json), `${where}: ${JSON.stringify(got)} vs ${JSON.stringify(st.expect)}`).toBe(true);
            if ('stall' in got) stalls++;
            break;
          }
          default:
            throw new Error(`unexpected op in ${where}`);
        }
      });
    });
    expect(stalls).toBeGreaterThan(10);
  });

  it('--json reports stalls with the script\'s own tags, not the model\'s', () => {
    const dir = tmp();
    const f = FILES.find((x) => x.startsWith('pub-stall-two'))!;
    const doc = load(f);
    // Renumber the script's tags: 1 -> 41, 2 -> 7 (the model numbers its stalls 1, 2, ...).
    const renum = (n: number): number => (n === 1 ? 41 : n === 2 ? 7 : n + 100);
    const fix = (e: Json): Json => ('stall' in e ? { stall: renum(e.stall as number) } : 'oneOf' in e ? { oneOf: (e.oneOf as Json[]).map(fix) } : e);
    const tags = new Set<number>();
    for (const st of doc.steps) {
      if (st.op === 'pending') st.tag = renum(st.tag as number);
      if (st.op === 'dma' || st.op === 'pending') {
        st.expect = fix(st.expect as Json);
        if ('stall' in (st.expect as Json)) tags.add((st.expect as Json).stall as number);
      }
    }
    expect(tags.size).toBeGreaterThanOrEqual(2);
    writeFileSync(join(dir, f), JSON.stringify(doc));
    const r = run('replay', '--json', join(dir, f));
    expect(r.status).toBe(0);
    const steps = (JSON.parse(lines(r.stdout)[0]!) as { steps: Json[] }).steps;
    const seen = new Set(steps.filter((s) => 'stall' in s).map((s) => s.stall as number));
    expect([...seen].sort()).toEqual([...tags].sort());
  });
});

describe('smmu-farm replay: failures and malformed scripts', () => {
  it('reports each failing step with name, index, op, expected and actual; later steps still run', () => {
    const dir = tmp();
    // A script with an unmasked r32 followed by a dma that completes.
    const ri0 = (d: Doc): number => d.steps.findIndex((s) => s.op === 'r32' && s.mask === undefined);
    const di0 = (d: Doc): number => d.steps.findIndex((s, i) => i > ri0(d) && s.op === 'dma' && 'pa' in (s.expect as Json));
    const f = FILES.find((x) => ri0(load(x)) >= 0 && di0(load(x)) >= 0)!;
    const doc = load(f);
    const ri = ri0(doc);
    const di = di0(doc);
    expect(ri).toBeGreaterThanOrEqual(0);
    expect(di).toBeGreaterThan(ri);
    const realValue = doc.steps[ri]!.expect as string;
    const wrongValue = '0x' + (BigInt(realValue) ^ 0x10n).toString(16).padStart(8, '0');
    doc.steps[ri]!.expect = wrongValue;
    const realPa = (doc.steps[di]!.expect as Json).pa as string;
    doc.steps[di]!.expect = { pa: '0x1000' };
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify(doc));
    const r = run('replay', dir);
    expect(r.status).toBe(1);
    const out = lines(r.stdout);
    expect(out).toEqual([
      `FAIL ${doc.name} (${join(dir, 'wrong.json')}) step ${ri} r32 ${doc.steps[ri]!.at as string}: expected ${wrongValue}, got ${realValue}`,
      expect.stringMatching(new RegExp(`^FAIL ${doc.name} \\(.*wrong\\.json\\) step ${di} dma sid 0x[0-9a-f]+ va 0x[0-9a-f]+ [rwx] (un)?priv: expected \\{"pa":"0x1000"\\}, got \\{"pa":"${realPa}"\\}$`)),
      `${doc.steps.length - 2} passed, 2 failed`,
    ]);
  });

  it('names the file and JSON path of each malformed script, and still runs the others', () => {
    const dir = tmp();
    const good = load('pub-stall-retry-0009.json');
    const goodSteps = good.steps.length;
    writeFileSync(join(dir, 'a-good.json'), JSON.stringify(good));
    const variant = (name: string, edit: (d: Doc) => void): void => {
      const d = structuredClone(good);
      edit(d);
      writeFileSync(join(dir, name), JSON.stringify(d));
    };
    variant('b-unknown-op.json', (d) => (d.steps[2]!.op = 'w16'));
    variant('c-bad-hex.json', (d) => (d.steps[1]!.value = '0x12g4'));
    const space = spaceOf(good.id.ID1 as string);
    variant('d-outside.json', (d) => d.steps.splice(4, 0, { op: 'r32', at: '0x' + space.toString(16), expect: '0x0' }));
    const pi = good.steps.findIndex((s) => s.op === 'pending');
    variant('e-never-stalled.json', (d) => (d.steps[pi]!.tag = 9));
    variant('f-bad-id.json', (d) => (d.id.ID1 = '0x20000000'));
    writeFileSync(join(dir, 'g-not-json.json'), '{"format": "smmu-script/1",');
    const r = run('replay', dir);
    expect(r.status).toBe(1);
    const err = lines(r.stderr);
    expect(err).toEqual([
      `error: ${join(dir, 'b-unknown-op.json')}: $.steps[2].op: unknown op "w16" (expected w32, w64, r32, r64, mem, dma or pending)`,
      `error: ${join(dir, 'c-bad-hex.json')}: $.steps[1].value: expected a "0x..." hex string of at most 64 bits, got "0x12g4"`,
      `error: ${join(dir, 'd-outside.json')}: $.steps[4].at: register offset 0x${space.toString(16)} (4 bytes) is outside the register space [0x0, 0x${space.toString(16)}) that ID1 gives`,
      `error: ${join(dir, 'e-never-stalled.json')}: $.steps[${pi}].tag: tag 9 was never stalled by an earlier dma step`,
      `error: ${join(dir, 'f-bad-id.json')}: $.id: not an SMMUv2 instance: IDR1.NUMCB is 0`,
      expect.stringMatching(new RegExp(`^error: ${join(dir, 'g-not-json.json').replace(/[.]/g, '\\.')}: \\$: not valid JSON`)),
      '6 script(s) could not be run',
    ]);
    expect(lines(r.stdout)).toEqual([`${goodSteps} passed, 0 failed`]);
    // With --json the good script is still the one JSON line.
    const j = run('replay', '--json', dir);
    expect(j.status).toBe(1);
    expect(lines(j.stdout).map((l) => (JSON.parse(l) as { name: string }).name)).toEqual([good.name]);
  });

  it('checks register offsets before running any step (runScript on a parsed-elsewhere script)', () => {
    const text = readFileSync(join(SCRIPTS, 'pub-stall-retry-0009.json'), 'utf8');
    const s = parseScript(text, 'x.json');
    const space = spaceOf((JSON.parse(text) as Doc).id.ID1 as string);
    // One 32-bit register short of the end is inside; a 64-bit access there is not.
    s.steps.unshift({ op: 'w32', at: R.GR0_sCR0, value: 0n }); // would clear sCR0.CLIENTPD
    s.steps.splice(1, 0, { op: 'w32', at: space - 4, value: 0n }, { op: 'w64', at: space - 4, value: 0n });
    let built: Smmu | null = null;
    expect(() =>
      runScript(s, 'x.json', (mem, sc) => {
        built = new Smmu(sc.id, mem);
        return built;
      }),
    ).toThrow(new ScriptError('x.json', '$.steps[2].at', `register offset 0x${(space - 4).toString(16)} (8 bytes) is outside the register space [0x0, 0x${space.toString(16)}) that ID1 gives`));
    // Step 0 (the write of sCR0) did not run either.
    expect(built!.read32(R.GR0_sCR0)).toBe(R.sCR0_CLIENTPD);
  });

  it('reports paths that do not exist and folders with no scripts', () => {
    const r = run('replay', '/nonexistent/scripts', tmp());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('/nonexistent/scripts: no such file or folder');
    expect(r.stderr).toContain('no .json scripts in this folder');
    expect(lines(r.stdout)).toEqual(['0 passed, 0 failed']);
  });

  it('waits on TLBSTATUS: a read repeats until ACTIVE clears, then compares', () => {
    const s = parseScript(readFileSync(join(SCRIPTS, 'pub-tlb-s1-0004.json'), 'utf8'), 'x.json');
    const waits = s.steps.filter((st) => st.op === 'r32' && (st.at & 0xfff) === R.CB_TLBSTATUS).length;
    expect(waits).toBeGreaterThan(0);
    class SlowSync extends NoCache {
      polls = 0;
      override syncComplete(): boolean {
        return ++this.polls % 5 === 0;
      }
    }
    const cache = new SlowSync();
    const o = runScript(s, 'x.json', (mem, sc) => new Smmu(sc.id, mem, cache));
    expect(o.steps.filter((x) => !x.pass)).toEqual([]);
    expect(cache.polls).toBeGreaterThanOrEqual(5 * waits);
  });
});

describe('smmu-farm replay --caches', () => {
  it('--caches none is the uncached model', () => {
    const r = run('replay', '--caches', 'none', SCRIPTS);
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toEqual([`${TOTAL_STEPS} passed, 0 failed`]);
  });

  it('an unknown preset is refused with the valid ones listed, before anything runs', () => {
    const r = run('replay', '--caches', 'bogus', SCRIPTS);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const names = cachePresetNames();
    expect(names).toContain('none');
    expect(lines(r.stderr)).toEqual([`error: --caches: unknown cache preset "bogus" (valid presets: ${names.join(', ')})`]);
    expect(() => cacheFactory('bogus')).toThrow(/valid presets: none/);
  });

  it('--help lists the presets', () => {
    const r = run('replay', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: smmu-farm replay');
    expect(r.stdout.replace(/\s+/g, ' ')).toContain(cachePresetNames().join(', '));
  });
});

// ------------------------------------------------------------------ the recorder

const RW = PROT_READ | PROT_WRITE;
const TABLES = 0x4000_0000;

function rig(opts: ConstructorParameters<typeof ArmSmmuDriver>[1] = {}, name = 'scenario', irq = true) {
  const mem = PhysMem.create({ regions: [{ base: TABLES, size: 16 << 20 }] });
  const smmu = new Smmu(encodeIds({ smrs: 8, sidBits: 10, contextBanks: 8, s2OnlyBanks: 2 }), mem);
  const tables = new PhysTables(mem, TABLES, TABLES + (8 << 20));
  const start = (): { rec: SmmuRecorder; drv: ArmSmmuDriver } => {
    const rec = new SmmuRecorder(smmu, { name });
    const drv = new ArmSmmuDriver(rec, opts);
    if (irq) rec.on('contextFault', (cb) => drv.contextFaultIrq(cb));
    drv.probe();
    drv.reset();
    return { rec, drv };
  };
  return { mem, smmu, tables, start };
}

/** Replays a recorded script on a fresh model (through the parser, as a file would be) and checks it step for step. */
function replaysIdentically(rec: SmmuRecorder, make?: () => NoCache): RecordedScript {
  const text = rec.text();
  const doc = JSON.parse(text) as RecordedScript;
  const s = parseScript(text, `${rec.name}.json`);
  const o = runScript(s, `${rec.name}.json`, make ? (mem, sc) => new Smmu(sc.id, mem, make()) : undefined);
  expect(o.steps.filter((x) => !x.pass).map((x) => `step ${x.index} ${x.op} ${x.what}: expected ${x.expected}, got ${x.actual}`)).toEqual([]);
  // Identically: every value read and every outcome is the one recorded.
  o.steps.forEach((x, i) => {
    const st = doc.steps[i]!;
    if (st.op === 'r32' || st.op === 'r64') expect(x.json).toEqual({ value: st.expect });
    else if (st.op === 'dma' || st.op === 'pending') expect(x.json).toEqual(st.expect);
    else expect(x.json).toEqual({});
  });
  expect(rec.warnings).toEqual([]);
  return doc;
}

function ops(doc: RecordedScript): string[] {
  return doc.steps.map((s) => s.op as string);
}

function scenarioBringUp() {
  const { smmu, start } = rig({ disableBypass: true }, 'bring-up');
  const { rec, drv } = start();
  const abort = rec.dma(5, 0x1000, 'r', false);
  const g = drv.globalFaultIrq();
  return { rec, smmu, abort, g };
}

function scenarioAttach() {
  const { mem, smmu, tables, start } = rig({}, 'attach-dma');
  // Tables built before recording starts: the words the walks read go into `memory`.
  const s1 = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 3);
  s1.map(0x10_0000, 0x8000_0000, 0x4000, RW);
  const { rec, drv } = start();
  const d1 = drv.createDomain('s1', s1);
  drv.attach(d1, [{ id: 0x10 }, { id: 0x11 }]);
  const outcomes = [rec.dma(0x10, 0x10_1234, 'w', false), rec.dma(0x11, 0x10_3ff8, 'r', true), rec.dma(0x10, 0x20_0000, 'r', false)];
  const d2 = drv.createDomain('s2', createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 9));
  drv.map(d2, 0x4000_0000, 0x9000_0000, 0x20_0000, RW);
  drv.attach(d2, [{ id: 0x20, mask: 0x3 }]);
  outcomes.push(rec.dma(0x23, 0x4001_0008, 'r', false));
  const kvm = createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 12);
  const dk = drv.createDomain('s2', kvm);
  kvm.map(0x1_0000_0000, TABLES + (10 << 20), 1 << 20, RW);
  kvm.map(0x2_0000_0000, 0xa000_0000, 0x10_0000, RW);
  const guest = createGuestStage1(mem, kvm, 0x1_0000_0000, 0x1_0010_0000, { granule: 4, ias: 48, oas: 40 }, 7);
  guest.map(0x7000_0000, 0x2_0000_0000, 0x10_0000, RW);
  const dn = drv.createDomain('nested', guest, dk);
  drv.attach(dn, [{ id: 0x40 }]);
  outcomes.push(rec.dma(0x40, 0x7000_5678, 'w', false));
  const ats = [drv.iovaToPhysHard(d1, 0x10_2abc), drv.iovaToPhysHard(d1, 0x50_0000)];
  return { rec, smmu, outcomes, ats };
}

function scenarioFaults() {
  const { mem, tables, start } = rig({ stallOnFault: true }, 'faults');
  const { rec, drv } = start();
  // Demand paging: the handler maps the page and retries.
  const pt = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 4);
  const d = drv.createDomain('s1', pt);
  drv.attach(d, [{ id: 7 }]);
  const seen: FaultInfo[] = [];
  let frame = 0xb000_0000;
  drv.setFaultHandler(d, (f) => {
    seen.push(f);
    const page = Number(f.far) - (Number(f.far) % 4096);
    pt.map(page, frame, 4096, RW);
    frame += 4096;
    return 'retry';
  });
  const paging = [0x5000_0010, 0x5000_1020, 0x5000_0030].map((va) => {
    const o = rec.dma(7, va, 'w', false);
    return o.kind === 'stall' ? rec.pending(o.tag) : o;
  });
  // A handler that cannot resolve the fault: terminate.
  const dt = drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 48, oas: 48 }));
  drv.attach(dt, [{ id: 9 }]);
  drv.setFaultHandler(dt, () => 'terminate');
  const t = rec.dma(9, 0x6000_0000, 'r', true);
  const terminated = t.kind === 'stall' ? rec.pending(t.tag) : t;
  // A nested domain's stage-2 fault reaches the host's handler, which backs the IPA.
  const kvm = createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 2);
  const dk = drv.createDomain('s2', kvm);
  kvm.map(0x1_0000_0000, TABLES + (10 << 20), 1 << 20, RW);
  const guest = createGuestStage1(mem, kvm, 0x1_0000_0000, 0x1_0010_0000, { granule: 4, ias: 48, oas: 40 }, 1);
  guest.map(0x7000_0000, 0x3_0000_0000, 0x1000, RW);
  const dn = drv.createDomain('nested', guest, dk);
  drv.attach(dn, [{ id: 3 }]);
  drv.setFaultHandler(dk, () => {
    kvm.map(0x3_0000_0000, 0xc000_0000, 0x1000, RW);
    return 'retry';
  });
  const n = rec.dma(3, 0x7000_0040, 'r', false);
  const nested = n.kind === 'stall' ? rec.pending(n.tag) : n;
  return { rec, paging, seen, t, terminated, n, nested, drv };
}

function scenarioInvalidation() {
  const { tables, start } = rig({}, 'invalidation');
  const { rec, drv } = start();
  const pt = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 5);
  const d = drv.createDomain('s1', pt);
  drv.attach(d, [{ id: 1 }]);
  drv.map(d, 0x1234_5000, 0x8000_0000, 0x2000, RW);
  const before = rec.dma(1, 0x1234_5008, 'r', false);
  const unmapped = drv.unmap(d, 0x1234_5000, 0x2000);
  const after = rec.dma(1, 0x1234_5008, 'r', false);
  const d2 = drv.createDomain('s2', createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 33));
  drv.map(d2, 0x4000_0000, 0x4000_0000, 0x1000, RW);
  drv.attach(d2, [{ id: 2 }]);
  const s2before = rec.dma(2, 0x4000_0010, 'w', false);
  d2.pgtable.unmap(0x4000_0000, 0x1000);
  drv.flushRange(d2, 0x4000_0000, 0x1000, true);
  drv.flushVmid(d2);
  const s2after = rec.dma(2, 0x4000_0010, 'w', false);
  return { rec, drv, d, before, unmapped, after, s2before, s2after };
}

describe('the recorder: driver scenarios replay identically', () => {
  it('bring-up and reset, an unidentified stream and the global fault handler', () => {
    const { rec, smmu, abort, g } = scenarioBringUp();
    expect(abort.kind).toBe('abort');
    expect(g?.sgfsr).toBe(R.sGFSR_USF);
    const doc = replaysIdentically(rec);
    expect(doc.name).toBe('bring-up');
    const id = [R.GR0_IDR0, R.GR0_IDR0 + 4, R.GR0_IDR0 + 8].map((o) => '0x' + smmu.read32(o).toString(16).padStart(8, '0'));
    expect(doc.id).toEqual({ ID0: id[0], ID1: id[1], ID2: id[2] });
    // The probe's ID reads come first, with the values the model gave.
    expect(doc.steps.slice(0, 3)).toEqual(id.map((v, i) => ({ op: 'r32', at: '0x' + (R.GR0_IDR0 + 4 * i).toString(16), expect: v })));
    expect(doc.steps).toContainEqual({ op: 'dma', sid: 5, va: '0x1000', acc: 'r', priv: false, expect: { abort: true } });
    expect(doc.steps).toContainEqual({ op: 'w32', at: '0x0', value: expect.stringMatching(/^0x[0-9a-f]{8}$/) });
    // The global fault handler's reads and its write-1-to-clear of sGFSR follow the dma.
    const di = ops(doc).indexOf('dma');
    expect(doc.steps.slice(di + 1).map((s) => `${s.op as string} ${s.at as string}`)).toEqual([`r32 0x48`, 'r32 0x54', 'r64 0x40', 'w32 0x48']);
    expect(doc.memory).toEqual([]);
  });

  it('attach and DMA: stage 1, stage 2 and nested domains, and ATS1PR', () => {
    const { rec, outcomes, ats } = scenarioAttach();
    expect(outcomes).toEqual([
      { kind: 'pa', pa: 0x8000_1234 },
      { kind: 'pa', pa: 0x8000_3ff8 },
      expect.objectContaining({ kind: 'abort' }),
      { kind: 'pa', pa: 0x9001_0008 },
      { kind: 'pa', pa: 0xa000_5678 },
    ]);
    expect(ats).toEqual([0x8000_2abc, null]);
    const doc = replaysIdentically(rec);
    // The stage-1 tables existed before recording: the descriptors walks read are in `memory`.
    expect(doc.memory.length).toBeGreaterThanOrEqual(4);
    expect(doc.memory.every(([a, v]) => BigInt(a) >= TABLES && BigInt(v) !== 0n)).toBe(true);
    expect(doc.steps.filter((s) => s.op === 'dma').map((s) => s.expect)).toEqual([
      { pa: '0x80001234' },
      { pa: '0x80003ff8' },
      { abort: true },
      { pa: '0x90010008' },
      { pa: '0xa0005678' },
    ]);
    // Tables built during the recording but before any walk read them need no mem steps either:
    // a word's value when a walk first reads it is its initial value.
    expect(ops(doc)).not.toContain('mem');
    expect(doc.memory.some(([a]) => BigInt(a) >= TABLES + (10 << 20))).toBe(true); // the guest's stage-1 tables
    // ATS1PR: the write, then ATSR and PAR reads.
    expect(doc.steps.filter((s) => s.op === 'w64' && (BigInt(s.at as string) & 0xfffn) === BigInt(R.CB_ATS1PR))).toHaveLength(2);
  });

  it('faults: stall and RESUME through the driver\'s fault handlers, with tags consistent between dma and pending', () => {
    const { rec, paging, seen, terminated, nested, drv } = scenarioFaults();
    expect(paging).toEqual([
      { kind: 'pa', pa: 0xb000_0010 },
      { kind: 'pa', pa: 0xb000_1020 },
      { kind: 'pa', pa: 0xb000_0030 },
    ]);
    expect(seen).toHaveLength(2);
    expect(terminated).toMatchObject({ kind: 'abort' });
    expect(nested).toEqual({ kind: 'pa', pa: 0xc000_0040 });
    expect(drv.iopf).toMatchObject({ faults: 4, retried: 3, terminated: 1 });
    const doc = replaysIdentically(rec);
    const stalls = doc.steps.filter((s) => s.op === 'dma' && 'stall' in (s.expect as Json)).map((s) => (s.expect as Json).stall);
    const pendings = doc.steps.filter((s) => s.op === 'pending');
    expect(stalls).toEqual([1, 2, 3, 4]);
    expect(pendings.map((s) => [s.tag, s.expect])).toEqual([
      [1, { pa: '0xb0000010' }],
      [2, { pa: '0xb0001020' }],
      [3, { abort: true }],
      [4, { pa: '0xc0000040' }],
    ]);
    // Each fault's handling sits between its dma and its pending step: FSR read, FSR clear,
    // the handler's table update as mem steps, then the RESUME write.
    const di = doc.steps.findIndex((s) => s.op === 'dma' && (s.expect as Json).stall === 1);
    const pi = doc.steps.findIndex((s) => s.op === 'pending' && s.tag === 1);
    const between = doc.steps.slice(di + 1, pi);
    const resume = between.findIndex((s) => s.op === 'w32' && (BigInt(s.at as string) & 0xfffn) === BigInt(R.CB_RESUME));
    expect(between[0]).toMatchObject({ op: 'r32', expect: expect.stringMatching(/^0x4000000[0-9a-f]$/) }); // FSR with SS
    expect(resume).toBe(between.length - 1);
    expect(between[resume]!.value).toBe('0x00000000'); // retry
    expect(between.slice(0, resume).some((s) => s.op === 'mem')).toBe(true);
    // The terminating handler writes RESUME.TnR.
    const ti = doc.steps.findIndex((s) => s.op === 'pending' && s.tag === 3);
    expect(doc.steps[ti - 1]).toMatchObject({ op: 'w32', value: '0x00000001' });
  });

  it('a transaction held behind a stall (HUPCF = 0) keeps its tag until the handler resumes both', () => {
    const { tables, start } = rig({ stallOnFault: true }, 'held', false);
    const { rec, drv } = start();
    const pt = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 6);
    const d = drv.createDomain('s1', pt);
    drv.attach(d, [{ id: 4 }]);
    drv.setFaultHandler(d, (f) => {
      pt.map(Number(f.far) - (Number(f.far) % 4096), 0xd000_0000, 4096, RW);
      return 'retry';
    });
    // No interrupt wiring: the first fault stays stalled and the second transaction is held behind it.
    const a = rec.dma(4, 0x9000_0100, 'r', false);
    const b = rec.dma(4, 0x9000_0200, 'w', false);
    expect(a.kind).toBe('stall');
    expect(b.kind).toBe('stall');
    expect(b.kind === 'stall' && rec.pending(b.tag)).toEqual(b);
    // The interrupt arrives late: the handler maps the page and resumes; both complete.
    drv.contextFaultIrq(d.cbndx);
    expect(a.kind === 'stall' && rec.pending(a.tag)).toEqual({ kind: 'pa', pa: 0xd000_0100 });
    expect(b.kind === 'stall' && rec.pending(b.tag)).toEqual({ kind: 'pa', pa: 0xd000_0200 });
    const doc = replaysIdentically(rec);
    expect(doc.steps.filter((s) => s.op === 'dma' || s.op === 'pending').map((s) => [s.op, s.tag ?? null, s.expect])).toEqual([
      ['dma', null, { stall: 1 }],
      ['dma', null, { stall: 2 }],
      ['pending', 2, { stall: 2 }],
      ['pending', 1, { pa: '0xd0000100' }],
      ['pending', 2, { pa: '0xd0000200' }],
    ]);
  });

  it('invalidation and sync: strict unmap (TLBIVA + TLBSYNC/TLBSTATUS), TLBIIPAS2L and TLBIVMID with a global sync', () => {
    const { rec, drv, d, before, unmapped, after, s2before, s2after } = scenarioInvalidation();
    expect(before).toEqual({ kind: 'pa', pa: 0x8000_0008 });
    expect(unmapped).toBe(0x2000);
    expect(after.kind).toBe('abort');
    expect(s2before).toEqual({ kind: 'pa', pa: 0x4000_0010 });
    expect(s2after.kind).toBe('abort');
    const doc = replaysIdentically(rec);
    const cb = drv.cb(d.cbndx);
    const h = (n: number): string => '0x' + n.toString(16);
    const i0 = doc.steps.findIndex((s) => s.op === 'w64' && s.at === h(cb + R.CB_TLBIVA));
    // The descriptor clears come before the TLBIs; then TLBIVA per page, TLBSYNC, TLBSTATUS reads 0.
    expect(doc.steps[i0 - 1]).toMatchObject({ op: 'mem', value: '0x0000000000000000' });
    expect(doc.steps.slice(i0, i0 + 4)).toEqual([
      { op: 'w64', at: h(cb + R.CB_TLBIVA), value: '0x0005000000012345' },
      { op: 'w64', at: h(cb + R.CB_TLBIVA), value: '0x0005000000012346' },
      { op: 'w32', at: h(cb + R.CB_TLBSYNC), value: '0xffffffff' },
      { op: 'r32', at: h(cb + R.CB_TLBSTATUS), expect: '0x00000000' },
    ]);
    const iv = doc.steps.findIndex((s) => s.op === 'w32' && s.at === h(R.GR0_TLBIVMID));
    expect(doc.steps.slice(iv, iv + 3)).toEqual([
      { op: 'w32', at: h(R.GR0_TLBIVMID), value: '0x00000021' },
      { op: 'w32', at: h(R.GR0_sTLBGSYNC), value: '0xffffffff' },
      { op: 'r32', at: h(R.GR0_sTLBGSTATUS), expect: '0x00000000' },
    ]);
  });

  it('recorded scenarios hold on every cache preset (the driver does its TLB maintenance)', () => {
    for (const name of cachePresetNames()) {
      for (const sc of [scenarioBringUp, scenarioAttach, scenarioFaults, scenarioInvalidation]) {
        const { rec } = sc();
        const s = parseScript(rec.text(), 'x.json');
        const make = cacheFactory(name);
        const o = runScript(s, 'x.json', (mem, x) => new Smmu(x.id, mem, make()));
        expect(o.steps.filter((x) => !x.pass).map((x) => `${name} ${rec.name} step ${x.index}: ${x.expected} vs ${x.actual}`)).toEqual([]);
      }
    }
  });

  // Presets that keep leaf translations (a TLB of some kind): only those can return a stale one.
  // Walk caches alone hold table descriptors, and a remap of a page leaves its tables unchanged.
  const CACHING = cachePresetNames().filter((n) => {
    const c = CACHE_PRESETS[n];
    return c !== null && c !== undefined && (c.main !== undefined || c.micro !== undefined || c.s1 !== undefined);
  });

  it.skipIf(CACHING.length === 0)('a recording made on a caching model reproduces its stale translation on that preset, and fails without caches', () => {
    const dir = tmp();
    for (const name of CACHING) {
      const mem = PhysMem.create({ regions: [{ base: TABLES, size: 16 << 20 }] });
      const smmu = new Smmu(encodeIds({ smrs: 8, sidBits: 10, contextBanks: 8, s2OnlyBanks: 2 }), mem, cacheFactory(name)());
      const rec = new SmmuRecorder(smmu, { name: `stale-${name}` });
      const drv = new ArmSmmuDriver(rec);
      drv.probe();
      drv.reset();
      const pt = createStage1(new PhysTables(mem, TABLES, TABLES + (8 << 20)), { granule: 4, ias: 48, oas: 48 }, 4);
      const d = drv.createDomain('s1', pt);
      drv.attach(d, [{ id: 7 }]);
      pt.map(0x5000_0000, 0x8000_0000, 4096, RW);
      expect(rec.dma(7, 0x5000_0010, 'r', false)).toEqual({ kind: 'pa', pa: 0x8000_0010 });
      // A driver bug: the page is remapped without invalidation, and the TLB still hits the old one.
      pt.unmap(0x5000_0000, 4096);
      pt.map(0x5000_0000, 0x9000_0000, 4096, RW);
      expect(rec.dma(7, 0x5000_0010, 'r', false)).toEqual({ kind: 'pa', pa: 0x8000_0010 });
      drv.flushAsid(d);
      expect(rec.dma(7, 0x5000_0010, 'r', false)).toEqual({ kind: 'pa', pa: 0x9000_0010 });
      const file = join(dir, `stale-${name}.json`);
      rec.save(file);
      const doc = JSON.parse(readFileSync(file, 'utf8')) as RecordedScript;
      const same = run('replay', '--caches', name, file);
      expect(lines(same.stdout), name).toEqual([`${doc.steps.length} passed, 0 failed`]);
      expect(same.status).toBe(0);
      const none = run('replay', file);
      expect(none.status).toBe(1);
      const k = doc.steps.findIndex((s, i) => s.op === 'dma' && i > ops(doc).indexOf('dma'));
      expect(lines(none.stdout), name).toEqual([
        `FAIL stale-${name} (${file}) step ${k} dma sid 0x7 va 0x50000010 r unpriv: expected {"pa":"0x80000010"}, got {"pa":"0x90000010"}`,
        `${doc.steps.length - 1} passed, 1 failed`,
      ]);
    }
  });

  it('a recorded script written to a file replays through the CLI, plain and --json', () => {
    const { rec } = scenarioFaults();
    const dir = tmp();
    const file = join(dir, 'faults.json');
    rec.save(file);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as RecordedScript;
    const r = run('replay', file);
    expect(r.stderr).toBe('');
    expect(lines(r.stdout)).toEqual([`${doc.steps.length} passed, 0 failed`]);
    expect(r.status).toBe(0);
    const j = run('replay', '--json', file);
    expect(j.status).toBe(0);
    const out = lines(j.stdout).map((l) => JSON.parse(l) as { name: string; steps: Json[] });
    expect(out).toEqual([
      {
        name: 'faults',
        steps: doc.steps.map((s) => (s.op === 'r32' || s.op === 'r64' ? { value: s.expect } : s.op === 'dma' || s.op === 'pending' ? s.expect : {})),
      },
    ]);
    // And a recording that no longer holds fails where it should: the model changed under it.
    const changed = structuredClone(doc);
    const k = changed.steps.findIndex((s) => s.op === 'pending' && s.tag === 1);
    changed.steps[k]!.expect = { pa: '0xb0000018' };
    writeFileSync(file, JSON.stringify(changed));
    const f = run('replay', file);
    expect(f.status).toBe(1);
    expect(lines(f.stdout)).toEqual([
      `FAIL faults (${file}) step ${k} pending tag 1: expected {"pa":"0xb0000018"}, got {"pa":"0xb0000010"}`,
      `${doc.steps.length - 1} passed, 1 failed`,
    ]);
  });
});

describe('the recorder: what it leaves out, and bad input', () => {
  it('leaves out TLBSTATUS reads that find ACTIVE set (a replay waits on them)', () => {
    const { smmu, tables, start } = rig({}, 'slow-sync');
    class SlowSync extends NoCache {
      polls = 0;
      override syncComplete(): boolean {
        return ++this.polls % 4 === 0;
      }
    }
    const { rec, drv } = start();
    const cache = new SlowSync();
    smmu.cache = cache;
    const d = drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 2));
    drv.attach(d, [{ id: 1 }]);
    drv.flushAsid(d);
    expect(cache.polls).toBe(4);
    const doc = replaysIdentically(rec);
    const status = '0x' + (drv.cb(d.cbndx) + R.CB_TLBSTATUS).toString(16);
    expect(doc.steps.filter((s) => s.at === status)).toEqual([{ op: 'r32', at: status, expect: '0x00000000' }]);
  });

  it('watches named memory, records reported changes, and stops watching walks afterwards', () => {
    const { mem, smmu, tables } = rig();
    mem.write64(TABLES + (12 << 20), 0x1234n);
    const rec = new SmmuRecorder(smmu, { name: 'watch', watch: [{ base: TABLES + (12 << 20), size: 4096 }] });
    mem.write64(TABLES + (12 << 20) + 8, 0x55n);
    rec.read32(R.GR0_sCR0);
    rec.mem(TABLES + (13 << 20), 0xabcdn);
    const doc = rec.script();
    expect(doc.memory).toEqual([[`0x${(TABLES + (12 << 20)).toString(16)}`, '0x0000000000001234']]);
    expect(doc.steps).toEqual([
      { op: 'mem', at: `0x${(TABLES + (12 << 20) + 8).toString(16)}`, value: '0x0000000000000055' },
      { op: 'r32', at: '0x0', expect: '0x' + R.sCR0_CLIENTPD.toString(16).padStart(8, '0') },
      { op: 'mem', at: `0x${(TABLES + (13 << 20)).toString(16)}`, value: '0x000000000000abcd' },
    ]);
    expect(mem.read64(TABLES + (13 << 20))).toBe(0xabcdn);
    expect(Object.hasOwn(mem, 'offsetOf')).toBe(false);
    void tables;
    expect(() => parseScript(rec.text(), 'watch.json')).not.toThrow();
  });

  it('refuses what a script cannot express, and warns about what it leaves out', () => {
    const { smmu } = rig();
    const rec = new SmmuRecorder(smmu);
    expect(() => rec.dma(0x1_0000, 0, 'r', false)).toThrow(RecorderError);
    expect(() => rec.dma(1, 0.5, 'r', false)).toThrow(/not a safe integer/);
    expect(() => rec.mem(3, 0n)).toThrow(/8-byte aligned/);
    expect(() => rec.watch(0x10, 4096)).toThrow(/not inside one RAM region/);
    expect(() => new SmmuRecorder(smmu, { name: '' })).toThrow(/name/);
    expect(rec.read32(smmu.registerSpaceBytes)).toBe(0);
    rec.write32(-4, 1);
    expect(rec.pending(77)).toBeNull();
    expect(rec.warnings).toHaveLength(3);
    expect(rec.warnings[0]).toMatch(/outside the register space/);
    expect(rec.warnings[2]).toMatch(/pending\(77\): no transaction has this tag/);
    expect(rec.script().steps).toEqual([]);
  });
});
