import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCaseFile } from '../src/check/run-case.js';

const dir = join(import.meta.dirname, 'conformance', 'cases');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('public vmsa-case/1 conformance cases (answered by an independent Armv8-A implementation)', () => {
  it('has all 150 public cases', () => {
    expect(files.length).toBe(150);
  });

  for (const f of files) {
    it(f, () => {
      const outcome = runCaseFile(join(dir, f));
      const failures = outcome.queries.filter((q) => !q.pass).map((q) => ({ index: q.index, va: q.va, acc: q.acc, el0: q.el0, expected: q.expected, actual: q.actual }));
      expect(failures).toEqual([]);
      expect(outcome.queries.length).toBeGreaterThan(0);
    });
  }
});
