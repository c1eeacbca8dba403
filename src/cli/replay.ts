/** `smmu-farm replay [--json] [--caches PRESET] PATH...` */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { collectCaseFiles } from '../check/run-case.js';
import { Smmu } from '../smmu/smmu.js';
import { cacheFactory, cachePresetNames, DEFAULT_CACHE_PRESET } from '../replay/caches.js';
import { ScriptError, parseScript, runScript } from '../replay/script.js';
import { runFiles, type FileResult } from './file-runner.js';

export interface ReplayOptions {
  json: boolean;
  /** A cache preset name (default: none, the uncached model). */
  caches?: string;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** The --caches help text. */
export function replayCachesHelp(): string {
  return `the caching configuration of each script's model: ${cachePresetNames().join(', ')}`;
}

/**
 * Replays smmu-script/1 files (or folders of *.json, recursively, in name order). Returns the exit
 * status: 0 only when every step of every script held and every script could be run; 1 when a step
 * failed or a script was malformed or unreadable; 2 for an unknown cache preset (nothing runs).
 */
export function replayCommand(paths: string[], opts: ReplayOptions): number {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = opts.err ?? ((l: string) => process.stderr.write(l + '\n'));
  let makeCache;
  try {
    makeCache = cacheFactory(opts.caches ?? DEFAULT_CACHE_PRESET);
  } catch (e) {
    err(`error: --caches: ${(e as Error).message}`);
    return 2;
  }
  let broken = 0;
  const files: string[] = [];
  for (const p of paths) {
    if (!existsSync(p)) {
      err(`${p}: no such file or folder`);
      broken++;
      continue;
    }
    let found: string[];
    try {
      found = collectCaseFiles([p]);
    } catch (e) {
      err(`${p}: ${(e as Error).message}`);
      broken++;
      continue;
    }
    if (found.length === 0 && statSync(p).isDirectory()) {
      err(`${p}: no .json scripts in this folder`);
      broken++;
    }
    files.push(...found);
  }
  const run = (file: string): FileResult => {
    const script = parseScript(readFileSync(file, 'utf8'), file);
    const outcome = runScript(script, file, (mem, sc) => new Smmu(sc.id, mem, makeCache()));
    const failedSteps = outcome.steps.filter((st) => !st.pass);
    return {
      name: outcome.name,
      passed: outcome.steps.length - failedSteps.length,
      failed: failedSteps.length,
      json: { name: outcome.name, steps: outcome.steps.map((st) => st.json) },
      failures: failedSteps.map((st) => `FAIL ${outcome.name} (${file}) step ${st.index} ${st.op} ${st.what}: expected ${st.expected}, got ${st.actual}`),
    };
  };
  return runFiles(files, broken, { json: opts.json, out, err, noun: 'script(s)' }, run, (e) => e instanceof ScriptError);
}
