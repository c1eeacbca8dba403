/**
 * `smmu-farm topology show FILE|--preset NAME [--json] [--summary]` and
 * `smmu-farm topology generate [sizes] --seed N | --preset NAME`.
 *
 * Exit status of `show`: 0 when every requester ID maps to a stream ID and no
 * diagnostic is an error; 1 when the topology resolved but has error
 * diagnostics (they are printed); 2 when it could not be read or is invalid
 * (the problems go to stderr, each with the file and JSON path).
 */

import { Command, InvalidArgumentError, Option } from 'commander';
import { TopologyError } from '../topology/file.js';
import { GenerateError, generateTopology, type GenerateSizes } from '../topology/generate.js';
import { loadTopologyFile } from '../topology/index.js';
import type { TopologySpec } from '../topology/model.js';
import { PRESETS, PRESET_NAMES, UnknownPresetError, loadPreset, presetDoc } from '../topology/presets.js';
import { renderTopology, resolvedJson } from '../topology/render.js';
import { resolveTopology } from '../topology/resolve.js';

export interface TopologyIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: TopologyIo = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

export interface ShowOptions {
  preset?: string;
  json?: boolean;
  summary?: boolean;
}

/** Runs `topology show`; returns the exit status. */
export function topologyShow(file: string | undefined, opts: ShowOptions, io: TopologyIo = stdio): number {
  if ((file === undefined) === (opts.preset === undefined)) {
    io.err(`topology show: give a topology FILE or --preset NAME (one of: ${PRESET_NAMES.join(', ')}), not ${file === undefined ? 'neither' : 'both'}`);
    return 2;
  }
  let spec: TopologySpec;
  try {
    spec = opts.preset !== undefined ? loadPreset(opts.preset) : loadTopologyFile(file!);
  } catch (e) {
    if (e instanceof TopologyError || e instanceof UnknownPresetError) {
      for (const line of e.message.split('\n')) io.err(`error: ${line}`);
      return 2;
    }
    throw e;
  }
  const t = resolveTopology(spec);
  if (opts.json) io.out(JSON.stringify(resolvedJson(t), null, 2));
  else for (const line of renderTopology(t, { summary: opts.summary === true })) io.out(line);
  const errors = t.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    io.err(`${spec.file}: ${errors.length} error diagnostic(s), first: ${errors[0]!.message}`);
    return 1;
  }
  return 0;
}

const int = (v: string): number => {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
};

/** Registers `topology` (show, generate) on a program. */
export function topologyCommand(): Command {
  const topo = new Command('topology').description(
    'PCI and platform topologies: requester IDs, DMA aliases, iommu-map RID->SID translation, IOMMU groups, several SMMUs.',
  );
  topo
    .command('show')
    .description(
      'Resolve a topology and print a readable tree (SMMUs, host bridges, buses, PCI functions with RIDs, DMA aliases, stream IDs and groups; ' +
        'platform devices; shared groups and why; diagnostics). Exit 0 when every RID maps, 1 with error diagnostics, 2 for a bad file.',
    )
    .argument('[file]', 'an smmu-topology/1 JSON file')
    .addOption(new Option('--preset <name>', `a named topology instead of a file (${PRESET_NAMES.map((n) => `${n}: ${PRESETS[n]!.description}`).join('; ')})`))
    .option('--json', 'print the resolved mapping as JSON (functions, aliases, stream IDs, groups, diagnostics)')
    .option('--summary', 'leave out the per-function tree (for huge topologies)')
    .action((file: string | undefined, opts: ShowOptions) => {
      process.exitCode = topologyShow(file, opts);
    });
  topo
    .command('generate')
    .description('Print a generated topology file (smmu-topology/1 JSON): from sizes and a seed, or a preset\'s own file with --preset.')
    .addOption(new Option('--preset <name>', `print a preset's topology file (${PRESET_NAMES.join(', ')})`))
    .addOption(new Option('--smmus <n>', 'SMMUs').default(4).argParser(int))
    .addOption(new Option('--host-bridges <n>', 'root complexes (default: half the SMMUs)').argParser(int))
    .addOption(new Option('--root-ports <n>', 'Root Ports per root complex').default(4).argParser(int))
    .addOption(new Option('--switch-fanout <n>', 'Downstream Ports of the switch below each Root Port (0: no switches)').default(4).argParser(int))
    .addOption(new Option('--devices <n>', 'endpoint devices in all (default: one on every link)').argParser(int))
    .addOption(new Option('--functions <n>', 'functions per endpoint device (1..8)').default(1).argParser(int))
    .addOption(new Option('--legacy-bridges <n>', 'Root Ports per root complex leading to a PCIe-to-PCI bridge').default(0).argParser(int))
    .addOption(new Option('--legacy-devices <n>', 'conventional PCI devices behind each PCIe-to-PCI bridge').default(4).argParser(int))
    .addOption(new Option('--platform-devices <n>', 'platform devices in all (default: one per SMMU)').argParser(int))
    .addOption(new Option('--seed <n>', 'PRNG seed (same seed, same topology)').default(1).argParser(int))
    .action((opts: { preset?: string } & Omit<GenerateSizes, 'seed'> & { seed: number }) => {
      try {
        const doc =
          opts.preset !== undefined
            ? presetDoc(opts.preset)
            : generateTopology({
                smmus: opts.smmus,
                hostBridges: opts.hostBridges,
                rootPorts: opts.rootPorts,
                switchFanout: opts.switchFanout,
                devices: opts.devices,
                functions: opts.functions,
                legacyBridges: opts.legacyBridges,
                legacyDevices: opts.legacyDevices,
                platformDevices: opts.platformDevices,
                seed: opts.seed,
              });
        stdio.out(JSON.stringify(doc, null, 2));
      } catch (e) {
        if (e instanceof GenerateError || e instanceof UnknownPresetError) {
          stdio.err(`error: ${e.message}`);
          process.exitCode = 2;
          return;
        }
        throw e;
      }
    });
  return topo;
}
