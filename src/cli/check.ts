/** `smmu-farm check [--json] PATH...` */

import { existsSync } from 'node:fs';
import { CaseError } from '../check/case-file.js';
import { collectCaseFiles, runCaseFile, type CaseOutcome } from '../check/run-case.js';

export interface CheckOptions {
  json: boolean;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** Runs the cases; returns the exit status (0 only when every query passed and every file was readable). */
export function checkCommand(paths: string[], opts: CheckOptions): number {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = opts.err ?? ((l: string) => process.stderr.write(l + '\n'));
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
    files.push(...collectCaseFiles([p]));
  }
  for (const file of files) {
    let outcome: CaseOutcome;
    try {
      outcome = runCaseFile(file);
    } catch (e) {
      broken++;
      if (e instanceof CaseError) err(`error: ${e.message}`);
      else err(`error: ${file}: ${(e as Error).message}`);
      continue;
    }
    for (const q of outcome.queries) {
      if (q.pass) passed++;
      else failed++;
    }
    if (opts.json) {
      out(JSON.stringify({ name: outcome.name, results: outcome.queries.map((q) => q.actual) }));
    } else {
      for (const q of outcome.queries) {
        if (q.pass) continue;
        out(
          `FAIL ${outcome.name} (${file}) query ${q.index}: va ${q.va} ${q.acc} ${q.el0 ? 'el0' : 'el1'}: ` +
            `expected ${JSON.stringify(q.expected)}, got ${JSON.stringify(q.actual)}`,
        );
      }
    }
  }
  if (broken > 0) err(`${broken} file(s) could not be run`);
  const summary = `${passed} passed, ${failed} failed`;
  // With --json, stdout carries only the JSON lines.
  if (opts.json) err(summary);
  else out(summary);
  return failed === 0 && broken === 0 ? 0 : 1;
}
