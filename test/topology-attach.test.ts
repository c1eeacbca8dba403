/**
 * Attaching IOMMU groups of a topology: to host domains through the arm-smmu
 * driver on one SMMU model instance per SMMU (SMRs with masks covering a
 * group's stream IDs exactly, SMR exhaustion reported clearly and without side
 * effects), and to a VM's vSMMU. DMA through the SMMU model checks what was
 * programmed.
 */

import { describe, expect, it } from 'vitest';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1, createStage1 } from '../src/pgtable/builder.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { ArmSmmuDriver } from '../src/driver/arm-smmu.js';
import { AttachError, TopologyMachine, type MachineOptions } from '../src/topology/attach.js';
import { parseTopologyDoc, type TopologyDoc } from '../src/topology/file.js';
import type { IommuGroup, ResolvedTopology } from '../src/topology/model.js';
import { findMaster, resolveTopology } from '../src/topology/resolve.js';
import { alignedBlocks, coverStreamIds, entryMatches } from '../src/topology/smr.js';
import { Vm } from '../src/vsmmu/vm.js';

const RW = PROT_READ | PROT_WRITE;
const TABLES = 0x4000_0000;
const GUEST_RAM_IPA = 0x4000_0000;
const GUEST_RAM_PA = 0x8_0000_0000;

/**
 * smmu0: 4 SMRs. pcie0 maps RID = SID onto it:
 *   00:00.0 rp0 (ACS) -> 01:00.0-3 nic, no ACS: one group, SIDs 0x100-0x103 (one aligned block)
 *   00:01.0 rp1 (ACS) -> 02:00.0-2 tri, no ACS: one group, SIDs 0x200-0x202 (a block of 2 and one)
 * smmu1: a platform device at 0x10. pcie1 has no iommu-map: its RCiEP is untranslated.
 */
const DOC: TopologyDoc = {
  format: 'smmu-topology/1',
  name: 'attach',
  smmus: [
    { name: 'smmu0', shape: { smrs: 4, sidBits: 10, contextBanks: 8, s2OnlyBanks: 2 } },
    { name: 'smmu1', shape: { smrs: 4, sidBits: 10, contextBanks: 4 } },
  ],
  hostBridges: [
    {
      name: 'pcie0',
      'bus-range': [0, 3],
      'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: '0x400' }],
      devices: [
        { type: 'root-port', name: 'rp0', device: 0, secondary: 1, subordinate: 1, acs: true, children: [{ type: 'endpoint', name: 'nic', device: 0, functions: 4, acs: false }] },
        { type: 'root-port', name: 'rp1', device: 1, secondary: 2, subordinate: 2, acs: true, children: [{ type: 'endpoint', name: 'tri', device: 0, functions: 3, acs: false }] },
      ],
    },
    { name: 'pcie1', segment: 1, devices: [{ type: 'rc-endpoint', name: 'orphan', device: 0 }] },
  ],
  platformDevices: [{ name: 'dev1', iommus: [{ smmu: 'smmu1', sid: '0x10' }] }],
};

function world(opts: MachineOptions = {}) {
  const topo = resolveTopology(parseTopologyDoc(DOC, 'attach.json'));
  const mem = PhysMem.create({
    regions: [
      { base: TABLES, size: 16 << 20, name: 'host tables' },
      { base: GUEST_RAM_PA, size: 64 << 20, name: 'guest RAM' },
    ],
  });
  const m = new TopologyMachine(topo, mem, { disableBypass: true, ...opts });
  const tables = new PhysTables(mem, TABLES, TABLES + (8 << 20));
  const domain = (smmu = 'smmu0') => m.unit(smmu).driver.createDomain('s1', createStage1(tables, { granule: 4, ias: 48, oas: 48 }));
  const group = (name: string): IommuGroup => findMaster(topo, name)!.group;
  return { topo, mem, m, tables, domain, group };
}

