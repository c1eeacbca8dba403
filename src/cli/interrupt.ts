/**
 * Ctrl-C for long commands (issue F item 6): the first SIGINT asks the work to
 * stop cleanly (an AbortSignal the work polls between batches or suites) so that
 * what was measured so far is reported and kept; a second one quits at once
 * with status 130.
 */

export async function withInterrupt<T>(what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSigint = (): void => {
    if (ac.signal.aborted) {
      process.stderr.write(`\n${what}: interrupted again, quitting now\n`);
      process.exit(130);
    }
    process.stderr.write(`\n${what}: interrupted; stopping cleanly and keeping what was measured (Ctrl-C again to quit now)\n`);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await work(ac.signal);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** The exit status of a command a user interrupted (128 + SIGINT), as shells report it. */
export const INTERRUPTED_STATUS = 130;
