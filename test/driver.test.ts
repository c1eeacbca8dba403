/**
 * The driver side against the register model: bring-up from reset, domains of
 * every kind translating DMA, the stream-map rule, strict unmaps with TLB
 * maintenance, hardware address translation, global faults, and demand paging
 * through stall and RESUME.
 */

import { describe, expect, it } from 'vitest';
import { NoCache } from '../src/cache/interface.js';
import { ArmSmmuDriver, DriverError, type FaultInfo } from '../src/driver/arm-smmu.js';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1, createStage1, createStage2 } from '../src/pgtable/builder.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { encodeIds } from '../src/smmu/id.js';
import * as R from '../src/smmu/regs.js';
import { Smmu } from '../src/smmu/smmu.js';

const RW = PROT_READ | PROT_WRITE;
const TABLES = 0x4000_0000;

function setup(opts: ConstructorParameters<typeof ArmSmmuDriver>[1] = {}, shape: Parameters<typeof encodeIds>[0] = {}) {
  const mem = PhysMem.create({ regions: [{ base: TABLES, size: 16 << 20 }] });
  const cache = new NoCache();
  cache.keepLog = true;
  const smmu = new Smmu(encodeIds({ smrs: 8, sidBits: 10, contextBanks: 8, s2OnlyBanks: 2, ...shape }), mem, cache);
  const drv = new ArmSmmuDriver(smmu, opts);
  drv.probe();
  drv.reset();
  smmu.on('contextFault', (cb) => drv.contextFaultIrq(cb));
  const tables = new PhysTables(mem, TABLES, TABLES + (8 << 20));
  return { mem, smmu, drv, cache, tables };
}

describe('bring-up', () => {
  it('probes the ID registers and learns SMR widths from RAZ/WI read-backs', () => {
    const { drv, smmu } = setup({ disableBypass: true });
    const p = drv.probed;
    expect(p).toMatchObject({ s1: true, s2: true, nested: true, streamMatching: true, numMappingGroups: 8, numContextBanks: 8, numS2ContextBanks: 2 });
    expect(p.streamIdMask).toBe(0x3ff);
    expect(p.smrMaskMask).toBe(0x3ff);
    // Reset leaves the SMMU enabled (CLIENTPD clear), faulting unknown streams, VMID16 on.
    const scr0 = smmu.read32(R.GR0_sCR0);
    expect(scr0 & R.sCR0_CLIENTPD).toBe(0);
    expect(scr0 & R.sCR0_USFCFG).toBe(R.sCR0_USFCFG);
    expect((scr0 >>> 31) & 1).toBe(1); // VMID16EN
    expect(smmu.dma(5, 0x1000, 'r', false).kind).toBe('abort');
    const g = drv.globalFaultIrq();
    expect(g?.sgfsr).toBe(R.sGFSR_USF);
    expect(g?.streamId).toBe(5);
    expect(smmu.read32(R.GR0_sGFSR)).toBe(0);
  });

  it('refuses an impossible instance at probe', () => {
    const mem = PhysMem.create({ regions: [{ base: 0, size: 65536 }] });
    const fake = { read32: (off: number) => (off === 0x24 ? (4 << 16) | 2 : off === 0x20 ? 0x6e000e08 : 0), write32: () => {}, read64: () => 0n, write64: () => {} };
    expect(() => new ArmSmmuDriver(fake).probe()).toThrow(/impossible number of S2 context banks/);
    void mem;
  });
});

