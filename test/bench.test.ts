/**
 * `smmu-farm bench`: every implemented suite runs (in its --tiny form, into a
 * temporary folder), its JSON conforms to the results schema, its chart is
 * well-formed SVG with the expected elements, PAPERS.md carries the exact
 * nested-walk figures, and bad input is refused with exit status 2.
 *
 * Runs the built CLI (dist/), like test/cli.test.ts: `npm test` builds first.
 */

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { escapeXml, formatValue, niceTicks, renderChart } from '../src/bench/chart.js';
import { buildPapers, nestedReadsPerWalk } from '../src/bench/papers.js';
import { BENCH_SCHEMA, figure, figuresOf, validateBenchDoc, type BenchDoc } from '../src/bench/schema.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const RESULTS = fileURLToPath(new URL('../results', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Hashes of every file under results/, to show the tests leave the committed results alone. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isFile()) out[f] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  text: string;
  depth: number;
}

/**
 * A strict little XML well-formedness check (enough for SVG: elements, attributes, text,
 * the five predefined entities and character references; no DTD, no CDATA). Throws on the
 * first problem; returns the elements in document order.
 */
function parseXml(xml: string): XmlElement[] {
  const els: XmlElement[] = [];
  const stack: XmlElement[] = [];
  const entity = /&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
  const checkText = (t: string, where: string): string => {
    if (t.includes('<')) throw new Error(`raw < in ${where}`);
    if (t.replace(entity, '').includes('&')) throw new Error(`bare & in ${where}: ${t.slice(0, 60)}`);
    return t.replace(entity, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[e] ?? '?');
  };
  let i = 0;
  let roots = 0;
  while (i < xml.length) {
    if (xml.startsWith('<!--', i)) {
      const end = xml.indexOf('-->', i);
      if (end < 0) throw new Error('unterminated comment');
      i = end + 3;
    } else if (xml.startsWith('</', i)) {
      const m = /^<\/([A-Za-z_][\w.:-]*)\s*>/.exec(xml.slice(i));
      if (m === null) throw new Error(`bad end tag at ${i}`);
      const open = stack.pop();
      if (open === undefined || open.name !== m[1]) throw new Error(`</${m[1]}> closes <${open?.name ?? 'nothing'}>`);
      i += m[0].length;
    } else if (xml[i] === '<') {
      const m = /^<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(xml.slice(i));
      if (m === null) throw new Error(`bad start tag at ${i}: ${xml.slice(i, i + 60)}`);
      const attrs: Record<string, string> = {};
      for (const a of m[2]!.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
        if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]} on <${m[1]}>`);
        attrs[a[1]!] = checkText(a[2] ?? a[3] ?? '', `attribute ${a[1]}`);
      }
      if (stack.length === 0) roots++;
      const el: XmlElement = { name: m[1]!, attrs, text: '', depth: stack.length };
      els.push(el);
      if (m[3] !== '/') stack.push(el);
      i += m[0].length;
    } else {
      const end = xml.indexOf('<', i);
      const t = xml.slice(i, end < 0 ? xml.length : end);
      if (stack.length === 0 && t.trim() !== '') throw new Error(`text outside the root: ${t.slice(0, 40)}`);
      if (stack.length > 0) stack[stack.length - 1]!.text += checkText(t, `text of <${stack[stack.length - 1]!.name}>`);
      i = end < 0 ? xml.length : end;
    }
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (roots !== 1) throw new Error(`expected one root element, found ${roots}`);
  return els;
}

function checkSvg(svg: string, doc: BenchDoc): XmlElement[] {
  const els = parseXml(svg);
  const root = els[0]!;
  expect(root.name).toBe('svg');
  expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
  expect(root.attrs.viewBox).toMatch(/^0 0 \d+ \d+$/);
  const byClass = (c: string): XmlElement[] => els.filter((e) => (e.attrs.class ?? '').split(' ').includes(c));
  // Title, both axes with titles, a legend, one bar per headline figure.
  expect(els.find((e) => e.name === 'title' && e.depth === 1)?.text).toBe(doc.headline.title);
  expect(byClass('title').map((e) => e.text).join(' ')).toBe(doc.headline.title);
  expect(byClass('axis')).toHaveLength(2);
  const axisTitles = byClass('axis-title').map((e) => e.text);
  expect(axisTitles).toContain(doc.headline.x);
  const headline = figuresOf(doc, doc.headline.metric);
  expect(axisTitles).toContain(`${doc.headline.metric} (${headline[0]!.unit})`);
  expect(byClass('legend')).toHaveLength(1);
  const bars = byClass('bar');
  expect(bars).toHaveLength(headline.length);
  for (const b of bars) {
    for (const k of ['x', 'y', 'width', 'height']) expect(Number.isFinite(Number(b.attrs[k])), `${k}=${b.attrs[k]}`).toBe(true);
    expect(Number(b.attrs.height)).toBeGreaterThanOrEqual(0);
  }
  // Each bar carries a tooltip; the tallest bar (to the 0.1 px the coordinates keep) is the largest median.
  const tips = bars.map((b) => els[els.indexOf(b) + 1]!);
  for (const t of tips) expect(t.name).toBe('title');
  const maxH = Math.max(...bars.map((b) => Number(b.attrs.height)));
  expect(maxH).toBeGreaterThan(0);
  const tallest = tips.filter((_, i) => Number(bars[i]!.attrs.height) >= maxH - 0.15).map((t) => t.text);
  const largest = `: ${formatValue(Math.max(...headline.map((f) => f.median)))} ${headline[0]!.unit}`;
  expect(tallest.some((t) => t.includes(largest)), `${largest} in ${JSON.stringify(tallest)}`).toBe(true);
  return els;
}

const SUITE_FILES: Record<string, string> = { tables: 'tables', walk: 'walk', atomics: 'atomic-read', cache: 'cache', caches: 'caches', farm: 'farm', topology: 'topology', invalidation: 'invalidation', papers: 'papers' };

describe('smmu-farm bench all --tiny', () => {
  let dir = '';
  let r: ReturnType<typeof run>;
  let before: Record<string, string>;
  const docs: Record<string, BenchDoc> = {};

  beforeAll(() => {
    before = snapshot(RESULTS);
    dir = mkdtempSync(join(tmpdir(), 'smmu-bench-'));
    r = run('bench', 'all', '--tiny', '--out', dir, '--json', join(dir, 'all.json'));
    for (const [suite, base] of Object.entries(SUITE_FILES)) {
      const p = join(dir, `${base}.json`);
      if (existsSync(p)) docs[suite] = JSON.parse(readFileSync(p, 'utf8')) as BenchDoc;
    }
  }, 120_000);

  it('runs every suite, exits 0 and writes JSON, Markdown and SVG for each', () => {
    expect(r.stderr).not.toMatch(/bench: .*(failed|exited|does not conform)/);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`bench all (tiny): ${Object.keys(SUITE_FILES).length} of ${Object.keys(SUITE_FILES).length} suites`);
    for (const base of ['walk', 'atomic-read', 'cache', 'caches', 'farm']) {
      for (const ext of ['json', 'md', 'svg']) expect(existsSync(join(dir, `${base}.${ext}`)), `${base}.${ext}`).toBe(true);
    }
    for (const f of ['papers.json', 'papers.svg', 'PAPERS.md']) expect(existsSync(join(dir, f)), f).toBe(true);
  });

  it('leaves the committed results/ alone', () => {
    expect(snapshot(RESULTS)).toEqual(before);
  });

  it.each(Object.keys(SUITE_FILES))('%s: the JSON conforms to the results schema', (suite) => {
    const doc = docs[suite]!;
    expect(doc, `${suite} JSON`).toBeDefined();
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.schema).toBe(BENCH_SCHEMA);
    expect(doc.suite).toBe(suite);
    expect(doc.config.mode).toBe('tiny');
    expect(doc.command).toContain(`smmu-farm bench ${suite} --tiny`);
    expect(doc.machine.cores).toBeGreaterThanOrEqual(1);
    expect(doc.machine.node).toBe(process.version);
    expect(Math.abs(Date.now() - Date.parse(doc.machine.date))).toBeLessThan(10 * 60_000);
    for (const f of doc.figures) expect(f.min <= f.median && f.median <= f.max, JSON.stringify(f)).toBe(true);
  });

  it('the figures say what the suites measure', () => {
    // walk: every regime and construction timed; 24 reads per nested walk, 4 per stage-1 or stage-2 walk.
    const walk = docs.walk!;
    expect(figuresOf(walk, 'ns per walk')).toHaveLength(9);
    for (const v of ['atomic', 'bigint', 'plain']) {
      expect(figure(walk, 'descriptor reads per walk', { variant: v, regime: 'nested' }).median).toBe(24);
      expect(figure(walk, 'descriptor reads per walk', { variant: v, regime: 'stage1' }).median).toBe(4);
      expect(figure(walk, 'ns per walk', { variant: v, regime: 'nested' }).median).toBeGreaterThan(0);
    }
    // cache: no caches means 24 reads per translation on every workload, and mmu600 reads fewer.
    const cache = docs.cache!;
    for (const w of ['nested-4k-1g', 'ring-pagepool', 'zipf-0.99']) {
      expect(figure(cache, 'descriptor reads per translation', { workload: w, preset: 'none' }).median).toBe(24);
      expect(figure(cache, 'TLB hit rate', { workload: w, preset: 'none' }).median).toBe(0);
      expect(figure(cache, 'descriptor reads per translation', { workload: w, preset: 'mmu600' }).median).toBeLessThan(24);
    }
    // caches: the IOTLB cliff. The mmu600 main TLB (2048 entries) reaches 8 MiB with 4 KiB pages:
    // a 4 MiB ring always hits; a 16 MiB ring hits only on the second buffer of each page, and
    // with the main TLB alone each miss is a full 24-read nested walk. 2 MiB pages never miss here.
    const caches = docs.caches!;
    const c = (pages: string, cfg: string, mib: number, metric = 'TLB hit rate'): number => figure(caches, metric, { pages, caches: cfg, 'ring MiB': mib }).median;
    for (const cfg of ['mmu600', 'main TLB only']) {
      expect(c('4K', cfg, 4)).toBe(100);
      expect(c('4K', cfg, 16)).toBe(50);
      expect(c('2M', cfg, 16)).toBe(100);
      expect(c('2M', cfg, 16, 'descriptor reads per translation')).toBe(0);
    }
    expect(c('4K', 'main TLB only', 16, 'descriptor reads per translation')).toBe(12);
    expect(c('4K', 'mmu600', 16, 'descriptor reads per translation')).toBeLessThan(12);
    // ... and against TLB size (tiny: a 4 MiB ring of 1024 pages): resident from 1024 entries on.
    const bySize = (pages: string, entries: number): number => figure(caches, 'TLB hit rate by TLB size', { pages, 'TLB entries': entries, 'ring MiB': 4 }).median;
    expect([256, 512, 1024, 2048].map((e) => bySize('4K', e))).toEqual([50, 50, 100, 100]);
    expect([256, 512, 1024, 2048].map((e) => bySize('2M', e))).toEqual([100, 100, 100, 100]);
    // papers: the IOTLB cliff row, computed, not copied: 50% past the 8 MiB reach with 4 KiB pages, none with 2 MiB.
    const cliff = (pages: string, mib: number): number => figure(docs.papers!, 'ring TLB hit rate (IOTLB cliff)', { pages, 'ring MiB': mib, preset: 'mmu600' }).median;
    expect([cliff('4K', 8), cliff('4K', 16), cliff('2M', 64)]).toEqual([100, 50, 100]);
    // farm: 1 and N units for both workloads, each through translate() and written in place, and
    // hit-dominated with resident requests; atomics: 7 constructions x 2 patterns.
    const units = docs.farm!.config.units as number[];
    expect(units[0]).toBe(1);
    expect(figuresOf(docs.farm!, 'translations per second').map((f) => f.params.units)).toEqual([...units, ...units, ...units, ...units, ...units]);
    expect([...new Set(figuresOf(docs.farm!, 'translations per second').map((f) => f.params.workload))]).toEqual([
      'hit-dominated (64 hot pages, mmu600)',
      'hit-dominated, written in place',
      'hit-dominated, requests resident',
      'walk-dominated (nested-4k-1g, no caches)',
      'walk-dominated, written in place',
    ]);
    expect(figuresOf(docs.atomics!, 'ns per read')).toHaveLength(14);
  });

  it.each(Object.entries(SUITE_FILES))('%s: the chart is well-formed SVG with title, axes, legend and one bar per headline figure', (suite, base) => {
    const svg = readFileSync(join(dir, `${base}.svg`), 'utf8');
    checkSvg(svg, docs[suite]!);
    // Drawn from the JSON alone, deterministically.
    expect(renderChart(docs[suite]!)).toBe(svg);
    // The suite's other charts, each in its own file, checked the same way.
    for (const c of docs[suite]!.charts ?? []) {
      const other = readFileSync(join(dir, `${base}-${c.name}.svg`), 'utf8');
      checkSvg(other, { ...docs[suite]!, headline: c });
      expect(renderChart(docs[suite]!, { chart: c })).toBe(other);
    }
  });

  it('the main curves have charts: hit rate vs TLB size, throughput vs workers and vs topology size, reads per walk per strategy', () => {
    const chartsOf = (suite: string): string[] => [docs[suite]!.headline.metric, ...(docs[suite]!.charts ?? []).map((c) => c.metric)];
    expect(chartsOf('caches')).toContain('TLB hit rate by TLB size');
    expect(chartsOf('farm')).toContain('translations per second');
    expect(chartsOf('topology')).toContain('translations per second');
    expect(chartsOf('papers')).toContain('descriptor reads per walk');
    expect(chartsOf('invalidation')).toContain('TLB hit rate under stage-2 changes');
  });

  it('PAPERS.md and papers.json carry the exact nested-walk figures beside the published ones', () => {
    const papers = docs.papers!;
    const nested = figuresOf(papers, 'descriptor reads per walk').filter((f) => f.params.translation === 'nested' && String(f.params.configuration).startsWith('no caches'));
    expect(nested.map((f) => [f.median, f.reference?.value, f.exact])).toEqual([
      [24, 24, true],
      [19, 19, true],
      [14, 14, true],
    ]);
    const md = readFileSync(join(dir, 'PAPERS.md'), 'utf8');
    expect(md).toContain('| 24 / 19 / 14 | match (exact) |');
    expect(md).toMatch(/\| 4 KiB page \| level 3 \| 4 \| 24 \| \*\*24\*\* \| 4 \|/);
    expect(md).toMatch(/\| 2 MiB block \| level 2 \| 3 \| 19 \| \*\*19\*\* \| 4 \|/);
    expect(md).toMatch(/\| 1 GiB block \| level 1 \| 2 \| 14 \| \*\*14\*\* \| 4 \|/);
    // Read from the cache suite's results of the same run, and unmeasured items marked as such.
    expect(md).toContain('[cache.json](cache.json)');
    expect(md).toContain('[invalidation.json](invalidation.json)');
    expect(md).toMatch(/^\| 5 \| .* \| [\d.]+% -> [\d.]+% -> [\d.]+% of the no-invalidation throughput \(strict -> batched -> deferred\) \|/m);
    expect(md).toMatch(/^\| 6 \| .* \| at one stage-2 change per \d+ translations: TLB hit rate [\d.]+% \(combined \+ rule\) vs [\d.]+% .* 2 vs 1 TLBIs per change \|/m);
    expect(md).toContain('same shape: a cliff at the TLB reach, moved out by 2 MiB pages');
    expect(md).toContain('![Descriptor reads per walk, ours beside published](papers.svg)');
  });

  it('--json FILE holds every suite\'s document', () => {
    const all = JSON.parse(readFileSync(join(dir, 'all.json'), 'utf8')) as { suites: Record<string, BenchDoc> };
    expect(Object.keys(all.suites)).toEqual(Object.keys(SUITE_FILES));
    for (const [suite, doc] of Object.entries(all.suites)) expect(doc).toEqual(docs[suite]);
  });
});

describe('exact descriptor reads per nested walk (E1), caching off', () => {
  it('24 with 4 KiB stage-2 pages, 19 with 2 MiB blocks, 14 with 1 GiB blocks; 4 with stage 1 alone', () => {
    const got = (['4K', '2M', '1G'] as const).map((leaf) => nestedReadsPerWalk(leaf, 16));
    expect(got.map((g) => g.reads)).toEqual([24, 19, 14]);
    expect(got.map((g) => g.s2Level)).toEqual([3, 2, 1]);
    expect(got.map((g) => g.s1Level)).toEqual([3, 3, 3]);
    expect(got.map((g) => g.nativeReads)).toEqual([4, 4, 4]);
  });
});

describe('results schema validator', () => {
  const valid = (): BenchDoc => ({
    schema: BENCH_SCHEMA,
    suite: 'demo',
    command: 'smmu-farm bench demo',
    config: { mode: 'quick', rounds: 3, presets: ['a', 'b'] },
    machine: { cpu: 'Test CPU', cores: 2, node: 'v20.1.0', date: '2026-01-02T03:04:05.678Z' },
    figures: [
      { metric: 'ns per op', unit: 'ns', params: { kind: 'a' }, median: 2, min: 1, max: 3, runs: 3 },
      { metric: 'ns per op', unit: 'ns', params: { kind: 'b' }, median: 5, min: 5, max: 5, runs: 1, exact: true, reference: { value: 4, source: 'a paper' } },
    ],
    headline: { title: 'Demo', metric: 'ns per op', x: 'kind' },
  });

  it('accepts a conforming document', () => {
    expect(validateBenchDoc(valid())).toEqual([]);
  });

  it('names the JSON path of each problem', () => {
    const cases: Array<[string, (d: Record<string, any>) => void, string]> = [
      ['no schema tag (the old result files)', (d) => delete d.schema, '$.schema'],
      ['no CPU', (d) => delete d.machine.cpu, '$.machine.cpu'],
      ['cores not an integer', (d) => (d.machine.cores = 1.5), '$.machine.cores'],
      ['not a date', (d) => (d.machine.date = 'yesterday'), '$.machine.date'],
      ['bad Node version', (d) => (d.machine.node = '20'), '$.machine.node'],
      ['unknown mode', (d) => (d.config.mode = 'slow'), '$.config.mode'],
      ['nested config object', (d) => (d.config.x = { a: 1 }), '$.config.x'],
      ['min above the median', (d) => (d.figures[0].min = 2.5), '$.figures[0]: expected min <= median <= max'],
      ['NaN median', (d) => (d.figures[0].median = Number.NaN), '$.figures[0].median'],
      ['no runs', (d) => (d.figures[0].runs = 0), '$.figures[0].runs'],
      ['exact with a spread', (d) => (d.figures[1].max = 6), '$.figures[1]: an exact figure'],
      ['duplicate figure', (d) => (d.figures[1].params = { kind: 'a' }), '$.figures[1]: duplicate figure'],
      ['unit changes within a metric', (d) => (d.figures[1].unit = 'us'), '$.figures[1].unit'],
      ['bad reference', (d) => (d.figures[1].reference = { value: 'x' }), '$.figures[1].reference'],
      ['no figures', (d) => (d.figures = []), '$.figures: expected at least one'],
      ['headline metric without figures', (d) => (d.headline.metric = 'ops'), '$.headline.metric: no figure has metric "ops"'],
      ['headline x not a param', (d) => (d.headline.x = 'size'), '$.headline: a "ns per op" figure has no param "size"'],
    ];
    for (const [what, mutate, path] of cases) {
      const d = valid() as unknown as Record<string, any>;
      mutate(d);
      const errs = validateBenchDoc(d);
      expect(errs.some((e) => e.startsWith(path)), `${what}: ${JSON.stringify(errs)}`).toBe(true);
    }
    expect(validateBenchDoc(null)).toEqual(['$: expected a JSON object']);
  });
});

describe('charts', () => {
  it('escape text, stay well-formed, and are deterministic', () => {
    const doc: BenchDoc = {
      schema: BENCH_SCHEMA,
      suite: 'x<&>"',
      command: 'c',
      config: { mode: 'tiny' },
      machine: { cpu: 'CPU "A" & <B>', cores: 1, node: 'v20.0.0', date: '2026-01-01T00:00:00Z' },
      figures: [
        { metric: 'throughput', unit: 'ops/s', params: { n: 1, w: 'a & b' }, median: 2.5e6, min: 2e6, max: 3e6, runs: 5 },
        { metric: 'throughput', unit: 'ops/s', params: { n: 2, w: 'a & b' }, median: 4.5e6, min: 4e6, max: 5e6, runs: 5 },
        { metric: 'throughput', unit: 'ops/s', params: { n: 1, w: '<c>' }, median: 1e6, min: 1e6, max: 1e6, runs: 1, reference: { value: 1.2e6, source: 'paper & co' } },
      ],
      headline: { title: 'Throughput <by> n & w', metric: 'throughput', x: 'n', series: 'w' },
    };
    const svg = renderChart(doc);
    expect(renderChart(doc)).toBe(svg);
    const els = checkSvg(svg, doc);
    const texts = els.map((e) => e.text);
    expect(texts).toContain('a & b');
    expect(texts).toContain('<c>');
    expect(texts).toContain('published');
    expect(texts).toContain('min-max over runs');
    expect(els.filter((e) => e.attrs.class === 'whisker')).toHaveLength(2);
    expect(els.filter((e) => e.attrs.class === 'reference')).toHaveLength(1);
    // The y axis is labelled in millions.
    expect(els.filter((e) => e.depth === 2 && /^\d+(\.\d+)?M$/.test(e.text)).length).toBeGreaterThanOrEqual(3);
    expect(escapeXml(`<a href="x">&'`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  });

  it('nice ticks cover the range in steps of 1, 2, 2.5 or 5 x 10^k', () => {
    expect(niceTicks(0, 24)).toMatchObject({ ticks: [0, 5, 10, 15, 20, 25], step: 5 });
    expect(niceTicks(0, 1.3e6).ticks).toEqual([0, 500000, 1000000, 1500000]);
    expect(niceTicks(0, 1.1e6).ticks).toEqual([0, 250000, 500000, 750000, 1000000, 1250000]);
    expect(niceTicks(0, 0.9).step).toBe(0.2);
  });
});

