/** Number and table formatting shared by the commands' readable reports (run, start, stress). */

/** A count with thousands separators: 1,234,567. */
export const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** A fraction as a percentage with one decimal: 0.521 -> "52.1%". */
export const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** A rate with an SI suffix: "3.85 M", "12.4 k", "950". */
export function rate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

/** A size in KiB, MiB or GiB. */
export function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

/** A Markdown table, first column left-aligned, the others right-aligned. */
export function table(head: string[], rows: string[][]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  return [line(head), `|${w.map((x, i) => (i === 0 ? '-'.repeat(x + 2) : '-'.repeat(x + 1) + ':')).join('|')}|`, ...rows.map(line)];
}

/** A 30-character progress bar with its percentage: "[#########.....]  31%". */
export function progressBar(fraction: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  return `[${'#'.repeat(Math.round(f * 30)).padEnd(30, '.')}] ${(100 * f).toFixed(0).padStart(3)}%`;
}
