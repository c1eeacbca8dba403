/**
 * The seed's arrangement: a KVM guest programs stage 1 of its assigned device
 * through a guest-visible SMMUv2 while the host owns stage 2.
 */

import { describe, expect, it } from 'vitest';
import { NoCache } from '../src/cache/interface.js';
import { ArmSmmuDriver, type FaultInfo } from '../src/driver/arm-smmu.js';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1 } from '../src/pgtable/builder.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { encodeIds } from '../src/smmu/id.js';
import * as R from '../src/smmu/regs.js';
import { Smmu } from '../src/smmu/smmu.js';
import { Vm } from '../src/vsmmu/vm.js';
import { VSmmu } from '../src/vsmmu/vsmmu.js';

const RW = PROT_READ | PROT_WRITE;
const GUEST_RAM_IPA = 0x4000_0000;
const GUEST_RAM_PA = 0x8_0000_0000;
const GUEST_TABLES_IPA = GUEST_RAM_IPA + (60 << 20); // the guest kernel keeps its page tables here

function world(guestOpts: ConstructorParameters<typeof ArmSmmuDriver>[1] = {}) {
  const mem = PhysMem.create({
    regions: [
      { base: 0x4000_0000, size: 8 << 20, name: 'host page tables' },
      { base: GUEST_RAM_PA, size: 64 << 20, name: 'guest RAM' },
    ],
  });
  const cache = new NoCache();
  cache.keepLog = true;
  const phys = new Smmu(encodeIds({ smrs: 16, sidBits: 12, contextBanks: 8, s2OnlyBanks: 2 }), mem, cache);
  const host = new ArmSmmuDriver(phys, { disableBypass: true });
  host.probe();
  host.reset();
  const hostFaults: FaultInfo[] = [];
  phys.on('contextFault', (cb) => {
    const f = host.contextFaultIrq(cb);
    if (f !== null) hostFaults.push(f);
  });
  const vm = new Vm(mem, {
    vmid: 7,
    memslots: [{ ipa: GUEST_RAM_IPA, size: 64 << 20, pa: GUEST_RAM_PA }],
    hostTables: new PhysTables(mem, 0x4000_0000, 0x4000_0000 + (8 << 20)),
  });
  const vsmmu = new VSmmu(vm, phys, host, [{ vsid: 0x10, psid: 0x210 }]);
  const guest = new ArmSmmuDriver(vsmmu, guestOpts);
  vsmmu.onGuestContextFault((cb) => guest.contextFaultIrq(cb));
  guest.probe();
  guest.reset();
  const pt = createGuestStage1(mem, vm.stage2, GUEST_TABLES_IPA, GUEST_TABLES_IPA + (4 << 20), { granule: 4, ias: 48, oas: 40 }, 1);
  return { mem, cache, phys, host, vm, vsmmu, guest, pt, hostFaults };
}