describe('smmu-farm bench: bad input', () => {
  it('an unknown suite exits 2 and lists the suites', () => {
    const r = run('bench', 'nope', '--tiny', '--out', mkdtempSync(join(tmpdir(), 'smmu-bench-')));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown suite "nope"');
    expect(r.stderr).toContain('tables, walk, atomics, cache, caches, farm, topology, invalidation, papers, all');
    expect(r.stdout).toBe('');
  });

  it('no suite, or --quick with --tiny, exits 2', () => {
    const none = run('bench');
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('give a SUITE');
    const both = run('bench', 'walk', '--quick', '--tiny', '--out', mkdtempSync(join(tmpdir(), 'smmu-bench-')));
    expect(both.status).toBe(2);
    expect(both.stderr).toContain('--quick and --tiny exclude each other');
  });

  it('--help lists every suite with what it measures', () => {
    const r = run('bench', '--help');
    expect(r.status).toBe(0);
    for (const s of [...Object.keys(SUITE_FILES), 'all']) expect(r.stdout).toMatch(new RegExp(`^  ${s} +\\S`, 'm'));
    expect(r.stdout).not.toContain('not yet implemented');
  });
});

describe('PAPERS.md without the other suites\' results', () => {
  it('marks rows 5 and 6 as not measured, naming the missing file, instead of inventing figures', () => {
    const empty = mkdtempSync(join(tmpdir(), 'smmu-papers-'));
    const { markdown, doc } = buildPapers({ mode: 'tiny', dir: empty, command: 'test' });
    expect(markdown).toMatch(/^\| 5 \| .* \| - \| not measured in this results folder \(`invalidation` suite\) \|$/m);
    expect(markdown).toMatch(/^\| 6 \| .* \| - \| not measured in this results folder \(`invalidation` suite\) \|$/m);
    expect(markdown).toContain(`${join(empty, 'invalidation.json')} is missing`);
    expect(doc.config.invalidationResults).toBe('missing');
  }, 60_000);
});

