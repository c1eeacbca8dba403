/**
 * The results schema, `smmu-farm-bench/1`: what every `results/SUITE.json`
 * holds, and a hand-written validator for it (no dependency).
 *
 * A document is a JSON object with at least:
 *
 *   schema    "smmu-farm-bench/1"
 *   suite     the suite's name ("walk", "atomics", "cache", "farm", "papers", ...)
 *   command   the command line that produced it
 *   config    the configuration: { mode: "full" | "quick" | "tiny", ...scalars or arrays of scalars }
 *   machine   { cpu: string, cores: integer >= 1, node: "vN...", date: ISO 8601, ...more }
 *   figures   a non-empty array of Figure (below); (metric, params) is unique
 *   headline  { title, metric, x, series? }: the chart drawn from the figures with that
 *             metric, one bar group per value of params[x], one bar per value of params[series]
 *   charts    optional: more charts of the same form, each with a `name` ([a-z0-9-]+),
 *             drawn beside the headline's as SUITE-NAME.svg
 *
 * A Figure is one measured number with its spread over repeated runs:
 *
 *   metric    what is measured ("ns per walk"), the same string for every figure of a kind
 *   unit      its unit ("ns", "reads", "%", "translations/s")
 *   params    what distinguishes it from the other figures of its metric ({ regime: "nested" })
 *   median, min, max   finite numbers, min <= median <= max
 *   runs      integer >= 1: how many runs the three numbers summarise
 *   exact     optional; true for a deterministic figure (a count, or a ratio of counts,
 *             that every run with the same seed reproduces exactly): min = median = max
 *   reference optional { value, source }: the published figure it is compared with
 *
 * Any other fields (each benchmark's detailed rows, kept for its Markdown) are allowed.
 */

export const BENCH_SCHEMA = 'smmu-farm-bench/1';

export type Mode = 'full' | 'quick' | 'tiny';
export const MODES: readonly Mode[] = ['full', 'quick', 'tiny'];

export type Scalar = string | number | boolean;

export interface BenchMachine {
  cpu: string;
  cores: number;
  node: string;
  date: string;
}

export interface Figure {
  metric: string;
  unit: string;
  params: Record<string, string | number>;
  median: number;
  min: number;
  max: number;
  runs: number;
  exact?: boolean;
  reference?: { value: number; source: string };
}

export interface Headline {
  title: string;
  metric: string;
  x: string;
  series?: string;
}

export interface BenchDoc {
  schema: typeof BENCH_SCHEMA;
  suite: string;
  command: string;
  config: { mode: Mode; [key: string]: Scalar | Scalar[] };
  machine: BenchMachine;
  figures: Figure[];
  headline: Headline;
  charts?: NamedChart[];
  [more: string]: unknown;
}

/** A chart beyond the headline (BenchDoc.charts), written as SUITE-NAME.svg. */
export interface NamedChart extends Headline {
  name: string;
}

/** A figure from repeated measurements (median, min, max over `values`). */
export function measured(metric: string, unit: string, params: Figure['params'], values: number[]): Figure {
  if (values.length === 0) throw new RangeError(`figure "${metric}" has no values`);
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { metric, unit, params, median, min: v[0]!, max: v[v.length - 1]!, runs: v.length };
}

/** A figure from an existing spread ({ median, min, max, runs }). */
export function fromSpread(metric: string, unit: string, params: Figure['params'], s: { median: number; min: number; max: number; runs: number }): Figure {
  return { metric, unit, params, median: s.median, min: s.min, max: s.max, runs: s.runs };
}

/** A deterministic figure: a count (or a ratio of counts) that every run reproduces exactly. */
export function exact(metric: string, unit: string, params: Figure['params'], value: number): Figure {
  return { metric, unit, params, median: value, min: value, max: value, runs: 1, exact: true };
}

/** The figures of `metric`, in document order. */
export function figuresOf(doc: Pick<BenchDoc, 'figures'>, metric: string): Figure[] {
  return doc.figures.filter((f) => f.metric === metric);
}

