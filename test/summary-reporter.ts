/**
 * Prints the plain closing line "N passed, M failed" (tests, with skipped if
 * any) after vitest's own report, so any CI can read the outcome.
 */

import type { Reporter } from 'vitest/reporters';

type TaskLike = { type: string; result?: { state?: string }; mode?: string; tasks?: TaskLike[] };

function count(tasks: TaskLike[], acc: { passed: number; failed: number; skipped: number }): void {
  for (const t of tasks) {
    if (t.type === 'suite' || t.tasks !== undefined) count(t.tasks ?? [], acc);
    if (t.type !== 'test') continue;
    const state = t.result?.state;
    if (state === 'pass') acc.passed++;
    else if (state === 'fail') acc.failed++;
    else acc.skipped++;
  }
}

export default class SummaryReporter implements Reporter {
  onFinished(files: TaskLike[] = [], errors: unknown[] = []): void {
    const acc = { passed: 0, failed: 0, skipped: 0 };
    count(files, acc);
    const failed = acc.failed + errors.length;
    process.stdout.write(`\n${acc.passed} passed, ${failed} failed${acc.skipped > 0 ? `, ${acc.skipped} skipped` : ''}\n`);
  }
}