describe('domains translate DMA', () => {
  it('stage 1, stage 2 and nested domains, each behind its own streams', () => {
    const { mem, smmu, drv, tables } = setup();
    // Stage 1 (host DMA API): IOVA -> PA.
    const s1 = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 3);
    const d1 = drv.createDomain('s1', s1);
    expect(d1.cbndx).toBeGreaterThanOrEqual(2); // stage-1 banks start at NUMS2CB
    drv.map(d1, 0x10_0000, 0x8000_0000, 0x4000, RW);
    drv.attach(d1, [{ id: 0x10 }, { id: 0x11 }]);
    expect(smmu.dma(0x10, 0x10_1234, 'w', false)).toEqual({ kind: 'pa', pa: 0x8000_1234 });
    expect(smmu.dma(0x11, 0x10_3ff8, 'r', true)).toEqual({ kind: 'pa', pa: 0x8000_3ff8 });
    expect(smmu.dma(0x10, 0x20_0000, 'r', false).kind).toBe('abort');

    // Stage 2 (VFIO without a vIOMMU): IPA -> PA.
    const s2 = createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 9);
    const d2 = drv.createDomain('s2', s2);
    expect(d2.cbndx).toBe(0);
    drv.map(d2, 0x4000_0000, 0x9000_0000, 0x20_0000, RW);
    drv.attach(d2, [{ id: 0x20, mask: 0x3 }]);
    expect(smmu.dma(0x23, 0x4001_0008, 'r', false)).toEqual({ kind: 'pa', pa: 0x9001_0008 });

    // Nested: a guest's stage 1 (tables at IPAs) over KVM's stage 2.
    const kvm = createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 12);
    const dk = drv.createDomain('s2', kvm);
    const guestTablesPa = TABLES + (10 << 20);
    kvm.map(0x1_0000_0000, guestTablesPa, 1 << 20, RW); // guest RAM holding its page tables
    kvm.map(0x2_0000_0000, 0xa000_0000, 0x10_0000, RW); // guest RAM the device writes
    const guest = createGuestStage1(mem, kvm, 0x1_0000_0000, 0x1_0010_0000, { granule: 4, ias: 48, oas: 40 }, 7);
    guest.map(0x7000_0000, 0x2_0000_0000, 0x10_0000, RW);
    const dn = drv.createDomain('nested', guest, dk);
    drv.attach(dn, [{ id: 0x40 }]);
    expect(smmu.dma(0x40, 0x7000_5678, 'w', false)).toEqual({ kind: 'pa', pa: 0xa000_5678 });
    // Hardware translation (ATS1PR) of the stage-1 domain agrees with the tables.
    expect(drv.iovaToPhysHard(d1, 0x10_2abc)).toBe(0x8000_2abc);
    expect(drv.iovaToPhysHard(d1, 0x50_0000)).toBeNull();
  });

  it('allocates stream-map entries with the reuse-if-contained, refuse-if-overlapping rule', () => {
    const { drv, tables } = setup();
    const d = drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 39, oas: 40 }));
    expect(drv.attach(d, [{ id: 0x10, mask: 0x0f }])).toEqual([0]);
    expect(drv.findSme(0x12, 0x03)).toBe(0); // contained in SMR 0
    expect(() => drv.findSme(0x18, 0x30)).toThrow(DriverError); // 0x18 would match both
    expect(drv.findSme(0x20, 0)).toBe(1); // first free
    expect(() => drv.findSme(0x400, 0)).toThrow(/wider than the SMRs/);
  });

  it('runs out of SMRs and context banks with a clear error', () => {
    const { drv, tables } = setup({}, { smrs: 2, contextBanks: 3, s2OnlyBanks: 1 });
    const d = drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 39, oas: 40 }));
    drv.attach(d, [{ id: 1 }, { id: 2 }]);
    expect(() => drv.attach(d, [{ id: 3 }])).toThrow(/SMRs exhausted/);
    drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 39, oas: 40 }));
    expect(() => drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 39, oas: 40 }))).toThrow(/no free context bank/);
  });
});

describe('TLB maintenance', () => {
  it('strict unmap issues TLBIVA per granule with the ASID, then a context sync', () => {
    const { smmu, drv, tables, cache } = setup();
    const pt = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 5);
    const d = drv.createDomain('s1', pt);
    drv.attach(d, [{ id: 1 }]);
    drv.map(d, 0x12345000, 0x8000_0000, 0x2000, RW);
    cache.log.length = 0;
    const syncs = drv.accesses.syncs;
    expect(drv.unmap(d, 0x12345000, 0x2000)).toBe(0x2000);
    expect(cache.log).toEqual([
      { kind: 'va', vmid: 0, asid: 5, allAsids: false, va: 0x12345000, leaf: false },
      { kind: 'va', vmid: 0, asid: 5, allAsids: false, va: 0x12346000, leaf: false },
    ]);
    expect(drv.accesses.syncs).toBe(syncs + 1);
    expect(smmu.dma(1, 0x12345000, 'r', false).kind).toBe('abort');
  });

  it('stage 2 flushes by IPA and by VMID (global sync)', () => {
    const { drv, tables, cache } = setup();
    const d = drv.createDomain('s2', createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 33));
    drv.map(d, 0x4000_0000, 0x4000_0000, 0x1000, RW);
    cache.log.length = 0;
    drv.flushRange(d, 0x4000_0000, 0x1000, true);
    drv.flushVmid(d);
    expect(cache.log).toEqual([
      { kind: 'ipa', vmid: 33, ipa: 0x4000_0000, leaf: true },
      { kind: 'vmid', vmid: 33 },
    ]);
  });

  it('a sync that never completes times out with an error instead of hanging', () => {
    const { smmu, drv } = setup();
    smmu.cache = Object.assign(new NoCache(), { syncComplete: () => false });
    expect(() => drv.globalSync()).toThrow(/TLB sync timed out/);
  });
});

