#!/usr/bin/env node
/**
 * The `smmu-farm` command line.
 */

import { Command, Option } from 'commander';
import { benchCommand } from './bench.js';
import { checkCommand } from './check.js';
import { demoCommand } from './demo.js';
import { replayCachesHelp, replayCommand } from './replay.js';
import { runCommandSpec } from './run.js';
import { startCommandSpec } from './start.js';
import { stressCommandSpec } from './stress.js';
import { topologyCommand } from './topology.js';
import { traceCommand } from './trace.js';

// A reader that goes away (`smmu-farm topology show ... | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const program = new Command();
program
  .name('smmu-farm')
  .description('A workbench for the Arm SMMUv2 with two-stage (nested) translation: VMSAv8-64 tables in shared memory and a walker.')
  .version('0.1.0')
  .showHelpAfterError();

program
  .command('check')
  .description(
    'Run vmsa-case/1 translation cases (files or folders of *.json) through the walker. Prints one line per failing query, then "N passed, M failed"; exit 0 only when all pass.',
  )
  .argument('<paths...>', 'case files or folders')
  .option('--json', 'print one JSON object per case per line: {"name", "results"}, each result in the expect schema')
  .action((paths: string[], opts: { json?: boolean }) => {
    process.exitCode = checkCommand(paths, { json: opts.json === true });
  });

program
  .command('demo')
  .description('Translate the built-in nested configuration (nested-4k-1g) and print walks/s and descriptor reads per walk (what `npm start` runs).')
  .addOption(new Option('--seconds <s>', 'measuring time per regime').default('1').argParser(Number))
  .addOption(new Option('--fraction <f>', 'fraction of the 1 GiB of VA to map (0..1]').default('1').argParser(Number))
  .action(async (opts: { seconds: number; fraction: number }) => {
    process.exitCode = await demoCommand(opts);
  });

program
  .command('replay')
  .description(
    'Replay smmu-script/1 register-level scripts (files or folders of *.json, recorded ones included) on a fresh SMMU model each. Prints one line per step that does not hold, then "N passed, M failed" counting steps; exit 0 only when all pass.',
  )
  .argument('<paths...>', 'script files or folders')
  .option('--json', 'print one JSON object per script per line: {"name", "steps"}, one entry per step ({"value"} for reads, the outcome in the expect schema for dma/pending, {} otherwise)')
  .option('--caches <preset>', replayCachesHelp(), 'none')
  .action((paths: string[], opts: { json?: boolean; caches: string }) => {
    process.exitCode = replayCommand(paths, { json: opts.json === true, caches: opts.caches });
  });

program.addCommand(topologyCommand());
program.addCommand(traceCommand());
program.addCommand(runCommandSpec());
program.addCommand(benchCommand());
program.addCommand(stressCommandSpec());
program.addCommand(startCommandSpec());

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`smmu-farm: ${(e as Error).message}\n`);
  process.exitCode = 2;
});
