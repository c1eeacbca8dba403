import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScriptFile } from '../src/replay/script.js';

const dir = join(import.meta.dirname, 'conformance', 'scripts');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('public smmu-script/1 register-level scripts', () => {
  it('has all 79 public scripts', () => {
    expect(files.length).toBe(79);
  });
  for (const f of files) {
    it(f, () => {
      const o = runScriptFile(join(dir, f));
      expect(o.name).toBe(f.replace(/\.json$/, ''));
      const failures = o.steps.filter((s) => !s.pass).map((s) => `step ${s.index} ${s.op}: expected ${s.expected}, got ${s.actual}`);
      expect(failures).toEqual([]);
      expect(o.steps.length).toBeGreaterThan(0);
    });
  }
});
