/**
 * Shared CPU tables vs private IOMMU tables, at both stages: DMA sees every
 * change after its invalidation in both ownership modes, and what each costs
 * is counted.
 */

import { describe, expect, it } from 'vitest';
import { ArmSmmuDriver } from '../src/driver/arm-smmu.js';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1 } from '../src/pgtable/builder.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { encodeIds } from '../src/smmu/id.js';
import { Smmu } from '../src/smmu/smmu.js';
import { Stage1Owner, Stage2Owner, type Ownership } from '../src/vsmmu/owners.js';
import { Vm } from '../src/vsmmu/vm.js';
import { VSmmu } from '../src/vsmmu/vsmmu.js';

const RW = PROT_READ | PROT_WRITE;
const RAM_IPA = 0x4000_0000;
const RAM_PA = 0x8_0000_0000;
const MiB = 1 << 20;

function world(s1mode: Ownership, s2mode: Ownership) {
  const mem = PhysMem.create({
    regions: [
      { base: 0x4000_0000, size: 16 * MiB, name: 'host tables' },
      { base: RAM_PA, size: 64 * MiB, name: 'guest RAM' },
    ],
  });
  const phys = new Smmu(encodeIds({ smrs: 16, sidBits: 12, contextBanks: 8, s2OnlyBanks: 2 }), mem);
  const host = new ArmSmmuDriver(phys, { disableBypass: true });
  host.probe();
  host.reset();
  phys.on('contextFault', (cb) => host.contextFaultIrq(cb));
  const vm = new Vm(mem, { vmid: 5, memslots: [{ ipa: RAM_IPA, size: 64 * MiB, pa: RAM_PA }], hostTables: new PhysTables(mem, 0x4000_0000, 0x4000_0000 + 8 * MiB) });
  const s2 = new Stage2Owner(vm, host, s2mode, { vfioTables: new PhysTables(mem, 0x4000_0000 + 8 * MiB, 0x4000_0000 + 16 * MiB) });
  const vsmmu = new VSmmu(vm, phys, host, [{ vsid: 1, psid: 0x101 }], { stage2Domain: s2.domain });
  const guest = new ArmSmmuDriver(vsmmu);
  guest.probe();
  guest.reset();
  // The guest process's page tables live in guest RAM at 60 MiB; a private IOMMU table at 62 MiB.
  const g = { granule: 4 as const, ias: 48, oas: 40 };
  const process = createGuestStage1(mem, vm.stage2, RAM_IPA + 60 * MiB, RAM_IPA + 62 * MiB, g, 9);
  const iommu = createGuestStage1(mem, vm.stage2, RAM_IPA + 62 * MiB, RAM_IPA + 64 * MiB, g, 9);
  const s1 = new Stage1Owner(process, guest, s1mode, s1mode === 'private' ? iommu : undefined);
  guest.attach(s1.domain, [{ id: 1 }]);
  return { phys, vm, s1, s2 };
}

const VA = 0x7f00_0000_0000;
const PAGES = 64;

function scenario(s1mode: Ownership, s2mode: Ownership) {
  const { phys, s1, s2 } = world(s1mode, s2mode);
  // The process maps 64 pages (not 2 MiB aligned in IPA, so 4 KiB leaves) and the device uses them.
  const mmap = s1.mmap(VA, RAM_IPA + 4 * MiB + 0x1000, PAGES * 4096, RW);
  for (let i = 0; i < PAGES; i++) expect(phys.dma(0x101, VA + i * 4096 + 8, 'w', false)).toEqual({ kind: 'pa', pa: RAM_PA + 4 * MiB + 0x1000 + i * 4096 + 8 });
  // munmap 16 pages: the device must fault on them afterwards, and only on them.
  const munmap = s1.munmap(VA, 16 * 4096);
  for (let i = 0; i < PAGES; i++) expect(phys.dma(0x101, VA + i * 4096, 'r', false).kind).toBe(i < 16 ? 'abort' : 'pa');
  // The host takes the 2 MiB block of guest RAM at 4 MiB away at stage 2: the rest of the mapping faults there.
  const reclaim = s2.unmap(RAM_IPA + 4 * MiB, 2 * MiB);
  for (let i = 16; i < PAGES; i++) expect(phys.dma(0x101, VA + i * 4096, 'r', false).kind).toBe('abort');
  // ... and gives it back at another host frame.
  const restore = s2.map(RAM_IPA + 4 * MiB, RAM_PA + 32 * MiB, 2 * MiB);
  expect(phys.dma(0x101, VA + 20 * 4096, 'r', false)).toEqual({ kind: 'pa', pa: RAM_PA + 32 * MiB + 0x1000 + 20 * 4096 });
  return { mmap, munmap, reclaim, restore, s1: s1.costs(), s2: s2.costs() };
}

describe('shared CPU tables vs private IOMMU tables', () => {
  const runs = {
    shared: scenario('shared', 'shared'),
    private: scenario('private', 'private'),
    mixed: scenario('shared', 'private'),
  };

  it('every combination translates correctly through every change (asserted inside the scenario)', () => {
    expect(Object.keys(runs)).toHaveLength(3);
  });

  it('stage 1: private doubles descriptor writes and table pages; invalidations are the same', () => {
    const s = runs.shared;
    const p = runs.private;
    expect(s.mmap.tlbi).toBe(0);
    expect(p.mmap.descriptorWrites).toBe(2 * s.mmap.descriptorWrites);
    expect(p.munmap.descriptorWrites).toBe(2 * s.munmap.descriptorWrites);
    expect(s.munmap.tlbi).toBe(16); // TLBIVA per 4 KiB page
    expect(p.munmap.tlbi).toBe(s.munmap.tlbi);
    expect(s.munmap.syncs).toBe(1);
    expect(p.s1.tablePages).toBeGreaterThan(s.s1.tablePages);
  });

  it('stage 2: private mirrors every change into VFIO tables; the SMMU invalidation is one TLBIIPAS2 per block plus TLBIVMID', () => {
    const s = runs.shared;
    const p = runs.private;
    expect(s.reclaim.descriptorWrites).toBe(1); // one 2 MiB block descriptor cleared
    expect(p.reclaim.descriptorWrites).toBe(2);
    expect(s.reclaim.tlbi).toBe(2); // TLBIIPAS2 for the block, TLBIVMID (KVM's rule for combined entries)
    expect(p.reclaim.tlbi).toBe(2);
    expect(s.restore.tlbi).toBe(0);
    expect(p.s2.tablePages).toBeGreaterThan(s.s2.tablePages);
  });
});
