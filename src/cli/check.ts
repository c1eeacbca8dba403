/** `smmu-farm check [--json] PATH...` */

import { existsSync } from 'node:fs';
import { CaseError } from '../check/case-file.js';
import { collectCaseFiles, runCaseFile } from '../check/run-case.js';
import { runFiles, type FileResult } from './file-runner.js';

export interface CheckOptions {
  json: boolean;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** Runs the cases; returns the exit status (0 only when every query passed and every file was readable). */
export function checkCommand(paths: string[], opts: CheckOptions): number {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = opts.err ?? ((l: string) => process.stderr.write(l + '\n'));
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
  return runFiles(files, broken, { json: opts.json, out, err, noun: 'file(s)' }, caseResult, (e) => e instanceof CaseError);
}

/** One case file's outcome, for the report. */
function caseResult(file: string): FileResult {
  const outcome = runCaseFile(file);
  const failedQueries = outcome.queries.filter((q) => !q.pass);
  return {
    name: outcome.name,
    passed: outcome.queries.length - failedQueries.length,
    failed: failedQueries.length,
    json: { name: outcome.name, results: outcome.queries.map((q) => q.actual) },
    failures: failedQueries.map(
      (q) =>
        `FAIL ${outcome.name} (${file}) query ${q.index}: va ${q.va} ${q.acc} ${q.el0 ? 'el0' : 'el1'}: ` +
        `expected ${JSON.stringify(q.expected)}, got ${JSON.stringify(q.actual)}`,
    ),
  };
}
