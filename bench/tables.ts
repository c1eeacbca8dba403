/**
 * `smmu-farm bench tables` (issue F): shared CPU page tables vs private IOMMU
 * tables, at stage 1 (a guest process's tables) and stage 2 (KVM's tables),
 * with the owners of src/vsmmu/owners.ts (logic in src/bench/tables.ts).
 *
 * - Exact counts per change kind: descriptor writes, TLBIs, syncs.
 * - Table memory for a mapped footprint at a few sizes.
 * - Nested translation throughput through the SMMU model over each owner's
 *   tables (walk-only and mmu600), as a ratio shared / private in the same run.
 * - The time a CPU-side change takes until every device sees it: through the
 *   register model (its TLBSYNC completes when the model's caches have applied
 *   the TLBIs), and with a farm of 1 or 2 translation units busy translating
 *   the VMs' DMA, whose sync waits for every busy unit.
 *
 * --quick: fewer rounds and cycles, footprints up to 256 MiB; --tiny (for tests):
 * one farm unit, 1-2 rounds. results/tables.json follows smmu-farm-bench/1.
 */

import { cpus } from 'node:os';
import { BENCH_SCHEMA, exact, measured, type BenchDoc, type Figure } from '../src/bench/schema.js';
import { CHANGES, OWNERSHIPS, TablesWorld, changeCosts, runFarmTiming, tableMemory, throughput, timeChanges, type FarmTiming, type TimedChange } from '../src/bench/tables.js';
import { DEFAULT_POLL_EVERY } from '../src/farm/farm.js';
import type { Ownership } from '../src/vsmmu/owners.js';
import { arg, benchMode, commandLine, fmt, machine, spread, publish, runMain } from './lib.js';

