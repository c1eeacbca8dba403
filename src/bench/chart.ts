/**
 * SVG charts of a results document's headline figures, written by hand (no
 * dependency): a grouped bar chart with one group per value of
 * `headline.x` and one bar per value of `headline.series`, each bar the
 * median with a min-max whisker over the runs, and the published value (a
 * figure's `reference`) as a dashed mark across its bar.
 *
 * The output is a pure function of the document: same JSON, same bytes.
 */

import { figuresOf, type BenchDoc, type Figure, type Headline } from './schema.js';

/** Okabe-Ito: distinguishable with the common colour-vision deficiencies. Black is kept for references. */
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442'];

const W = 960;
const PLOT_H = 320;
const LEFT = 96;
const RIGHT = 24;
const FONT = 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif';

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Deterministic coordinate text. */
const n1 = (v: number): string => {
  const s = (Math.round(v * 10) / 10).toFixed(1);
  return s.endsWith('.0') ? s.slice(0, -2) : s === '-0' ? '0' : s;
};

/** Approximate rendered width of `text` at `size` px (deterministic: no font metrics). */
const textWidth = (text: string, size: number): number => text.length * size * 0.58;

/** A value with three significant digits and an SI suffix for large magnitudes: 0.812, 24.0, 195, 7.22M. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return trim((v / 1e9).toPrecision(3)) + 'G';
  if (a >= 1e6) return trim((v / 1e6).toPrecision(3)) + 'M';
  if (a >= 1e4) return trim((v / 1e3).toPrecision(3)) + 'k';
  if (a === 0) return '0';
  if (a >= 1000) return String(Math.round(v));
  return trim(v.toPrecision(3));
}

/** Splits `text` into lines of at most `width` px at `size` px, at spaces. */
function wrap(text: string, size: number, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    const next = line === '' ? word : `${line} ${word}`;
    if (line !== '' && textWidth(next, size) > width) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line !== '') lines.push(line);
  return lines.length > 0 ? lines : [''];
}

function trim(s: string): string {
  return s.includes('.') && !s.includes('e') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** Tick label: enough decimals for the step, SI suffix when every tick is large. */
function formatTick(v: number, step: number, top: number): string {
  const scale = top >= 1e9 ? 1e9 : top >= 1e6 ? 1e6 : top >= 1e4 ? 1e3 : 1;
  const suffix = scale === 1e9 ? 'G' : scale === 1e6 ? 'M' : scale === 1e3 ? 'k' : '';
  const s = step / scale;
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(s) + 1e-9)));
  return (v / scale).toFixed(decimals) + (v === 0 ? '' : suffix);
}

/** "Nice" ticks covering [lo, hi]: steps of 1, 2, 2.5 or 5 times a power of ten, about five of them. */
export function niceTicks(lo: number, hi: number, target = 5): { ticks: number[]; step: number; lo: number; hi: number } {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / target;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const first = Math.floor(lo / step + 1e-9) * step;
  const last = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; first + i * step <= last + step * 1e-9; i++) ticks.push(Number((first + i * step).toPrecision(12)));
  return { ticks, step, lo: first, hi: last };
}

export interface ChartOptions {
  /** Overrides the document's headline title. */
  title?: string;
  /** Draws this chart (one of doc.charts) instead of the headline. */
  chart?: Headline;
}

