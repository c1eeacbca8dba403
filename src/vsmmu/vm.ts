/**
 * A virtual machine as KVM sees it for device assignment: memslots (IPA
 * ranges backed by host physical memory) and the VM's stage-2 tables, built
 * from the memslots by KVM (the host owns stage 2).
 */

import type { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, createStage2, type PageTable } from '../pgtable/builder.js';
import type { GranuleKiB } from '../pgtable/geometry.js';
import type { TableMemory } from '../pgtable/table-memory.js';

export interface Memslot {
  /** Guest-physical base and size. */
  ipa: number;
  size: number;
  /** Host-physical backing. */
  pa: number;
}

export interface VmOptions {
  vmid: number;
  memslots: Memslot[];
  /** Where KVM keeps the VM's stage-2 tables (host physical memory). */
  hostTables: TableMemory;
  granule?: GranuleKiB;
  /** IPA size in bits (VTCR.T0SZ = 64 - ipaBits). */
  ipaBits?: number;
  /** Host output address size. */
  paBits?: number;
}

export class Vm {
  readonly vmid: number;
  readonly memslots: Memslot[];
  /** KVM's stage-2 tables for this VM (IPA -> PA). */
  readonly stage2: PageTable;

  constructor(
    readonly mem: PhysMem,
    opts: VmOptions,
  ) {
    this.vmid = opts.vmid;
    this.memslots = opts.memslots.map((m) => ({ ...m }));
    this.stage2 = createStage2(opts.hostTables, { granule: opts.granule ?? 4, ias: opts.ipaBits ?? 40, oas: opts.paBits ?? 48 }, opts.vmid);
    for (const m of this.memslots) this.stage2.map(m.ipa, m.pa, m.size, PROT_READ | PROT_WRITE | PROT_CACHE);
  }

  /** The host-physical address backing `ipa` (from the memslots, not the tables), or -1. */
  memslotPa(ipa: number): number {
    for (const m of this.memslots) if (ipa >= m.ipa && ipa < m.ipa + m.size) return m.pa + (ipa - m.ipa);
    return -1;
  }
}
