/**
 * `npm run profile` (issue F item 4): every profiler runs unattended on a
 * suite's tiny configuration, writes its report where it says, and the
 * hot-function summary of the walk suite names the walker.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hotFunctions } from '../bench/profile.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PROFILE = join(ROOT, 'dist', 'bench', 'profile.js');

describe('npm run profile', () => {
  it('writes clinic flame, clinic doctor and per-thread CPU profiles of the walk suite, unattended', () => {
    const dest = mkdtempSync(join(tmpdir(), 'smmu-profile-'));
    const r = spawnSync(process.execPath, [PROFILE, 'walk', '--tiny', '--tool', 'all', '--dest', dest], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, NO_INSIGHT: undefined } });
    expect(r.status, r.stderr).toBe(0);
    const dir = join(dest, 'walk');
    const files = readdirSync(dir);
    expect(files.filter((f) => f.endsWith('.clinic-flame.html'))).toHaveLength(1);
    expect(files.filter((f) => f.endsWith('.clinic-doctor.html'))).toHaveLength(1);
    for (const f of files.filter((x) => x.endsWith('.html'))) expect(r.stderr).toContain(join(dir, f));
    expect(readdirSync(join(dir, 'cpuprofile')).some((f) => f.endsWith('.cpuprofile'))).toBe(true);
    // The hot path of a nested walk: the walker's stage functions lead the summary.
    const hot = readFileSync(join(dir, 'hot-functions.txt'), 'utf8');
    const top = hot.split('\n').filter((l) => /^\s+\d+\.\d%/.test(l)).slice(0, 4).join('\n');
    expect(top).toMatch(/walkStage2/);
    expect(existsSync(join(dir, 'results', 'walk.json'))).toBe(false); // the child variant prints, it writes nothing
  }, 120_000);

  it('rejects an unknown suite and a bad --tool with status 2', () => {
    const a = spawnSync(process.execPath, [PROFILE, 'nonsense'], { encoding: 'utf8' });
    expect(a.status).toBe(2);
    expect(a.stderr).toMatch(/no benchmark program for suite "nonsense"/);
    const b = spawnSync(process.execPath, [PROFILE, 'walk', '--tool', 'gprof'], { encoding: 'utf8' });
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(/--tool takes flame, doctor, cpu or all/);
  });

  it('hotFunctions sums self time per function and leaves idle time out', () => {
    const prof = {
      startTime: 0,
      endTime: 10_000,
      nodes: [
        { id: 1, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 }, hitCount: 5 },
        { id: 2, callFrame: { functionName: 'walkStage2', url: 'file:///x/walk.js', lineNumber: 48 }, hitCount: 3 },
        { id: 3, callFrame: { functionName: 'walkStage2', url: 'file:///x/walk.js', lineNumber: 48 }, hitCount: 1 },
        { id: 4, callFrame: { functionName: 'lookup', url: 'file:///x/tlb.js', lineNumber: 9 }, hitCount: 1 },
      ],
    };
    const { totalMs, functions } = hotFunctions(prof, '/x/');
    expect(totalMs).toBe(10);
    expect(functions.map((f) => [f.name, f.where, f.selfMs])).toEqual([
      ['walkStage2', 'walk.js:49', 4],
      ['lookup', 'tlb.js:10', 1],
    ]);
  });
});
