/** `smmu-farm replay [--json] [--caches PRESET] PATH...` */

import { existsSync, readFileSync, statSync } from 'node:fs';
import { collectCaseFiles } from '../check/run-case.js';
import { Smmu } from '../smmu/smmu.js';
import { cacheFactory, cachePresetNames, DEFAULT_CACHE_PRESET } from '../replay/caches.js';
import { ScriptError, parseScript, runScript, type ScriptOutcome } from '../replay/script.js';

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
  let passed = 0;
  let failed = 0;
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
  for (const file of files) {
    let outcome: ScriptOutcome;
    try {
      const script = parseScript(readFileSync(file, 'utf8'), file);
      outcome = runScript(script, file, (mem, s) => new Smmu(s.id, mem, makeCache()));
    } catch (e) {
      broken++;
      if (e instanceof ScriptError) err(`error: ${e.message}`);
      else err(`error: ${file}: ${(e as Error).message}`);
      continue;
    }
    for (const s of outcome.steps) {
      if (s.pass) passed++;
      else failed++;
    }
    if (opts.json) {
      out(JSON.stringify({ name: outcome.name, steps: outcome.steps.map((s) => s.json) }));
    } else {
      for (const s of outcome.steps) {
        if (s.pass) continue;
        out(`FAIL ${outcome.name} (${file}) step ${s.index} ${s.op} ${s.what}: expected ${s.expected}, got ${s.actual}`);
      }
    }
  }
  if (broken > 0) err(`${broken} script(s) could not be run`);
  const summary = `${passed} passed, ${failed} failed`;
  // With --json, stdout carries only the JSON lines.
  if (opts.json) err(summary);
  else out(summary);
  return failed === 0 && broken === 0 ? 0 : 1;
}