/** The SVG text of `doc`'s headline chart. */
export function renderChart(doc: BenchDoc, opts: ChartOptions = {}): string {
  const h = opts.chart ?? doc.headline;
  const figs = figuresOf(doc, h.metric);
  if (figs.length === 0) throw new Error(`chart: no figure has the headline metric "${h.metric}"`);
  const unit = figs[0]!.unit;
  const key = (v: string | number | undefined): string => (v === undefined ? '' : String(v));
  const categories: string[] = [];
  const series: string[] = [];
  const cell = new Map<string, Figure>();
  for (const f of figs) {
    const c = key(f.params[h.x]);
    const s = h.series === undefined ? h.metric : key(f.params[h.series]);
    if (!categories.includes(c)) categories.push(c);
    if (!series.includes(s)) series.push(s);
    cell.set(`${c}\u0000${s}`, f);
  }
  const refs = figs.filter((f) => f.reference !== undefined);
  const spread = figs.some((f) => f.runs > 1 && f.max > f.min);
  const allExact = figs.every((f) => f.exact === true);

  // Vertical scale.
  let lo = 0;
  let hi = 0;
  for (const f of figs) {
    lo = Math.min(lo, f.min);
    hi = Math.max(hi, f.max, f.reference?.value ?? -Infinity);
  }
  const t = niceTicks(lo, hi * 1.08 + (hi === lo ? 1 : 0));

  // Legend rows (wrapped to the width).
  const title = opts.title ?? h.title;
  const legendItems: Array<{ kind: 'bar' | 'whisker' | 'ref'; label: string; color: string }> = series.map((s, i) => ({
    kind: 'bar' as const,
    label: h.series === undefined ? `${h.metric} (median)` : s,
    color: PALETTE[i % PALETTE.length]!,
  }));
  if (spread) legendItems.push({ kind: 'whisker', label: 'min-max over runs', color: '#333333' });
  if (refs.length > 0) legendItems.push({ kind: 'ref', label: 'published', color: '#000000' });
  const legendRows: Array<Array<{ item: (typeof legendItems)[number]; x: number }>> = [[]];
  let lx = LEFT;
  for (const item of legendItems) {
    const w = 22 + textWidth(item.label, 12) + 18;
    if (lx + w > W - RIGHT && legendRows[legendRows.length - 1]!.length > 0) {
      legendRows.push([]);
      lx = LEFT;
    }
    legendRows[legendRows.length - 1]!.push({ item, x: lx });
    lx += w;
  }
  const titleLines = wrap(title, 18, W - 2 * 20);
  const LEGEND_Y = 22 + titleLines.length * 22;
  const TOP = LEGEND_Y + legendRows.length * 20 + 16;

  // Horizontal layout and category labels.
  const plotW = W - LEFT - RIGHT;
  const groupW = plotW / categories.length;
  const innerW = groupW * 0.8;
  const barW = innerW / series.length;
  const longest = Math.max(...categories.map((c) => textWidth(c, 12)));
  const rotate = longest > groupW - 6;
  const labelDepth = rotate ? Math.min(180, longest * Math.SQRT1_2 + 12) : 18;
  const xTitleY = TOP + PLOT_H + 14 + labelDepth + 14;
  const footY = xTitleY + 26;
  const H = Math.ceil(footY + 12);

  const y = (v: number): number => TOP + PLOT_H - ((v - t.lo) / (t.hi - t.lo)) * PLOT_H;
  const out: string[] = [];
  const desc = `${h.metric} (${unit}) by ${h.x}${h.series !== undefined ? ` and ${h.series}` : ''}; suite ${doc.suite}, ${doc.config.mode} run on ${doc.machine.cpu}, ${doc.machine.cores} cores, Node ${doc.machine.node}, ${doc.machine.date}.`;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="chart-title chart-desc" font-family="${escapeXml(FONT)}">`,
    `<title id="chart-title">${escapeXml(title)}</title>`,
    `<desc id="chart-desc">${escapeXml(desc)}</desc>`,
    `<rect class="background" x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
  );
  titleLines.forEach((line, i) => {
    out.push(`<text class="title" x="20" y="${28 + i * 22}" font-size="18" font-weight="600" fill="#111111">${escapeXml(line)}</text>`);
  });

  // Legend.
  out.push('<g class="legend" font-size="12" fill="#222222">');
  legendRows.forEach((row, r) => {
    const ly = LEGEND_Y + r * 20;
    for (const { item, x } of row) {
      if (item.kind === 'bar') out.push(`<rect x="${n1(x)}" y="${n1(ly + 2)}" width="14" height="12" fill="${item.color}"/>`);
      else if (item.kind === 'whisker') {
        out.push(`<path d="M${n1(x + 7)} ${n1(ly + 1)}V${n1(ly + 15)}M${n1(x + 3)} ${n1(ly + 1)}H${n1(x + 11)}M${n1(x + 3)} ${n1(ly + 15)}H${n1(x + 11)}" stroke="${item.color}" stroke-width="1.5" fill="none"/>`);
      } else out.push(`<path d="M${n1(x)} ${n1(ly + 8)}H${n1(x + 16)}" stroke="${item.color}" stroke-width="2.5" stroke-dasharray="4 2"/>`);
      out.push(`<text x="${n1(x + 22)}" y="${n1(ly + 12.5)}">${escapeXml(item.label)}</text>`);
    }
  });
  out.push('</g>');

  // Y axis: grid lines, ticks, labels, title.
  out.push('<g class="axis y" font-size="12" fill="#333333">');
  for (const v of t.ticks) {
    const yy = y(v);
    out.push(`<path d="M${LEFT} ${n1(yy)}H${W - RIGHT}" stroke="${v === 0 ? '#666666' : '#e3e3e3'}" stroke-width="1"/>`);
    out.push(`<text x="${LEFT - 8}" y="${n1(yy + 4)}" text-anchor="end">${escapeXml(formatTick(v, t.step, Math.max(Math.abs(t.lo), Math.abs(t.hi))))}</text>`);
  }
  out.push(`<path d="M${LEFT} ${TOP}V${TOP + PLOT_H}" stroke="#666666" stroke-width="1"/>`);
  const yTitle = `${h.metric} (${unit})`;
  out.push(`<text class="axis-title" x="0" y="0" transform="translate(20 ${n1(TOP + PLOT_H / 2)}) rotate(-90)" text-anchor="middle" font-size="13" fill="#111111">${escapeXml(yTitle)}</text>`);
  out.push('</g>');

  // Bars, whiskers, references, value labels.
  out.push('<g class="bars">');
  categories.forEach((c, ci) => {
    const gx = LEFT + ci * groupW + (groupW - innerW) / 2;
    series.forEach((s, si) => {
      const f = cell.get(`${c}\u0000${s}`);
      if (f === undefined) return;
      const x = gx + si * barW;
      const bw = Math.max(1, barW - Math.min(4, barW * 0.15));
      const top = y(Math.max(0, f.median));
      const base = y(Math.min(0, f.median));
      const label = `${h.x} ${c}${h.series !== undefined ? `, ${h.series} ${s}` : ''}: ${formatValue(f.median)} ${unit}` +
        (f.exact === true ? ' (exact)' : f.runs > 1 ? ` (median of ${f.runs}; min ${formatValue(f.min)}, max ${formatValue(f.max)})` : '') +
        (f.reference !== undefined ? `; published ${formatValue(f.reference.value)} (${f.reference.source})` : '');
      out.push(
        `<rect class="bar" x="${n1(x)}" y="${n1(top)}" width="${n1(bw)}" height="${n1(Math.max(0, base - top))}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(label)}</title></rect>`,
      );
      const cx = x + bw / 2;
      let labelY = top;
      if (f.runs > 1 && f.max > f.min) {
        const cap = Math.max(2, Math.min(8, bw * 0.3));
        out.push(
          `<path class="whisker" d="M${n1(cx)} ${n1(y(f.min))}V${n1(y(f.max))}M${n1(cx - cap)} ${n1(y(f.min))}H${n1(cx + cap)}M${n1(cx - cap)} ${n1(y(f.max))}H${n1(cx + cap)}" stroke="#333333" stroke-width="1.2" fill="none"/>`,
        );
        labelY = Math.min(labelY, y(f.max));
      }
      if (f.reference !== undefined) {
        const ry = y(f.reference.value);
        out.push(`<path class="reference" d="M${n1(x - 2)} ${n1(ry)}H${n1(x + bw + 2)}" stroke="#000000" stroke-width="2.5" stroke-dasharray="4 2"><title>${escapeXml(`published: ${formatValue(f.reference.value)} ${unit} (${f.reference.source})`)}</title></path>`);
        labelY = Math.min(labelY, ry - 2);
      }
      const text = formatValue(f.median);
      if (textWidth(text, 10) <= bw + 8) {
        out.push(`<text class="value" x="${n1(cx)}" y="${n1(labelY - 4)}" font-size="10" text-anchor="middle" fill="#222222">${escapeXml(text)}</text>`);
      } else if (bw >= 9 && labelY - 4 - textWidth(text, 10) >= TOP - 8) {
        // Too wide for the bar: upright along it.
        out.push(`<text class="value" x="0" y="0" transform="translate(${n1(cx + 3.5)} ${n1(labelY - 4)}) rotate(-90)" font-size="10" fill="#222222">${escapeXml(text)}</text>`);
      }
    });
  });
  out.push('</g>');

  // X axis: category labels and title.
  out.push('<g class="axis x" font-size="12" fill="#333333">');
  categories.forEach((c, ci) => {
    const cx = LEFT + (ci + 0.5) * groupW;
    const ly = TOP + PLOT_H + 18;
    if (rotate) out.push(`<text x="0" y="0" transform="translate(${n1(cx + 4)} ${n1(ly - 4)}) rotate(-40)" text-anchor="end">${escapeXml(c)}</text>`);
    else out.push(`<text x="${n1(cx)}" y="${n1(ly)}" text-anchor="middle">${escapeXml(c)}</text>`);
  });
  out.push(`<text class="axis-title" x="${n1(LEFT + plotW / 2)}" y="${n1(xTitleY)}" text-anchor="middle" font-size="13" fill="#111111">${escapeXml(h.x)}</text>`);
  out.push('</g>');

  // Footer: what the bars are, and where the numbers come from.
  const runs = Math.max(...figs.map((f) => f.runs));
  const what = allExact ? 'exact counts (every observation equal)' : spread ? `bars: median of up to ${runs} runs; whiskers: min-max` : 'bars: measured value';
  const foot = `${what}. ${doc.suite} (${doc.config.mode}), ${doc.machine.cpu}, ${doc.machine.cores} cores, Node ${doc.machine.node}, ${doc.machine.date.slice(0, 10)}.`;
  out.push(`<text class="footer" x="${LEFT}" y="${n1(footY)}" font-size="11" fill="#555555">${escapeXml(foot)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