async function main(): Promise<void> {
  const mode = benchMode();
  const outDir = arg('--out', 'results');
  const tiny = mode === 'tiny';
  const quick = mode === 'quick';
  const rounds = Number(arg('--rounds', tiny ? '2' : quick ? '3' : '5'));
  const cycles = tiny ? 3 : quick ? 10 : 30;
  const farmCycles = tiny ? 3 : quick ? 8 : 20;
  const farmRounds = tiny ? 1 : rounds;
  const footprints = tiny ? [2, 16] : quick ? [2, 64, 256] : [2, 64, 1024];
  const translations = tiny ? 20_000 : quick ? 50_000 : 200_000;
  const cores = cpus().length;
  const unitCounts = tiny ? [1] : [1, 2];
  const log = (s: string): void => {
    process.stderr.write(`bench:tables: ${s}\n`);
  };
  const stageName = (s: number): string => `stage ${s}`;

  // ---- exact counts
  const costs = changeCosts();
  log(`counts: ${costs.length} (ownership, change) pairs`);
  const tm = tableMemory(footprints);
  log(`table memory at ${footprints.join(', ')} MiB`);

  // ---- throughput
  const caches = ['none', 'mmu600'];
  const tp = caches.map((c) => {
    const r = throughput(c, rounds, translations);
    const ratio = r.shared.map((s, i) => s / r.private[i]!);
    log(`throughput (${c}): shared ${fmt(spread(r.shared).median / 1e6, 2)} M/s, private ${fmt(spread(r.private).median / 1e6, 2)} M/s, ratio ${fmt(spread(ratio).median, 3)}`);
    return { cache: c, perRound: r, ratio };
  });

  // ---- time until every device sees the change: register model
  const w = new TablesWorld();
  for (const o of OWNERSHIPS) w.cycle(w.sides[o]); // warm-up
  const regRows = timeChanges(w, rounds, cycles);
  log(`register model: ${rounds} rounds of ${cycles} cycles per ownership`);

  // ---- ... and with a farm of translation units
  const farms: Array<FarmTiming & { waiting: string }> = [];
  for (const units of unitCounts) {
    // The sync spins 100 polls per unit and then sleeps in 10 us steps (as the stress tester's
    // mutators do): on a machine with few cores, or shared with other work, a sync that only
    // spins can keep the very unit it waits for off the core (measured: medians of ms).
    const waiting = 'spin 100 polls per unit, then 10 us sleeps';
    const f = await runFarmTiming(units, farmRounds, farmCycles, { yieldAfterSpins: 100 });
    farms.push({ ...f, waiting });
    log(`farm, ${units} unit(s): ${f.changesAllBusy}/${f.changes} changes started with every unit busy; ${f.invalidationsPublished} TLBIs published; final check passed`);
  }

  // ---- figures
  const figures: Figure[] = [];
  for (const r of costs) {
    const params = { stage: stageName(r.stage), change: r.change, ownership: r.ownership };
    figures.push(exact('descriptor writes per change', 'writes', params, r.cost.descriptorWrites));
    figures.push(exact('TLBIs per change', 'TLBIs', params, r.cost.tlbi));
    figures.push(exact('syncs per change', 'syncs', params, r.cost.syncs));
  }
  for (const r of tm) {
    figures.push(exact('table memory', 'KiB', { stage: stageName(r.stage), leaves: r.leaves, 'footprint MiB': r.footprintMiB, ownership: r.ownership }, r.tablePages * 4));
  }
  for (const t of tp) {
    for (const o of OWNERSHIPS) figures.push(measured('nested translations per second', 'translations/s', { caches: t.cache, ownership: o }, t.perRound[o]));
    figures.push(measured('throughput ratio shared / private', 'x', { caches: t.cache }, t.ratio));
  }
  const timeFigures = (rows: TimedChange[], path: string): void => {
    for (const r of rows) {
      const params = { path, stage: stageName(r.stage), change: r.change, ownership: r.ownership };
      figures.push(measured('time until every device sees the change', 'us', params, r.us));
      if (r.invalidateUs.some((x) => x > 0)) figures.push(measured('first TLBI to sync complete', 'us', params, r.invalidateUs));
    }
  };
  const regPath = 'register model';
  const farmPath = (u: number): string => `farm, ${u} unit${u === 1 ? '' : 's'} busy`;
  timeFigures(regRows, regPath);
  for (const f of farms) timeFigures(f.rows, farmPath(f.units));

  const m = machine();
  const json: BenchDoc = {
    schema: BENCH_SCHEMA,
    suite: 'tables',
    benchmark: 'tables',
    command: commandLine('bench:tables', mode),
    config: {
      mode,
      rounds,
      cyclesPerRound: cycles,
      farmRounds,
      farmCyclesPerRound: farmCycles,
      farmUnits: unitCounts,
      farmUnitCache: 'mmu600',
      smmuCache: 'mmu600',
      footprintsMiB: footprints,
      translationsPerRound: translations,
      devicesPerVm: 2,
      granule: '4 KiB',
    },
    headline: { title: 'Descriptor writes per CPU-side change: the SMMU walks the CPU\'s tables (shared) or mirrored IOMMU tables (private)', metric: 'descriptor writes per change', x: 'change', series: 'ownership' },
    figures,
    machine: m,
    costs,
    tableMemory: tm,
    throughput: tp,
    registerTiming: regRows,
    farmTiming: farms.map((f) => ({ units: f.units, waiting: f.waiting, changesAllBusy: f.changesAllBusy, changes: f.changes, invalidationsPublished: f.invalidationsPublished, batches: f.batches, unitStats: f.stats, rows: f.rows })),
  };

  // ---- Markdown
  const cost = (o: Ownership, ch: string) => costs.find((r) => r.ownership === o && r.change === ch)!.cost;
  const med = (v: number[]): number => spread(v).median;
  const timeOf = (rows: TimedChange[], o: Ownership, ch: string): TimedChange => rows.find((r) => r.ownership === o && r.change === ch)!;
  const paths: Array<{ name: string; rows: TimedChange[] }> = [{ name: regPath, rows: regRows }, ...farms.map((f) => ({ name: farmPath(f.units), rows: f.rows }))];
  const writeRatios = CHANGES.map((c) => ({ change: c.key, ratio: cost('private', c.key).descriptorWrites / cost('shared', c.key).descriptorWrites }));
  const doubled = writeRatios.filter((r) => r.ratio === 2).map((r) => r.change);
  const sameTlbi = CHANGES.filter((c) => cost('shared', c.key).tlbi === cost('private', c.key).tlbi).map((c) => c.key);
  const diffTlbi = CHANGES.filter((c) => cost('shared', c.key).tlbi !== cost('private', c.key).tlbi).map((c) => c.key);
  const tmRow = (stage: number, leaves: string, f: number, o: Ownership): number => tm.find((r) => r.stage === stage && r.leaves === leaves && r.footprintMiB === f && r.ownership === o)!.tablePages * 4;
  const tmKinds = [
    { stage: 1, leaves: '4 KiB pages' },
    { stage: 2, leaves: '2 MiB blocks' },
    { stage: 2, leaves: '4 KiB pages' },
  ];
  const kib = (x: number): string => (Number.isInteger(x) ? String(x) : fmt(x, 2));
  const wp = 'S2 write-protect 16 pages';
  const tpRatio = (c: string): { median: number; min: number; max: number } => spread(tp.find((t) => t.cache === c)!.ratio);
  const usCell = (r: TimedChange): string => `${fmt(med(r.us), 1)} (${fmt(Math.min(...r.us), 1)}-${fmt(Math.max(...r.us), 1)})`;
  const largestF = footprints[footprints.length - 1]!;
  const md = [
    '# Tables benchmark: shared CPU page tables vs private IOMMU tables',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    '',
    'A KVM guest with an assigned device behind an SMMUv2 doing nested translation: the guest\'s stage 1 (a process\'s address space, VA -> IPA) over KVM\'s stage 2 (IPA -> PA).',
    'Who owns the tables the SMMU walks (`src/vsmmu/owners.ts`):',
    '',
    '- **shared**: the SMMU walks the CPU\'s own tables: the guest process\'s page tables at stage 1 (shared virtual addressing) and KVM\'s stage-2 tables at stage 2. A CPU-side change reaches the devices only as TLB invalidations (TLBIVA/TLBIVAL at stage 1; TLBIIPAS2 and, by KVM\'s rule for combined entries, TLBIVMID at stage 2), each followed by TLBSYNC or sTLBGSYNC.',
    '- **private**: the SMMU walks IOMMU tables of their own (the guest kernel\'s for stage 1, VFIO\'s for stage 2), mirrored from every change: a second set of table pages and a second set of descriptor writes, the same invalidations.',
    '',
    'One world holds two VMs with identical memory layouts on one physical SMMUv2 (MMU-600-like caches), one per ownership at both stages, each with 2 assigned devices attached to the process\'s stage-1 domain.',
    'Every change below is checked by DMA through the SMMU model afterwards (each device must fault where the mapping went, or was write-protected, and translate everywhere else); a failed check stops the benchmark.',
    '',
    '## Cost of one change (exact counts)',
    '',
    '| stage | change | shared: descriptor writes / TLBIs / syncs | private: descriptor writes / TLBIs / syncs |',
    '|---|---|---:|---:|',
    ...CHANGES.map((c) => {
      const s = cost('shared', c.key);
      const p = cost('private', c.key);
      return `| ${c.stage} | ${c.key} | ${s.descriptorWrites} / ${s.tlbi} / ${s.syncs} | ${p.descriptorWrites} / ${p.tlbi} / ${p.syncs} |`;
    }),
    '',
    'The changes: the process maps 64 pages into a fresh region (new tables at three levels, hence the descriptors beyond the 64 leaves), write-protects 16 of them with mprotect (TLBIVAL per page), and unmaps 16 (TLBIVA per page, one sync);',
    'KVM unmaps one 4 KiB page of guest memory (TLBIIPAS2, sync, TLBIVMID, global sync), write-protects 16 pages for dirty logging, takes a 2 MiB block away (one TLBIIPAS2 for the block) and gives it back (no invalidation), and splits a 2 MiB block into 512 pages by break-before-make (as KVM\'s eager split does when dirty logging starts).',
    'The counts are those of the first change of each kind in a fresh world; the timed cycles further down repeat each change, mapping each time into a new 2 MiB region of the same address space (where only the level-3 table is new).',
    '',
    `What the numbers say: private tables double the descriptor writes of ${doubled.length} of ${CHANGES.length} change kinds${doubled.length < CHANGES.length ? ` (all but ${CHANGES.filter((c) => !doubled.includes(c.key)).map((c) => c.key).join(', ')})` : ''}, and the invalidations are the same for ${sameTlbi.length} of ${CHANGES.length}.`,
    diffTlbi.length > 0
      ? `The exception is ${diffTlbi.join(', ')}: KVM write-protects its own tables only. With shared tables that costs ${cost('shared', wp).tlbi} TLBIs and ${cost('shared', wp).syncs} syncs, and afterwards the devices' writes to those pages fault at stage 2 (SMMUv2 has no hardware dirty-state update), so dirty logging stops DMA writes. With private tables nothing reaches the SMMU (${cost('private', wp).tlbi} TLBIs), the devices keep writing, and their writes are not logged: VFIO must report every pinned page dirty.`
      : '',
    '',
    '## Table memory for a mapped footprint (exact, KiB)',
    '',
    'Stage 1: a process maps the footprint in 4 KiB pages (not 2 MiB aligned in IPA) into an empty address space. Stage 2: a VM whose one memslot is the footprint, backed by 2 MiB blocks (transparent huge pages) or by 4 KiB pages.',
    '',
    `| stage, leaves | ${footprints.map((f) => `${f} MiB: shared / private`).join(' | ')} |`,
    `|---|${footprints.map(() => '---:').join('|')}|`,
    ...tmKinds.map((k) => `| ${k.stage}, ${k.leaves} | ${footprints.map((f) => `${kib(tmRow(k.stage, k.leaves, f, 'shared'))} / ${kib(tmRow(k.stage, k.leaves, f, 'private'))}`).join(' | ')} |`),
    '',
    `Private tables hold a full second copy: at ${largestF} MiB mapped in 4 KiB pages, ${kib(tmRow(1, '4 KiB pages', largestF, 'private') - tmRow(1, '4 KiB pages', largestF, 'shared'))} KiB more at stage 1 and ${kib(tmRow(2, '4 KiB pages', largestF, 'private') - tmRow(2, '4 KiB pages', largestF, 'shared'))} KiB more at stage 2; with 2 MiB blocks at stage 2 the copy is only ${kib(tmRow(2, '2 MiB blocks', largestF, 'private') - tmRow(2, '2 MiB blocks', largestF, 'shared'))} KiB.`,
    '',
    '## Translation throughput over each owner\'s tables',
    '',
    `Nested translations through the SMMU model (\`phys.dma\`) of a device of each VM, ${translations} per round over an 8 MiB window mapped with 4 KiB leaves at both stages, in a pseudo-random page order; both VMs measured back to back in every round (alternating which goes first). Medians of ${rounds} rounds, min-max beside them.`,
    '',
    '| caches | shared (translations/s) | private (translations/s) | shared / private |',
    '|---|---:|---:|---:|',
    ...tp.map((t) => {
      const s = spread(t.perRound.shared);
      const p = spread(t.perRound.private);
      const r = spread(t.ratio);
      return `| ${t.cache === 'none' ? 'none (every translation walks: 24 reads)' : t.cache} | ${fmt(s.median / 1e6, 2)} M (${fmt(s.min / 1e6, 2)}-${fmt(s.max / 1e6, 2)}) | ${fmt(p.median / 1e6, 2)} M (${fmt(p.min / 1e6, 2)}-${fmt(p.max / 1e6, 2)}) | ${fmt(r.median, 3)} (${fmt(r.min, 3)}-${fmt(r.max, 3)}) |`;
    }),
    '',
    `The tables are the same shape in both modes, so the walker does the same work: the ratio is ${fmt(tpRatio('none').median, 3)} walking every time and ${fmt(tpRatio('mmu600').median, 3)} with mmu600 caches. ${Math.abs(tpRatio('none').median - 1) < 0.05 && Math.abs(tpRatio('mmu600').median - 1) < 0.05 ? 'Both are within 5% of 1: ownership does not change translation speed here.' : 'At least one is more than 5% from 1. The tables have the same shape and every walk reads the same number of descriptors, so the difference comes from something other than ownership (where the tables lie in memory, the JIT, other work on this shared machine); see the min-max.'} (On hardware, private tables can be placed for the SMMU and shared ones can be evicted from caches by CPU traffic; neither is modelled.)`,
    '',
    '## Time until every device sees a change (us)',
    '',
    'Each change is timed in-process from its start (descriptor writes) to its end, when its last TLBSYNC / sTLBGSYNC has completed; "first TLBI to sync complete" is the invalidation part alone. Caches are warmed by DMA before each change, so its TLBIs remove real entries.',
    `- **${regPath}**: the TLBIs reach the physical SMMU model's caches (through the vSMMU's trap for stage 1), and TLBSTATUS reads 0 once they are applied.`,
    `- **farm, N units busy**: the same, and every TLBI the SMMU receives is also published to a farm of N translation units (\`src/farm\`, mmu600 caches each, standing for TBUs) that a worker thread keeps busy translating both VMs' DMA; each sync returns once every busy unit has applied the TLBIs (\`FarmInvalidator.sync\`, the protocol bench/farm.ts measures). Before each change the main thread waits until every unit is busy. After the timed changes, KVM unmaps a page the units have cached and every device translates it on every unit: it must fault, and its neighbour must not (checked).`,
    '',
    `Medians over rounds of per-round medians (${cycles} cycles per round on the register model, ${farmCycles} with the farm), min-max beside them.`,
    '',
    `| change | ${paths.map((p) => `${p.name}: shared | private`).join(' | ')} |`,
    `|---|${paths.map(() => '---:|---:').join('|')}|`,
    ...CHANGES.map((c) => `| ${c.key} | ${paths.map((p) => `${usCell(timeOf(p.rows, 'shared', c.key))} | ${usCell(timeOf(p.rows, 'private', c.key))}`).join(' | ')} |`),
    '',
    'First TLBI to sync complete (changes that invalidate):',
    '',
    `| change | ${paths.map((p) => `${p.name}: shared | private`).join(' | ')} |`,
    `|---|${paths.map(() => '---:|---:').join('|')}|`,
    ...CHANGES.filter((c) => cost('shared', c.key).tlbi > 0 || cost('private', c.key).tlbi > 0).map(
      (c) => `| ${c.key} | ${paths.map((p) => `${fmt(med(timeOf(p.rows, 'shared', c.key).invalidateUs), 1)} | ${fmt(med(timeOf(p.rows, 'private', c.key).invalidateUs), 1)}`).join(' | ')} |`,
    ),
    '',
    (() => {
      const mm = 'mmap 64 pages';
      const sp = 'S2 split 2 MiB block';
      const a = med(timeOf(regRows, 'private', mm).us) / med(timeOf(regRows, 'shared', mm).us);
      const b = med(timeOf(regRows, 'private', sp).us) / med(timeOf(regRows, 'shared', sp).us);
      const c = med(timeOf(regRows, 'private', wp).us) / med(timeOf(regRows, 'shared', wp).us);
      return `On the register model, the changes that are mostly descriptor writes (whose writes private tables double) take ${fmt(a, 2)}x as long with private tables (mmap) and ${fmt(b, 2)}x (split); the invalidation part is the same work in both modes; the stage-2 write-protect, which leaves the SMMU alone with private tables, takes ${fmt(c, 2)}x the shared time.`;
    })(),
    ...farms.map(
      (f) =>
        `Farm with ${f.units} unit${f.units === 1 ? '' : 's'}: ${f.changesAllBusy} of ${f.changes} changes started with every unit busy; ${f.invalidationsPublished} TLBIs were published to the units; the sync waited by "${f.waiting}" (a sync that only spins can keep the very unit it waits for off the core on a loaded machine).`,
    ),
    '',
    `With the farm, every sync waits until each busy unit reaches its next poll (every ${DEFAULT_POLL_EVERY} translations), so a change with syncs costs at least one poll interval per sync whatever the ownership: the fan-out cost is per sync, not per descriptor, and is the same for shared and private tables. On this ${cores}-core machine the farm runs ${unitCounts.map((u) => u + 2).join(' or ')} threads (the units, the thread that feeds them, and the one making the change), so a sync also waits whenever a unit has been descheduled, and these times vary a lot from run to run (see the min-max).`,
    'One SMMUv2 invalidates per context bank, not per device: the 2 devices of each VM share a bank, so more devices on one SMMU add no TLBIs. The fan-out that grows is over translation units (TBUs) and, on hardware, over SMMUs (each needs its own TLBIs and sync; not modelled here).',
    '',
  ].join('\n');
  publish('tables', json, md, outDir);
}

runMain('tables', main);
