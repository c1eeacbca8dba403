/**
 * The run-and-report loop that `check` (translation cases) and `replay`
 * (register scripts) share: run each file, count what passed and failed, print
 * one JSON line per file (--json) or one line per failure, then the summary.
 * A file that cannot be run is reported and counted, and the others still run.
 */

/** One file's outcome, as the commands report it. */
export interface FileResult {
  name: string;
  passed: number;
  failed: number;
  /** The object printed as this file's line with --json. */
  json: object;
  /** One line per failure, printed without --json. */
  failures: string[];
}

export interface FileRunOptions {
  json: boolean;
  out: (line: string) => void;
  err: (line: string) => void;
  /** What an unrunnable file is called in the closing count: "file(s)", "script(s)". */
  noun: string;
}

/**
 * Runs `files` with `run`. An error that `isInputError` recognises is printed as its message
 * (it names the file); any other as `file: message`. `broken` counts paths that already failed
 * before the run (missing, unreadable). Returns the exit status: 0 only when nothing failed
 * and nothing was broken.
 */
export function runFiles(files: readonly string[], broken: number, o: FileRunOptions, run: (file: string) => FileResult, isInputError: (e: unknown) => boolean): number {
  let passed = 0;
  let failed = 0;
  for (const file of files) {
    let r: FileResult;
    try {
      r = run(file);
    } catch (e) {
      broken++;
      o.err(isInputError(e) ? `error: ${(e as Error).message}` : `error: ${file}: ${(e as Error).message}`);
      continue;
    }
    passed += r.passed;
    failed += r.failed;
    if (o.json) o.out(JSON.stringify(r.json));
    else for (const l of r.failures) o.out(l);
  }
  if (broken > 0) o.err(`${broken} ${o.noun} could not be run`);
  const summary = `${passed} passed, ${failed} failed`;
  // With --json, stdout carries only the JSON lines.
  if (o.json) o.err(summary);
  else o.out(summary);
  return failed === 0 && broken === 0 ? 0 : 1;
}