describe('stream-match entries for a set of stream IDs', () => {
  it('an aligned power-of-two block is one SMR with a mask', () => {
    expect(coverStreamIds([0x100, 0x101, 0x102, 0x103])).toEqual([{ id: 0x100, mask: 0x3 }]);
    expect(coverStreamIds(Array.from({ length: 64 }, (_, i) => 0x4c0 + i))).toEqual([{ id: 0x4c0, mask: 0x3f }]);
  });

  it('otherwise an exact, disjoint cover', () => {
    expect(coverStreamIds([0x200, 0x201, 0x202])).toEqual([
      { id: 0x200, mask: 0x1 },
      { id: 0x202, mask: 0x0 },
    ]);
    // Not contiguous but one cube: ID 0x10 with mask 0x20 matches exactly 0x10 and 0x30.
    expect(coverStreamIds([0x30, 0x10])).toEqual([{ id: 0x10, mask: 0x20 }]);
    // A misaligned run of 4 needs 3 entries (no SMR may match 0x100 or 0x105, and no two of the IDs
    // but {0x101, 0x103} and {0x102, 0x103} differ in one bit); the largest-first choice takes the lowest ID.
    expect(coverStreamIds([0x101, 0x102, 0x103, 0x104])).toEqual([
      { id: 0x101, mask: 0x2 },
      { id: 0x102, mask: 0x0 },
      { id: 0x104, mask: 0x0 },
    ]);
  });

  it('never matches a stream ID outside the set, and never two entries one ID (random sets)', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    for (let trial = 0; trial < 100; trial++) {
      const n = 1 + Math.floor(rand() * 40);
      const set = new Set<number>();
      const base = Math.floor(rand() * 0x100);
      for (let i = 0; i < n; i++) set.add(base + Math.floor(rand() * 64));
      const cover = coverStreamIds(set, 0x3ff);
      let wrong = 0;
      for (let sid = 0; sid < 0x400; sid++) {
        let hits = 0;
        for (const e of cover) if (entryMatches(e, sid)) hits++;
        if (hits !== (set.has(sid) ? 1 : 0)) wrong++;
      }
      expect(wrong).toBe(0);
      expect(cover.length).toBeLessThanOrEqual(alignedBlocks([...set].sort((a, b) => a - b), 0x3ff).length);
    }
  });

  it('masks stay within what SMR.MASK implements', () => {
    expect(coverStreamIds([0, 1, 2, 3], 0x1)).toEqual([
      { id: 0, mask: 1 },
      { id: 2, mask: 1 },
    ]);
  });
});

