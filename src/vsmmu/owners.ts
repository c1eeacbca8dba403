/**
 * Who owns the tables an SMMU walks, and what a change costs.
 *
 * Shared: the SMMU walks the CPU's own tables. KVM's stage-2 tables serve the
 * VM's devices as its vCPUs, and a guest process's stage-1 tables serve a
 * device bound to that process (shared virtual addressing). A CPU-side change
 * reaches the devices only as invalidations.
 *
 * Private: VFIO-style IOMMU tables kept beside the CPU's and mirrored from
 * every change: a second set of table pages, a second set of descriptor
 * writes, the same invalidations.
 *
 * Each owner counts, per change and in total, descriptor writes (both sets of
 * tables), TLB maintenance operations and syncs on the SMMU, and the table
 * pages in use.
 */

import { leafStep, type ArmSmmuDriver, type Domain } from '../driver/arm-smmu.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, createStage2, type PageTable } from '../pgtable/builder.js';
import type { TableMemory } from '../pgtable/table-memory.js';
import type { Vm } from './vm.js';

export type Ownership = 'shared' | 'private';

export interface ChangeCost {
  /** Descriptors written in every table set that had to change. */
  descriptorWrites: number;
  /** TLB maintenance operations written to the SMMU (TLBIVA, TLBIIPAS2, TLBIVMID, ...). */
  tlbi: number;
  /** Syncs (TLBSYNC / sTLBGSYNC) waited for. */
  syncs: number;
}

export interface OwnerCosts extends ChangeCost {
  changes: number;
  /** 4 KiB-equivalent pages of table memory the owner's table sets use. */
  tablePages: number;
}

abstract class CostCounter {
  protected readonly total: OwnerCosts = { changes: 0, descriptorWrites: 0, tlbi: 0, syncs: 0, tablePages: 0 };

  protected abstract tables(): PageTable[];
  protected abstract driver(): ArmSmmuDriver;

  /** Runs one change and returns what it cost. */
  protected measure(change: () => void): ChangeCost {
    const tabs = this.tables();
    const dw0 = tabs.reduce((a, t) => a + t.descriptorWrites, 0);
    const acc = this.driver().accesses;
    const t0 = acc.tlbi;
    const s0 = acc.syncs;
    change();
    const cost = {
      descriptorWrites: tabs.reduce((a, t) => a + t.descriptorWrites, 0) - dw0,
      tlbi: acc.tlbi - t0,
      syncs: acc.syncs - s0,
    };
    this.total.changes++;
    this.total.descriptorWrites += cost.descriptorWrites;
    this.total.tlbi += cost.tlbi;
    this.total.syncs += cost.syncs;
    return cost;
  }

  costs(): OwnerCosts {
    const memories = new Set<TableMemory>(this.tables().map((t) => t.tables));
    let bytes = 0;
    for (const m of memories) bytes += m.bytesInUse;
    return { ...this.total, tablePages: bytes / 4096 };
  }
}

export interface Stage2OwnerOptions {
  /** KVM's rule for combined stage 1+2 TLB entries: after IPA invalidations, invalidate the VMID (default true). */
  flushVmidAfterIpa?: boolean;
  /** Private mode: where VFIO keeps its stage-2 tables (separate from KVM's). */
  vfioTables?: TableMemory;
}

/** A VM's stage 2 as its assigned devices see it. */
export class Stage2Owner extends CostCounter {
  /** The tables the SMMU's stage-2 bank walks: KVM's (shared) or VFIO's (private). */
  readonly smmuTable: PageTable;
  readonly domain: Domain;
  private readonly flushVmid: boolean;