/** The one figure of `metric` whose params include all of `match`; throws when there is not exactly one. */
export function figure(doc: Pick<BenchDoc, 'figures'>, metric: string, match: Figure['params'] = {}): Figure {
  const hits = figuresOf(doc, metric).filter((f) => Object.entries(match).every(([k, v]) => f.params[k] === v));
  if (hits.length !== 1) throw new Error(`expected one "${metric}" figure with ${JSON.stringify(match)}, found ${hits.length}`);
  return hits[0]!;
}

// ---------------------------------------------------------------------------
// The validator
// ---------------------------------------------------------------------------

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isScalar = (v: unknown): v is Scalar => typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim().length > 0;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Checks a parsed JSON value against `smmu-farm-bench/1`. Returns the problems, each
 * "JSON.path: what is wrong"; an empty array means the document conforms.
 */
export function validateBenchDoc(doc: unknown): string[] {
  const errs: string[] = [];
  const err = (path: string, msg: string): void => {
    errs.push(`${path}: ${msg}`);
  };
  if (!isObject(doc)) return ['$: expected a JSON object'];

  if (doc.schema !== BENCH_SCHEMA) err('$.schema', `expected "${BENCH_SCHEMA}", got ${JSON.stringify(doc.schema)}`);
  if (!nonEmpty(doc.suite)) err('$.suite', 'expected a non-empty string');
  if (!nonEmpty(doc.command)) err('$.command', 'expected a non-empty string');

  // config
  if (!isObject(doc.config)) err('$.config', 'expected an object');
  else {
    if (!MODES.includes(doc.config.mode as Mode)) err('$.config.mode', `expected one of ${MODES.join(', ')}, got ${JSON.stringify(doc.config.mode)}`);
    for (const [k, v] of Object.entries(doc.config)) {
      const ok = isScalar(v) || (Array.isArray(v) && v.every(isScalar));
      if (!ok) err(`$.config.${k}`, 'expected a string, finite number, boolean, or an array of them');
    }
  }

  // machine
  if (!isObject(doc.machine)) err('$.machine', 'expected an object');
  else {
    const m = doc.machine;
    if (!nonEmpty(m.cpu)) err('$.machine.cpu', 'expected the CPU model (a non-empty string)');
    if (!(typeof m.cores === 'number' && Number.isInteger(m.cores) && m.cores >= 1)) err('$.machine.cores', `expected an integer >= 1, got ${JSON.stringify(m.cores)}`);
    if (!(typeof m.node === 'string' && /^v\d+\.\d+\.\d+/.test(m.node))) err('$.machine.node', `expected a Node version such as "v20.11.1", got ${JSON.stringify(m.node)}`);
    if (!(typeof m.date === 'string' && ISO_DATE.test(m.date) && !Number.isNaN(Date.parse(m.date)))) {
      err('$.machine.date', `expected an ISO 8601 date-time, got ${JSON.stringify(m.date)}`);
    }
  }

  // figures
  const metrics = new Map<string, Figure[]>();
  if (!Array.isArray(doc.figures)) err('$.figures', 'expected an array');
  else {
    if (doc.figures.length === 0) err('$.figures', 'expected at least one figure');
    const seen = new Set<string>();
    doc.figures.forEach((f: unknown, i: number) => {
      const p = `$.figures[${i}]`;
      if (!isObject(f)) return err(p, 'expected an object');
      const before = errs.length;
      if (!nonEmpty(f.metric)) err(`${p}.metric`, 'expected a non-empty string');
      if (!nonEmpty(f.unit)) err(`${p}.unit`, 'expected a non-empty string');
      if (!isObject(f.params)) err(`${p}.params`, 'expected an object of strings and numbers');
      else {
        for (const [k, v] of Object.entries(f.params)) {
          if (!(typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)))) err(`${p}.params.${k}`, 'expected a string or a finite number');
        }
      }
      for (const k of ['median', 'min', 'max'] as const) {
        if (!(typeof f[k] === 'number' && Number.isFinite(f[k]))) err(`${p}.${k}`, `expected a finite number, got ${JSON.stringify(f[k])}`);
      }
      if (!(typeof f.runs === 'number' && Number.isInteger(f.runs) && f.runs >= 1)) err(`${p}.runs`, `expected an integer >= 1, got ${JSON.stringify(f.runs)}`);
      if (f.exact !== undefined && typeof f.exact !== 'boolean') err(`${p}.exact`, 'expected a boolean');
      if (f.reference !== undefined) {
        const r = f.reference;
        if (!isObject(r) || !(typeof r.value === 'number' && Number.isFinite(r.value)) || !nonEmpty(r.source)) {
          err(`${p}.reference`, 'expected { value: finite number, source: non-empty string }');
        }
      }
      if (errs.length !== before) return;
      const fig = f as unknown as Figure;
      const tol = 1e-9 * Math.max(1, Math.abs(fig.median));
      if (fig.min > fig.median + tol || fig.median > fig.max + tol) err(p, `expected min <= median <= max, got ${fig.min} / ${fig.median} / ${fig.max}`);
      if (fig.exact === true && (fig.min !== fig.median || fig.max !== fig.median)) err(p, 'an exact figure must have min = median = max');
      const key = `${fig.metric}\u0000${JSON.stringify(Object.entries(fig.params).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))}`;
      if (seen.has(key)) err(p, `duplicate figure: "${fig.metric}" with params ${JSON.stringify(fig.params)} appears earlier`);
      seen.add(key);
      const list = metrics.get(fig.metric) ?? [];
      list.push(fig);
      metrics.set(fig.metric, list);
      const unit0 = list[0]!.unit;
      if (fig.unit !== unit0) err(`${p}.unit`, `"${fig.metric}" is in "${unit0}" in an earlier figure, here "${fig.unit}"`);
    });
  }

  // headline, and the other charts
  const checkChart = (path: string, h: unknown): void => {
    if (!isObject(h)) {
      err(path, 'expected an object { title, metric, x, series? }');
      return;
    }
    if (!nonEmpty(h.title)) err(`${path}.title`, 'expected a non-empty string');
    if (!nonEmpty(h.x)) err(`${path}.x`, 'expected the name of a param');
    if (h.series !== undefined && !nonEmpty(h.series)) err(`${path}.series`, 'expected the name of a param');
    if (!nonEmpty(h.metric)) err(`${path}.metric`, 'expected a metric name');
    else if (Array.isArray(doc.figures)) {
      const figs = metrics.get(h.metric);
      if (figs === undefined) err(`${path}.metric`, `no figure has metric "${h.metric}"`);
      else {
        for (const key of [h.x, h.series]) {
          if (typeof key !== 'string') continue;
          const missing = figs.findIndex((f) => !(key in f.params));
          if (missing >= 0) err(path, `a "${h.metric}" figure has no param "${key}" (params ${JSON.stringify(figs[missing]!.params)})`);
        }
      }
    }
  };
  checkChart('$.headline', doc.headline);
  if (doc.charts !== undefined) {
    if (!Array.isArray(doc.charts)) err('$.charts', 'expected an array of charts');
    else {
      const names = new Set<string>();
      doc.charts.forEach((c: unknown, i: number) => {
        checkChart(`$.charts[${i}]`, c);
        const name = isObject(c) ? c.name : undefined;
        if (typeof name !== 'string' || !/^[a-z0-9-]+$/.test(name)) err(`$.charts[${i}].name`, 'expected a name of lower-case letters, digits and hyphens');
        else if (names.has(name)) err(`$.charts[${i}].name`, `"${name}" is used twice`);
        else names.add(name);
      });
    }
  }
  return errs;
}

/** Throws an Error listing every problem when `doc` does not conform; returns it typed otherwise. */
export function assertBenchDoc(doc: unknown, what = 'document'): BenchDoc {
  const errs = validateBenchDoc(doc);
  if (errs.length > 0) throw new Error(`${what} does not conform to ${BENCH_SCHEMA}:\n  ${errs.join('\n  ')}`);
  return doc as BenchDoc;
}