describe('I/O page faults through stall and RESUME', () => {
  it('demand paging: a device touches unmapped pages, stalls, the handler maps them, the device completes', () => {
    const { smmu, drv, tables } = setup({ stallOnFault: true });
    const pt = createStage1(tables, { granule: 4, ias: 48, oas: 48 }, 4);
    const d = drv.createDomain('s1', pt);
    drv.attach(d, [{ id: 7 }]);
    const seen: FaultInfo[] = [];
    let nextFrame = 0xb000_0000;
    drv.setFaultHandler(d, (f) => {
      seen.push(f);
      const page = Number(f.far) - (Number(f.far) % 4096);
      pt.map(page, nextFrame, 4096, RW);
      nextFrame += 4096;
      return 'retry';
    });
    const outcomes = [0x5000_0010, 0x5000_1020, 0x5000_0030].map((va) => {
      const o = smmu.dma(7, va, 'w', false);
      return o.kind === 'stall' ? smmu.pending(o.tag) : o;
    });
    expect(outcomes).toEqual([
      { kind: 'pa', pa: 0xb000_0010 },
      { kind: 'pa', pa: 0xb000_1020 },
      { kind: 'pa', pa: 0xb000_0030 }, // the page mapped by the first fault: no new fault
    ]);
    expect(seen.map((f) => [Number(f.far), f.write, f.streamId, f.stalled])).toEqual([
      [0x5000_0010, true, 7, true],
      [0x5000_1020, true, 7, true],
    ]);
    expect(drv.iopf).toMatchObject({ faults: 2, retried: 2, terminated: 0 });
    expect(drv.iopf.maxMs).toBeGreaterThanOrEqual(0);
    expect(smmu.read32(drv.cb(d.cbndx) + R.CB_FSR)).toBe(0);
  });

  it('a handler that cannot resolve the fault terminates the transaction', () => {
    const { smmu, drv, tables } = setup({ stallOnFault: true });
    const d = drv.createDomain('s1', createStage1(tables, { granule: 4, ias: 48, oas: 48 }));
    drv.attach(d, [{ id: 9 }]);
    drv.setFaultHandler(d, () => 'terminate');
    const o = smmu.dma(9, 0x6000_0000, 'r', true);
    expect(o.kind).toBe('stall');
    expect(o.kind === 'stall' && smmu.pending(o.tag)).toMatchObject({ kind: 'abort' });
    expect(drv.iopf).toMatchObject({ faults: 1, retried: 0, terminated: 1 });
  });

  it('stage-2 faults of a nested domain reach the host handler, which maps the IPA', () => {
    const { mem, smmu, drv, tables } = setup({ stallOnFault: true });
    const kvm = createStage2(tables, { granule: 4, ias: 40, oas: 48 }, 2);
    const dk = drv.createDomain('s2', kvm);
    kvm.map(0x1_0000_0000, TABLES + (10 << 20), 1 << 20, RW);
    const guest = createGuestStage1(mem, kvm, 0x1_0000_0000, 0x1_0010_0000, { granule: 4, ias: 48, oas: 40 }, 1);
    guest.map(0x7000_0000, 0x3_0000_0000, 0x1000, RW); // the guest maps an IPA KVM has not backed yet
    const dn = drv.createDomain('nested', guest, dk);
    drv.attach(dn, [{ id: 3 }]);
    drv.setFaultHandler(dk, (f) => {
      expect(Number(f.ipafar)).toBe(0x3_0000_0000);
      expect((f.fsynr0 >>> 16) & 0xff).toBe(dn.cbndx); // FSYNR0.S1CBNDX
      kvm.map(0x3_0000_0000, 0xc000_0000, 0x1000, RW);
      return 'retry';
    });
    const o = smmu.dma(3, 0x7000_0040, 'r', false);
    expect(o.kind).toBe('stall');
    expect(o.kind === 'stall' && smmu.pending(o.tag)).toEqual({ kind: 'pa', pa: 0xc000_0040 });
  });
});