  constructor(
    readonly vm: Vm,
    readonly host: ArmSmmuDriver,
    readonly mode: Ownership,
    opts: Stage2OwnerOptions = {},
  ) {
    super();
    this.flushVmid = opts.flushVmidAfterIpa ?? true;
    if (mode === 'shared') this.smmuTable = vm.stage2;
    else {
      if (opts.vfioTables === undefined) throw new Error('a private stage-2 owner needs vfioTables');
      const s2 = vm.stage2;
      this.smmuTable = createStage2(opts.vfioTables, { granule: s2.granule, ias: s2.ias, oas: s2.oas }, vm.vmid);
      // VFIO_IOMMU_MAP_DMA of every memslot.
      for (const m of vm.memslots) this.smmuTable.map(m.ipa, m.pa, m.size, PROT_READ | PROT_WRITE | PROT_CACHE);
    }
    this.domain = host.createDomain('s2', this.smmuTable);
  }

  protected tables(): PageTable[] {
    return this.mode === 'shared' ? [this.vm.stage2] : [this.vm.stage2, this.smmuTable];
  }

  protected driver(): ArmSmmuDriver {
    return this.host;
  }

  /**
   * The host takes guest memory away at stage 2 (reclaim, migration, dirty logging's
   * write-protect-by-unmap): KVM's tables, VFIO's too when private, then TLBIIPAS2 per granule
   * and a sync, then (KVM's rule) TLBIVMID and a global sync.
   */
  unmap(ipa: number, size: number): ChangeCost {
    return this.measure(() => {
      const step = leafStep(this.smmuTable, ipa);
      const n = this.vm.stage2.unmap(ipa, size);
      if (this.mode === 'private') this.smmuTable.unmap(ipa, size);
      if (n > 0) {
        this.host.flushRange(this.domain, ipa, n, false, true, step);
        if (this.flushVmid) this.host.flushVmid(this.domain);
      }
    });
  }

  /** The host gives guest memory (back) at stage 2: new mappings need no invalidation. */
  map(ipa: number, pa: number, size: number): ChangeCost {
    return this.measure(() => {
      const prot = PROT_READ | PROT_WRITE | PROT_CACHE;
      this.vm.stage2.map(ipa, pa, size, prot);
      if (this.mode === 'private') this.smmuTable.map(ipa, pa, size, prot);
    });
  }
}

/**
 * A guest process's address space and a device that works in it. Shared: the
 * device's stage-1 domain walks the process's own page tables. Private: the
 * guest kernel keeps a separate IOMMU table for the device and mirrors every
 * mmap/munmap into it.
 */
export class Stage1Owner extends CostCounter {
  readonly domain: Domain;

  constructor(
    /** The process's CPU page tables (a guest stage 1 whose tables live at IPAs). */
    readonly process: PageTable,
    readonly guest: ArmSmmuDriver,
    readonly mode: Ownership,
    /** Private mode: the guest kernel's IOMMU table for the device. */
    readonly iommuTable?: PageTable,
  ) {
    super();
    if (mode === 'private' && iommuTable === undefined) throw new Error('a private stage-1 owner needs its own iommuTable');
    this.domain = guest.createDomain('s1', mode === 'shared' ? process : iommuTable!);
  }

  protected tables(): PageTable[] {
    return this.mode === 'shared' ? [this.process] : [this.process, this.iommuTable!];
  }

  protected driver(): ArmSmmuDriver {
    return this.guest;
  }

  /** mmap: the process maps [va, va+size) onto guest memory at `ipa`. */
  mmap(va: number, ipa: number, size: number, prot: number): ChangeCost {
    return this.measure(() => {
      this.process.map(va, ipa, size, prot);
      if (this.mode === 'private') this.iommuTable!.map(va, ipa, size, prot);
    });
  }

  /** munmap: unmap in the process (and the IOMMU table), then TLBIVA per page and a sync on the SMMU. */
  munmap(va: number, size: number): ChangeCost {
    return this.measure(() => {
      const step = leafStep(this.process, va);
      const n = this.process.unmap(va, size);
      if (this.mode === 'private') this.iommuTable!.unmap(va, size);
      if (n > 0) this.guest.flushRange(this.domain, va, n, false, true, step);
    });
  }
}
