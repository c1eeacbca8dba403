import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const CASES = fileURLToPath(new URL('./conformance/cases', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

describe('smmu-farm check', () => {
  it('passes every public case and ends with the query count', () => {
    const total = readdirSync(CASES)
      .map((f) => (JSON.parse(readFileSync(join(CASES, f), 'utf8')) as { queries: unknown[] }).queries.length)
      .reduce((a, b) => a + b, 0);
    const r = run('check', CASES);
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toEqual([`${total} passed, 0 failed`]);
  });

  it('--json prints one object per case in the expect schema, in query order', () => {
    const file = join(CASES, 'pub-s12-4k-4k-0100.json');
    const r = run('check', '--json', file);
    expect(r.status).toBe(0);
    const out = lines(r.stdout).map((l) => JSON.parse(l) as { name: string; results: unknown[] });
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { name: string; queries: Array<{ expect: unknown }> };
    expect(out).toHaveLength(1);
    expect(out[0]!.name).toBe(doc.name);
    expect(out[0]!.results).toEqual(doc.queries.map((q) => q.expect));
  });

  it('reports a failing query with expected and actual, and exits 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-check-'));
    const doc = JSON.parse(readFileSync(join(CASES, 'pub-s1-4k-0089.json'), 'utf8')) as { queries: Array<{ expect: unknown }> };
    const i = doc.queries.findIndex((q) => typeof q.expect === 'object' && q.expect !== null && 'pa' in q.expect);
    doc.queries[i]!.expect = { pa: '0x1000' };
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify(doc));
    const r = run('check', dir);
    expect(r.status).toBe(1);
    const out = lines(r.stdout);
    expect(out).toHaveLength(2);
    expect(out[0]).toContain(`query ${i}:`);
    expect(out[0]).toContain('expected {"pa":"0x1000"}');
    expect(out[1]).toBe(`${doc.queries.length - 1} passed, 1 failed`);
  });

  it('names the file and JSON path of a malformed field, and still runs the other files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-check-'));
    const good = readFileSync(join(CASES, 'pub-s2-4k-0008.json'), 'utf8');
    const goodQueries = (JSON.parse(good) as { queries: unknown[] }).queries.length;
    writeFileSync(join(dir, 'a-good.json'), good);
    const bad = JSON.parse(good) as { queries: Array<{ acc: string }>; stage2: { ttb: string } };
    bad.queries[3]!.acc = 'x';
    writeFileSync(join(dir, 'b-bad-acc.json'), JSON.stringify(bad));
    const bad2 = JSON.parse(good) as { stage2: { ttb: string } };
    bad2.stage2.ttb = '0xZZ';
    writeFileSync(join(dir, 'c-bad-hex.json'), JSON.stringify(bad2));
    writeFileSync(join(dir, 'd-not-json.json'), '{"format": "vmsa-case/1",');
    const r = run('check', dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(dir, 'b-bad-acc.json')}: $.queries[3].acc: expected "r" or "w", got "x"`);
    expect(r.stderr).toContain(`${join(dir, 'c-bad-hex.json')}: $.stage2.ttb: expected a 64-bit number`);
    expect(r.stderr).toContain(`${join(dir, 'd-not-json.json')}: $: not valid JSON`);
    expect(lines(r.stdout)).toEqual([`${goodQueries} passed, 0 failed`]);
  });

  it('reports a path that does not exist', () => {
    const r = run('check', '/nonexistent/cases');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('/nonexistent/cases: no such file or folder');
  });
});

describe('smmu-farm --help', () => {
  for (const args of [['--help'], ['check', '--help'], ['demo', '--help']]) {
    it(args.join(' '), () => {
      const r = run(...args);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('Usage: smmu-farm');
    });
  }

  it('demo runs on a small fraction and prints 24 reads per nested walk', () => {
    const r = run('demo', '--seconds', '0.05', '--fraction', '0.01');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/nested \(VA->IPA->PA\)\s*\|\s*[\d,]+\s*\|\s*[\d.]+\s*\|\s*24\.00 \|/);
  });
});