describe('results schema: extra charts', () => {
  const base = (): BenchDoc => ({
    schema: BENCH_SCHEMA,
    suite: 'x',
    command: 'x',
    config: { mode: 'tiny' },
    machine: { cpu: 'c', cores: 1, node: 'v20.0.0', date: '2026-01-01T00:00:00Z' },
    figures: [{ metric: 'm', unit: 'u', params: { a: 1, b: 'p' }, median: 1, min: 1, max: 1, runs: 1 }],
    headline: { title: 't', metric: 'm', x: 'a' },
  });
  it('accepts named charts over existing metrics and params, and says what is wrong otherwise', () => {
    expect(validateBenchDoc({ ...base(), charts: [{ name: 'by-b', title: 'T', metric: 'm', x: 'b' }] })).toEqual([]);
    expect(validateBenchDoc({ ...base(), charts: [{ name: 'Bad Name', title: 'T', metric: 'm', x: 'b' }] })).toEqual(['$.charts[0].name: expected a name of lower-case letters, digits and hyphens']);
    expect(validateBenchDoc({ ...base(), charts: [{ name: 'c', title: 'T', metric: 'nope', x: 'b' }] })).toEqual(['$.charts[0].metric: no figure has metric "nope"']);
    expect(validateBenchDoc({ ...base(), charts: [{ name: 'c', title: 'T', metric: 'm', x: 'zz' }] })).toEqual(['$.charts[0]: a "m" figure has no param "zz" (params {"a":1,"b":"p"})']);
    expect(validateBenchDoc({ ...base(), charts: [{ name: 'c', title: 'T', metric: 'm', x: 'a' }, { name: 'c', title: 'T', metric: 'm', x: 'b' }] })).toEqual(['$.charts[1].name: "c" is used twice']);
  });
});

describe('npm scripts', () => {
  it('npm run bench, npm run profile and npm start run what README says', () => {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.bench).toBe('npm run build && node dist/src/cli/main.js bench');
    expect(pkg.scripts.profile).toBe('npm run build && node dist/bench/profile.js');
    expect(pkg.scripts.start).toBe('node dist/src/cli/main.js start');
    for (const s of Object.keys(SUITE_FILES).filter((x) => x !== 'papers' && x !== 'atomics')) expect(pkg.scripts[`bench:${s}`], s).toMatch(new RegExp(`node dist/bench/${s}\\.js$`));
  });
});