describe('attaching groups to host domains', () => {
  it('one masked SMR for an aligned group, and DMA from each of its stream IDs translates', () => {
    const { m, domain, group } = world();
    const d = domain();
    m.unit('smmu0').driver.map(d, 0x10_0000, 0x8000_0000, 0x4000, RW);
    const a = m.attachGroup(group('nic.0'), d);
    expect(a.entries).toEqual([{ id: 0x100, mask: 0x3 }]);
    expect(m.smrs('smmu0')).toEqual([{ index: 0, id: 0x100, mask: 0x3 }]);
    const smmu = m.unit('smmu0').smmu;
    for (const sid of [0x100, 0x101, 0x102, 0x103]) expect(smmu.dma(sid, 0x10_1234, 'w', false)).toEqual({ kind: 'pa', pa: 0x8000_1234 });
    // Neighbours outside the group match no SMR: with disable_bypass they abort (unidentified stream).
    expect(smmu.dma(0x104, 0x10_1234, 'r', false).kind).toBe('abort');
    expect(smmu.dma(0x0ff, 0x10_1234, 'r', false).kind).toBe('abort');
    expect(m.attachment(group('nic.2'))?.smmu).toBe('smmu0');
  });

  it('a group that is not a block takes several SMRs', () => {
    const { m, domain, group } = world();
    const a = m.attachGroup(group('tri.0'), domain());
    expect(a.entries).toEqual([
      { id: 0x200, mask: 0x1 },
      { id: 0x202, mask: 0x0 },
    ]);
    expect(m.freeSmrs('smmu0')).toBe(2);
  });

  it('reports SMR exhaustion clearly and leaves the SMMU as it was', () => {
    const { m, domain, group } = world();
    const d = domain();
    m.attachGroup(group('nic.0'), d); // 1 SMR
    m.attachGroup(group('tri.0'), d); // 2 SMRs
    m.attachGroup(group('rp0'), d); // 1 SMR: all 4 used
    expect(m.freeSmrs('smmu0')).toBe(0);
    const before = m.smrs('smmu0');
    let err: unknown;
    try {
      m.attachGroup(group('rp1'), d);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AttachError);
    const e = err as AttachError;
    expect(e.code).toBe('ENOSPC');
    expect(e.group).toBe(group('rp1'));
    expect(e.message).toBe(
      `smmu0: stream-map entries (SMRs) exhausted attaching group ${group('rp1').id} (0000:00:01.0 (rp1)): its stream IDs 0x8 need 1 new SMR (0x8), but 0 of 4 are free`,
    );
    expect(m.smrs('smmu0')).toEqual(before);
    expect(m.attachment(group('rp1'))).toBeUndefined();
    // What was attached still translates.
    m.unit('smmu0').driver.map(d, 0x10_0000, 0x8000_0000, 0x1000, RW);
    expect(m.unit('smmu0').smmu.dma(0x202, 0x10_0010, 'r', false)).toEqual({ kind: 'pa', pa: 0x8000_0010 });
  });

  it('without masks (Linux: one SMR per PCI stream ID) the same SMRs run out sooner', () => {
    const { m, domain, group } = world({ useMasks: false });
    const d = domain();
    expect(m.attachGroup(group('nic.0'), d).entries).toHaveLength(4);
    expect(() => m.attachGroup(group('tri.0'), d)).toThrow(/need 3 new SMRs \(0x200, 0x201, 0x202\), but 0 of 4 are free/);
  });

  it('refuses a group attached twice, a domain of another SMMU, and untranslated RIDs', () => {
    const { m, domain, group } = world();
    const d0 = domain('smmu0');
    m.attachGroup(group('nic.1'), d0);
    expect(() => m.attachGroup(group('nic.3'), d0)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(() => m.attachGroup(group('dev1'), d0)).toThrow(/is on smmu1, but the domain \(bank \d+\) was not created by smmu1's driver/);
    const d1 = domain('smmu1');
    expect(m.attachGroup(group('dev1'), d1).entries).toEqual([{ id: 0x10, mask: 0 }]);
    expect(() => m.attachGroup(group('orphan'), d1)).toThrow(/cannot be attached: no iommu-map entry translates 0001:00:00.0 RID 0x0000/);
    expect(() => m.attachGroup(99, d1)).toThrow('no IOMMU group 99 (the topology has 6)');
  });

  it('destroying a domain frees its SMRs for the next group', () => {
    const { m, domain, group } = world();
    const d = domain();
    m.attachGroup(group('nic.0'), d);
    m.attachGroup(group('tri.0'), d);
    m.attachGroup(group('rp0'), d);
    m.destroyDomain('smmu0', d);
    expect(m.freeSmrs('smmu0')).toBe(4);
    expect(m.attachGroup(group('rp1'), domain()).entries).toEqual([{ id: 0x8, mask: 0 }]);
  });
});

describe("assigning groups to a VM's vSMMU", () => {
  function vmWorld() {
    const w = world();
    const vm = new Vm(w.mem, {
      vmid: 7,
      memslots: [{ ipa: GUEST_RAM_IPA, size: 64 << 20, pa: GUEST_RAM_PA }],
      hostTables: new PhysTables(w.mem, TABLES + (8 << 20), TABLES + (16 << 20)),
    });
    return { ...w, vm };
  }

  it("the guest programs stage 1 for the group's stream IDs; the host owns stage 2", () => {
    const { m, vm, mem, group } = vmWorld();
    const { vsmmu, devices } = m.assignToVm([group('nic.0')], vm);
    expect(devices).toEqual([0x100, 0x101, 0x102, 0x103].map((s) => ({ vsid: s, psid: s })));
    const guest = new ArmSmmuDriver(vsmmu);
    guest.probe();
    guest.reset();
    const pt = createGuestStage1(mem, vm.stage2, GUEST_RAM_IPA + (60 << 20), GUEST_RAM_IPA + (64 << 20), { granule: 4, ias: 48, oas: 40 }, 1);
    const d = guest.createDomain('s1', pt);
    guest.map(d, 0x1_0000, GUEST_RAM_IPA + 0x20_0000, 0x4000, RW);
    // The guest's own SMR can use a mask for its four stream IDs.
    guest.attach(d, [{ id: 0x100, mask: 0x3 }]);
    const phys = m.unit('smmu0').smmu;
    for (const sid of [0x100, 0x103]) expect(phys.dma(sid, 0x1_2345, 'w', false)).toEqual({ kind: 'pa', pa: GUEST_RAM_PA + 0x20_2345 });
    expect(m.attachment(group('nic.3'))?.target.kind).toBe('vm');
    expect(() => m.attachGroup(group('nic.0'), m.unit('smmu0').driver.createDomain('s1', createStage1(new PhysTables(mem, TABLES, TABLES + (1 << 20)), { granule: 4, ias: 48, oas: 48 })))).toThrow(
      /is already attached \(to a VM on smmu0\)/,
    );
  });

  it('the vSMMU routes each physical stream ID through its own SMR: running out is reported before anything is claimed', () => {
    const { m, vm, group } = vmWorld();
    m.assignToVm([group('nic.0')], vm); // 4 stream IDs, 4 SMRs
    expect(m.freeSmrs('smmu0')).toBe(0);
    expect(() => m.assignToVm([group('rp1')], vm)).toThrow(/smmu0: stream-map entries \(SMRs\) exhausted assigning to a VM group \d+ \(0000:00:01.0 \(rp1\)\): its stream IDs 0x8 need 1 new SMR/);
  });

  it('groups on different SMMUs cannot share one vSMMU', () => {
    const { m, vm, group } = vmWorld();
    expect(() => m.assignToVm([group('rp0'), group('dev1')], vm)).toThrow(/is on smmu1, not smmu0: one vSMMU fronts one physical SMMU/);
  });
});

describe('a machine for a whole preset', () => {
  it('server: every SMMU is brought up, and one group per SMMU attaches', async () => {
    const { loadPreset } = await import('../src/topology/presets.js');
    const topo: ResolvedTopology = resolveTopology(loadPreset('server'));
    const mem = PhysMem.create({ regions: [{ base: TABLES, size: 16 << 20 }] });
    const m = new TopologyMachine(topo, mem, { disableBypass: true });
    const tables = new PhysTables(mem, TABLES, TABLES + (16 << 20));
    expect([...m.units.keys()]).toEqual(['smmu0', 'smmu1', 'smmu2', 'smmu3']);
    for (const [name, u] of m.units) {
      const g = topo.groups.find((x) => x.smmus[0] === name && x.members.length > 1)!;
      const d = u.driver.createDomain('s1', createStage1(tables, { granule: 4, ias: 48, oas: 48 }));
      u.driver.map(d, 0x1000, 0x9000_0000, 0x1000, RW);
      const a = m.attachGroup(g, d);
      expect(a.entries.length).toBeLessThan(g.streams.length);
      for (const s of g.streams) expect(u.smmu.dma(s.sid, 0x1008, 'r', false)).toEqual({ kind: 'pa', pa: 0x9000_0008 });
    }
  });
});