describe('vSMMU: the guest programs stage 1, the host owns stage 2', () => {
  it('the guest sees a stage-1-only SMMUv2 and its driver brings it up', () => {
    const { guest } = world();
    expect(guest.probed).toMatchObject({ s1: true, s2: false, nested: false, streamMatching: true });
  });

  it("a device's DMA goes through the guest's stage 1 and the host's stage 2", () => {
    const { phys, guest, pt, vsmmu, vm, cache } = world();
    const domain = guest.createDomain('s1', pt);
    guest.map(domain, 0x1_0000, GUEST_RAM_IPA + 0x20_0000, 0x4000, RW); // IOVA -> a guest buffer (IPA)
    guest.attach(domain, [{ id: 0x10 }]);
    const pcb = vsmmu.physicalBank(domain.cbndx);
    expect(pcb).toBeGreaterThanOrEqual(2);
    // The physical bank is nested (CBAR.TYPE 3) over the VM's stage-2 bank.
    const cbar = phys.read32((1 << 12) + R.GR1_CBAR + 4 * pcb);
    expect((cbar >>> 16) & 3).toBe(3);
    expect((cbar >>> 8) & 0xff).toBe(vsmmu.s2domain.cbndx);
    // The device carries its physical stream ID.
    expect(phys.dma(0x210, 0x1_2345, 'w', false)).toEqual({ kind: 'pa', pa: GUEST_RAM_PA + 0x20_2345 });
    expect(phys.dma(0x210, 0x9_0000, 'r', false).kind).toBe('abort');
    // Strict unmap in the guest: its TLBIVA reaches the physical SMMU, tagged with the VM's VMID.
    cache.log.length = 0;
    expect(guest.unmap(domain, 0x1_0000, 0x1000)).toBe(0x1000);
    expect(cache.log).toEqual([{ kind: 'va', vmid: vm.vmid, asid: domain.asid, allAsids: false, va: 0x1_0000, leaf: false }]);
    expect(phys.dma(0x210, 0x1_0010, 'r', false).kind).toBe('abort');
    // The guest's hardware translation (ATS1PR) answers with the IPA: the guest's idea of a PA.
    expect(guest.iovaToPhysHard(domain, 0x1_1008)).toBe(GUEST_RAM_IPA + 0x20_1008);
    // The host's global operations on the physical nested bank: GATS1PR gives the IPA, GATS12PR the PA.
    phys.write64(R.GR0_GATS1PR, BigInt(0x1_1000 | pcb));
    expect(phys.read32(R.GR0_GATSR) & 1).toBe(0);
    expect(phys.read64(R.GR0_GPAR)).toBe(BigInt(GUEST_RAM_IPA + 0x20_1000));
    phys.write64(R.GR0_GATS12PW, BigInt(0x1_1000 | pcb));
    expect(phys.read64(R.GR0_GPAR)).toBe(BigInt(GUEST_RAM_PA + 0x20_1000));
    phys.write64(R.GR0_GATS12PR, BigInt(0x9_0000 | pcb)); // unmapped: F with the translation-fault bit
    expect(phys.read64(R.GR0_GPAR)).toBe(BigInt(R.PAR_F | R.FSR_TF));
    phys.write64(R.GR0_GATS12PR, BigInt(0x1_1000 | 200)); // NDX names no bank
    expect(phys.read64(R.GR0_GPAR) & 1n).toBe(1n);
  });

  it('a stage-1 fault is injected into the guest, whose handler maps the page and resumes', () => {
    const { phys, guest, pt, vsmmu } = world({ stallOnFault: true });
    const domain = guest.createDomain('s1', pt);
    guest.attach(domain, [{ id: 0x10 }]);
    const faults: Array<{ far: bigint; streamId: number }> = [];
    guest.setFaultHandler(domain, (f) => {
      faults.push({ far: f.far, streamId: f.streamId });
      pt.map(Number(f.far) - (Number(f.far) % 4096), GUEST_RAM_IPA + 0x30_0000, 4096, RW);
      return 'retry';
    });
    const o = phys.dma(0x210, 0x5_0040, 'r', false);
    expect(o.kind).toBe('stall');
    expect(o.kind === 'stall' && phys.pending(o.tag)).toEqual({ kind: 'pa', pa: GUEST_RAM_PA + 0x30_0040 });
    expect(faults).toEqual([{ far: 0x5_0040n, streamId: 0x10 }]); // the guest sees its own stream ID
    expect(vsmmu.traps.injectedFaults).toBe(1);
    expect(guest.iopf).toMatchObject({ faults: 1, retried: 1 });
    // Both sides' FSRs are clear afterwards.
    expect(vsmmu.read32(vsmmu.shadow.cbOffset(domain.cbndx) + R.CB_FSR)).toBe(0);
    expect(phys.read32(phys.cbOffset(vsmmu.physicalBank(domain.cbndx)) + R.CB_FSR)).toBe(0);
  });

  it('a stage-2 fault (KVM unmapped guest memory) goes to the host, not the guest', () => {
    const { phys, host, guest, pt, vsmmu, vm, hostFaults } = world();
    const domain = guest.createDomain('s1', pt);
    guest.map(domain, 0x1_0000, GUEST_RAM_IPA + 0x10_0000, 0x1000, RW);
    guest.attach(domain, [{ id: 0x10 }]);
    // The host reclaims the 2 MiB block of guest RAM (KVM maps memslots with the largest blocks).
    expect(vm.stage2.unmap(GUEST_RAM_IPA, 0x20_0000)).toBe(0x20_0000);
    host.flushRange(vsmmu.s2domain, GUEST_RAM_IPA, 0x20_0000, true);
    host.flushVmid(vsmmu.s2domain); // the KVM rule for combined entries: flush stage 1 of the VMID too
    expect(phys.dma(0x210, 0x1_0000, 'r', false).kind).toBe('abort');
    // The host's handler saw a translation fault in the VM's stage-2 bank, for the IPA, naming the guest's bank.
    expect(hostFaults).toHaveLength(1);
    const f = hostFaults[0]!;
    expect(f.cbndx).toBe(vsmmu.s2domain.cbndx);
    expect(f.fsr & R.FSR_TF).toBe(R.FSR_TF);
    expect(Number(f.ipafar)).toBe(GUEST_RAM_IPA + 0x10_0000);
    expect((f.fsynr0 >>> 16) & 0xff).toBe(vsmmu.physicalBank(domain.cbndx));
    expect(vsmmu.traps.injectedFaults).toBe(0);
  });
});
