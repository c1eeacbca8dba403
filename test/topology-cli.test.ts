/**
 * `smmu-farm topology show|generate`, run as the built command (dist/, after
 * `npx tsc -p .`, as test/cli.test.ts does).
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface ResolvedJson {
  format: string;
  smmus: Array<{ name: string; streamIds: number }>;
  functions: Array<{ bdf: string; type: string; rid: number; aliases: Array<{ rid: number; reason: string; by: string; smmu: string | null; sid: number | null }>; streams: unknown[]; group: number }>;
  groups: Array<{ id: number; members: string[]; smmus: string[] }>;
  diagnostics: unknown[];
}

describe('smmu-farm topology show', () => {
  it('--preset server prints the tree: SMMUs, host bridges with iommu-maps, RIDs, aliases, stream IDs, groups', () => {
    const r = run('topology', 'show', '--preset', 'server');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout.split('\n');
    expect(out[0]).toBe('topology "server" (preset:server): 4 SMMUs, 2 host bridges, 264 PCI functions, 4 platform devices; 282 stream IDs, 204 IOMMU groups');
    expect(out).toContain('  smmu0: stream matching, 128 SMRs, 15-bit stream IDs, 128 context banks (32 stage-2 only), s1+s2+nested');
    expect(out).toContain('Host bridge pcie0: segment 0000, buses 00-ff');
    expect(out).toContain('  iommu-map: RIDs 0x0008 -> smmu0 0x0');
    expect(out).toContain('  0000:00:01.0 root-port rp0.0 [buses 01-0a, ACS]  RID 0x0008 -> smmu0 0x0  group 0');
    // A conventional PCI device behind the legacy bridge: its RID, the bridge's alias, both stream IDs, the shared group.
    const legacy = out.find((l) => l.includes('0000:20:01.0 pci-device'))!;
    expect(legacy.trim()).toMatch(/^0000:20:01\.0 pci-device pci0\.3\.0 {2}RID 0x2008, aliases 0x2000 \(pcie-to-pci-bridge 0000:1f:00\.0\) -> smmu3 0x200, 0x208 {2}group (\d+)$/);
    const g = /group (\d+)$/.exec(legacy)![1];
    expect(out).toContain(`    because: DMA from below pcie-to-pci-bridge 0000:1f:00.0 carries its alias 0x2000`);
    expect(out.some((l) => l.startsWith(`  group ${g}: smmu3 0x100, 0x200, 0x208, 0x210, 0x218, 0x220; 0000:1f:00.0 pcibr0.3, 0000:20:01.0 pci0.3.0`))).toBe(true);
    expect(out).toContain('Platform devices');
    expect(out).toContain('Diagnostics: none (every requester ID maps to a stream ID)');
  });

  it('--json prints the resolved mapping', () => {
    const r = run('topology', 'show', '--preset', 'server', '--json');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout) as ResolvedJson;
    expect(j.format).toBe('smmu-topology-resolved/1');
    expect(j.smmus.map((s) => s.name)).toEqual(['smmu0', 'smmu1', 'smmu2', 'smmu3']);
    expect(j.functions).toHaveLength(264);
    expect(j.functions.every((f) => f.streams.length > 0)).toBe(true);
    const legacy = j.functions.find((f) => f.bdf === '0000:20:01.0')!;
    expect(legacy.aliases).toEqual([
      { rid: 0x2008, by: '0000:20:01.0', reason: 'requester', why: 'requester ID', smmu: 'smmu3', sid: 0x208 },
      { rid: 0x2000, by: '0000:1f:00.0', reason: 'pcie-to-pci-bridge', why: 'PCIe-to-PCI bridge alias (secondary bus, devfn 0)', smmu: 'smmu3', sid: 0x200 },
    ]);
    const group = j.groups[legacy.group]!;
    expect(group.members).toContain('0000:1f:00.0');
    expect(group.smmus).toEqual(['smmu3']);
    expect(j.diagnostics).toEqual([]);
  });

  it('a file with unmapped RIDs: printed, reported, exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-topo-cli-'));
    const file = join(dir, 'unmapped.json');
    writeFileSync(
      file,
      JSON.stringify({
        format: 'smmu-topology/1',
        name: 'unmapped',
        smmus: [{ name: 'smmu0' }],
        hostBridges: [
          {
            name: 'pcie0',
            'iommu-map': [{ 'rid-base': '0x100', smmu: 'smmu0', 'sid-base': 0, length: '0x100' }],
            devices: [{ type: 'root-port', device: 1, secondary: 1, subordinate: 2, acs: true, children: [{ type: 'endpoint', name: 'nvme', device: 0 }] }],
          },
        ],
      }),
    );
    const r = run('topology', 'show', file);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('0000:00:01.0 root-port root-port-0000:00:01 [buses 01-02, ACS]  RID 0x0008 -> no stream ID (UNMAPPED: 0x0008)');
    expect(r.stdout).toContain('0000:01:00.0 endpoint nvme  RID 0x0100 -> smmu0 0x0');
    expect(r.stdout).toContain('Diagnostics: 1 error, 0 warnings');
    expect(r.stdout).toContain('  error unmapped-rid: 0000:00:01.0 (root-port-0000:00:01): RID 0x0008, its requester ID, is not translated: no iommu-map entry of host bridge pcie0 covers it');
    expect(r.stderr).toContain(`${file}: 1 error diagnostic(s)`);
  });

  it('a malformed file: the file, the JSON path and the problem on stderr, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-topo-cli-'));
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        format: 'smmu-topology/1',
        name: 'bad',
        smmus: [{ name: 'smmu0' }],
        hostBridges: [{ name: 'pcie0', 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu1', 'sid-base': 0, length: 16 }] }],
      }),
    );
    const r = run('topology', 'show', file);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`error: ${file}: $.hostBridges[0].iommu-map[0].smmu: no SMMU is named "smmu1" (SMMUs: smmu0)\n`);
    const none = run('topology', 'show');
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('give a topology FILE or --preset NAME (one of: soc, server, hyperscale)');
    const unknown = run('topology', 'show', '--preset', 'laptop');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('no preset named "laptop" (presets: soc, server, hyperscale)');
  });
});

describe('smmu-farm topology generate', () => {
  it('prints a topology file that show accepts', () => {
    const g = run('topology', 'generate', '--smmus', '2', '--root-ports', '2', '--switch-fanout', '2', '--functions', '2', '--legacy-bridges', '1', '--seed', '7');
    expect(g.status).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'smmu-topo-cli-'));
    const file = join(dir, 'gen.json');
    writeFileSync(file, g.stdout);
    const r = run('topology', 'show', '--summary', file);
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^topology "generated-s2-h1-rp2-f2-d2-fn2-lb1-seed7" \(.*gen\.json\): 2 SMMUs, 1 host bridge, 14 PCI functions, 2 platform devices;/);
  });
});

describe('--help', () => {
  for (const args of [['topology', '--help'], ['topology', 'show', '--help'], ['topology', 'generate', '--help']]) {
    it(args.join(' '), () => {
      const r = run(...args);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`Usage: smmu-farm ${args.slice(0, -1).join(' ')}`);
    });
  }
});
