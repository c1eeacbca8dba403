/**
 * The driver side: what Linux's arm-smmu driver does, written against the
 * SMMUv2 register interface only (an `Mmio` bus: 32- and 64-bit reads and
 * writes at byte offsets). Probe the ID registers, reset, allocate
 * stream-map entries (reuse if contained, refuse if overlapping) and context
 * banks (stage 2 from 0, stage 1 from NUMS2CB), program banks in the driver's
 * order, attach stream IDs, and do TLB maintenance with syncs. On top of
 * stall and RESUME it runs I/O page-fault handlers.
 */

import type { PageTable } from '../pgtable/builder.js';
import * as R from '../smmu/regs.js';

/** The register interface a driver sees. */
export interface Mmio {
  read32(off: number): number;
  write32(off: number, value: number): void;
  read64(off: number): bigint;
  write64(off: number, value: bigint | number): void;
}

export class DriverError extends Error {
  constructor(
    message: string,
    readonly code: 'ENODEV' | 'EINVAL' | 'ENOSPC' | 'ETIMEDOUT' | 'EBUSY',
  ) {
    super(message);
    this.name = 'DriverError';
  }
}

export interface ProbedSmmu {
  s1: boolean;
  s2: boolean;
  nested: boolean;
  streamMatching: boolean;
  translationOps: boolean;
  numMappingGroups: number;
  /** Stream-ID bits the SMRs implement (probed by writing all-ones to SMR.ID and SMR.MASK). */
  streamIdMask: number;
  smrMaskMask: number;
  pageShift: number;
  numPage: number;
  numContextBanks: number;
  numS2ContextBanks: number;
  vmid16: boolean;
  ias: number;
  oas: number;
  ubs: number;
}

export type DomainStage = 's1' | 's2' | 'nested';

/** A translation domain: one context bank and its tables. */
export interface Domain {
  stage: DomainStage;
  cbndx: number;
  /** For nested domains: the stage-2 bank whose tables provide stage 2. */
  s2cbndx: number;
  asid: number;
  vmid: number;
  /** Stage-1 tables (s1 and nested), stage-2 tables (s2). */
  pgtable: PageTable;
  streams: Array<{ id: number; mask: number }>;
}

/** What a context-fault handler learns (arm_smmu_context_fault): FSR, FSYNR0, FAR, CBFRSYNRA. */
export interface FaultInfo {
  cbndx: number;
  fsr: number;
  fsynr0: number;
  far: bigint;
  ipafar: bigint;
  streamId: number;
  write: boolean;
  stalled: boolean;
  level: number;
  /** FSYNR0.PTWF: a stage-2 fault on a stage-1 table walk. */
  s1ptw: boolean;
}

/** An I/O page-fault handler: fix what it can (map the page), then answer how to resume. */
export type IopfHandler = (fault: FaultInfo) => 'retry' | 'terminate';

export interface IopfStats {
  faults: number;
  retried: number;
  terminated: number;
  /** Handler latency, ms: total and max. */
  totalMs: number;
  maxMs: number;
}

/** The size of the leaf that maps `iova` (the step io-pgtable's gathered invalidation uses), else the granule. */
export function leafStep(pt: PageTable, iova: number): number {
  const leaf = pt.lookup(iova);
  return leaf === null ? 2 ** pt.gShift : 2 ** leaf.shift;
}

const TLB_SPIN_COUNT = 10;
const TLB_LOOP_TIMEOUT = 1_000_000;

export interface DriverOptions {
  /** arm-smmu.disable_bypass: unmatched streams fault (sCR0.USFCFG) and free S2CRs fault. */
  disableBypass?: boolean;
  /** Stall on context faults (SCTLR.CFCFG) so that I/O page-fault handlers can resolve them. */
  stallOnFault?: boolean;
  /** SCTLR.HUPCF: later transactions proceed while one is stalled. */
  hitUnderFault?: boolean;
}

export class ArmSmmuDriver {
  probed!: ProbedSmmu;
  private smeCount: number[] = [];
  private smrs: Array<{ id: number; mask: number; valid: boolean }> = [];
  private readonly contextMap = new Set<number>();
  private readonly domains = new Map<number, Domain>();
  private readonly handlers = new Map<number, IopfHandler>();
  private readonly delegates = new Map<number, (cbndx: number) => void>();
  readonly iopf: IopfStats = { faults: 0, retried: 0, terminated: 0, totalMs: 0, maxMs: 0 };
  /** Register accesses made, by kind (for cost accounting). */
  readonly accesses = { reads: 0, writes: 0, tlbi: 0, syncs: 0 };

  constructor(
    readonly mmio: Mmio,
    readonly opts: DriverOptions = {},
  ) {}

  private r32(off: number): number {
    this.accesses.reads++;
    return this.mmio.read32(off) >>> 0;
  }

  private w32(off: number, v: number): void {
    this.accesses.writes++;
    this.mmio.write32(off, v >>> 0);
  }

  private w64(off: number, v: bigint | number): void {
    this.accesses.writes++;
    this.mmio.write64(off, v);
  }

  cb(n: number): number {
    return (this.probed.numPage + n) << this.probed.pageShift;
  }

  private gr1(): number {
    return 1 << this.probed.pageShift;
  }

  // ---------------------------------------------------------------- probe and reset

  /** arm_smmu_device_cfg_probe: reads IDR0..2 and derives what the driver may use. */
  probe(): ProbedSmmu {
    const id0 = this.r32(R.GR0_IDR0);
    const id1 = this.r32(R.GR0_IDR0 + 4);
    const id2 = this.r32(R.GR0_IDR0 + 8);
    const sizes = [32, 36, 40, 42, 44, 48];
    const size = (c: number): number => sizes[Math.min(c, 5)]!;
    const sms = ((id0 >>> 27) & 1) === 1;
    const numSidB = (id0 >>> 9) & 0xf;
    const numCb = id1 & 0xff;
    const numS2Cb = (id1 >>> 16) & 0xff;
    const p: ProbedSmmu = {
      s1: ((id0 >>> 30) & 1) === 1,
      s2: ((id0 >>> 29) & 1) === 1,
      nested: ((id0 >>> 28) & 1) === 1,
      streamMatching: sms,
      translationOps: ((id0 >>> 26) & 1) === 0,
      numMappingGroups: sms ? id0 & 0xff : 1 << numSidB,
      streamIdMask: (1 << numSidB) - 1,
      smrMaskMask: 0,
      pageShift: ((id1 >>> 31) & 1) === 1 ? 16 : 12,
      numPage: 1 << (((id1 >>> 28) & 7) + 1),
      numContextBanks: numCb,
      numS2ContextBanks: numS2Cb,
      vmid16: ((id2 >>> 15) & 1) === 1,
      ias: size(id2 & 0xf),
      oas: size((id2 >>> 4) & 0xf),
      ubs: size((id2 >>> 8) & 0xf),
    };
    if (!p.s1 && !p.s2) throw new DriverError('no translation support', 'ENODEV');
    if (sms && p.numMappingGroups === 0) throw new DriverError('stream-matching supported, but no SMRs present', 'ENODEV');
    if (numS2Cb > numCb) throw new DriverError(`impossible number of S2 context banks (${numS2Cb} > ${numCb})`, 'ENODEV');
    this.probed = p;
    this.smeCount = new Array<number>(p.numMappingGroups).fill(0);
    this.smrs = Array.from({ length: p.numMappingGroups }, () => ({ id: 0, mask: 0, valid: false }));
    return p;
  }

  private s2crInit(): number {
    return (this.opts.disableBypass ? R.S2CR_TYPE_FAULT : R.S2CR_TYPE_BYPASS) << R.S2CR_TYPE_SHIFT;
  }

  /** arm_smmu_device_reset, then arm_smmu_test_smr_masks. */
  reset(): void {
    const p = this.probed;
    this.w32(R.GR0_sGFSR, this.r32(R.GR0_sGFSR));
    for (let i = 0; i < p.numMappingGroups; i++) this.writeSme(i);
    for (let n = 0; n < p.numContextBanks; n++) {
      this.w32(this.cb(n) + R.CB_SCTLR, 0);
      this.w32(this.cb(n) + R.CB_FSR, (R.FSR_FAULT_BITS | R.FSR_MULTI | R.FSR_SS) >>> 0);
    }
    this.w32(R.GR0_TLBIALLH, 0);
    this.w32(R.GR0_TLBIALLNSNH, 0);
    let scr0 = R.sCR0_GFRE | R.sCR0_GFIE | (1 << 4) | (1 << 5) | (1 << 11) | (1 << 12);
    if (this.opts.disableBypass) scr0 |= R.sCR0_USFCFG;
    if (p.vmid16) scr0 |= R.sCR0_VMID16EN;
    this.globalSync();
    this.w32(R.GR0_sCR0, scr0);
    if (p.streamMatching) this.testSmrMasks();
  }

  /** Learns the implemented SMR.ID and SMR.MASK widths from read-backs (they are RAZ/WI). */
  private testSmrMasks(): void {
    const p = this.probed;
    const i = this.smrs.findIndex((s) => !s.valid);
    if (i < 0) return;
    this.w32(R.GR0_SMR + 4 * i, p.streamIdMask);
    p.streamIdMask = this.r32(R.GR0_SMR + 4 * i) & 0xffff;
    this.w32(R.GR0_SMR + 4 * i, p.streamIdMask << R.SMR_MASK_SHIFT);
    p.smrMaskMask = (this.r32(R.GR0_SMR + 4 * i) >>> R.SMR_MASK_SHIFT) & 0xffff;
    this.w32(R.GR0_SMR + 4 * i, 0);
  }

  // ---------------------------------------------------------------- stream map

  /** arm_smmu_find_sme: reuse an SMR that contains (id, mask), refuse one that overlaps, else the first free. */
  findSme(id: number, mask: number): number {
    const p = this.probed;
    if (!p.streamMatching) return id;
    if ((id & ~p.streamIdMask) !== 0) throw new DriverError(`stream ID 0x${id.toString(16)} is wider than the SMRs (mask 0x${p.streamIdMask.toString(16)})`, 'EINVAL');
    if ((mask & ~p.smrMaskMask) !== 0) throw new DriverError(`SMR mask 0x${mask.toString(16)} is wider than SMR.MASK (0x${p.smrMaskMask.toString(16)})`, 'EINVAL');
    let free = -1;
    for (let i = 0; i < this.smrs.length; i++) {
      const s = this.smrs[i]!;
      if (!s.valid) {
        if (free < 0) free = i;
        continue;
      }
      // Contained: an existing entry already matches everything (id, mask) does.
      if ((mask & s.mask) === mask && ((id ^ s.id) & ~s.mask) === 0) return i;
      // Overlapping: some stream ID would match both entries (a stream match conflict).
      if (((id ^ s.id) & ~(s.mask | mask)) === 0) throw new DriverError(`stream 0x${id.toString(16)}/0x${mask.toString(16)} overlaps SMR ${i}`, 'EINVAL');
    }
    if (free < 0) throw new DriverError('no free stream-map entries (SMRs exhausted)', 'ENOSPC');
    return free;
  }

  /** Writes S2CR first, then SMR, so that a newly valid SMR never points at a stale S2CR. */
  private writeSme(i: number, s2cr = this.s2crInit()): void {
    this.w32(R.GR0_S2CR + 4 * i, s2cr);
    if (this.probed.streamMatching) {
      const s = this.smrs[i]!;
      this.w32(R.GR0_SMR + 4 * i, s.valid ? ((R.SMR_VALID | (s.mask << R.SMR_MASK_SHIFT) | s.id) >>> 0) : 0);
    }
  }

  // ---------------------------------------------------------------- context banks and domains

  /** Allocates a context bank: stage-2 domains from 0, stage-1 and nested from NUMS2CB. */
  allocContextBank(stage: DomainStage): number {
    const p = this.probed;
    const start = stage === 's2' ? 0 : p.numS2ContextBanks;
    for (let n = start; n < p.numContextBanks; n++) {
      if (!this.contextMap.has(n)) {
        this.contextMap.add(n);
        return n;
      }
    }
    throw new DriverError(`no free context bank for a ${stage} domain`, 'ENOSPC');
  }

  /**
   * Creates a domain over `pgtable` and programs its bank (arm_smmu_write_context_bank order:
   * CBA2R, CBAR, TCR2, TCR, TTBRs, MAIR, SCTLR). A nested domain names the stage-2 domain
   * whose tables give stage 2.
   */
  createDomain(stage: DomainStage, pgtable: PageTable, s2domain?: Domain): Domain {
    const p = this.probed;
    if (stage === 's2' && !p.s2) throw new DriverError('stage 2 not supported', 'EINVAL');
    if (stage !== 's2' && !p.s1) throw new DriverError('stage 1 not supported', 'EINVAL');
    if (stage === 'nested' && (!p.nested || s2domain === undefined || s2domain.stage !== 's2')) {
      throw new DriverError('a nested domain needs nesting support and a stage-2 domain', 'EINVAL');
    }
    if ((stage === 's2') !== (pgtable.stage === 2)) throw new DriverError(`a ${stage} domain needs stage-${stage === 's2' ? 2 : 1} tables`, 'EINVAL');
    const cbndx = this.allocContextBank(stage);
    const d: Domain = {
      stage,
      cbndx,
      s2cbndx: stage === 'nested' ? s2domain!.cbndx : -1,
      asid: stage === 's2' ? 0 : pgtable.asid || cbndx,
      vmid: stage === 's2' ? pgtable.vmid || cbndx + 1 : stage === 'nested' ? s2domain!.vmid : 0,
      pgtable,
      streams: [],
    };
    this.domains.set(cbndx, d);
    this.writeContextBank(d);
    return d;
  }

  private writeContextBank(d: Domain): void {
    const p = this.probed;
    const base = this.cb(d.cbndx);
    const gr1 = this.gr1();
    const pt = d.pgtable;
    const vmid16 = p.vmid16 ? d.vmid << R.CBA2R_VMID16_SHIFT : 0;
    this.w32(gr1 + R.GR1_CBA2R + 4 * d.cbndx, (R.CBA2R_VA64 | vmid16) >>> 0);
    let cbar: number;
    if (d.stage === 's2') cbar = (R.CBAR_TYPE_S2_TRANS << R.CBAR_TYPE_SHIFT) | (d.vmid & 0xff);
    else if (d.stage === 'nested') cbar = (R.CBAR_TYPE_S1_TRANS_S2_TRANS << R.CBAR_TYPE_SHIFT) | (d.s2cbndx << R.CBAR_CBNDX_SHIFT);
    // Stage 1 with stage 2 bypass: BPSHCFG = NSH (3), MemAttr = write-back (0xf).
    else cbar = (R.CBAR_TYPE_S1_TRANS_S2_BYPASS << R.CBAR_TYPE_SHIFT) | (0xf << 12) | (3 << 8);
    this.w32(gr1 + R.GR1_CBAR + 4 * d.cbndx, cbar);
    if (d.stage === 's2') {
      const f = pt.stage2Fields();
      // VTCR format: RES1 bit 31, PS, TG0, SH0/ORGN0/IRGN0 (inner shareable, write-back), SL0, T0SZ.
      const tcr = (1 << 31) | (f.PS << 16) | (f.TG0 << 14) | (3 << 12) | (1 << 10) | (1 << 8) | (f.SL0 << 6) | f.T0SZ;
      this.w32(base + R.CB_TCR, tcr >>> 0);
      this.w64(base + R.CB_TTBR0, BigInt(f.VTTBR));
    } else {
      const f = pt.stage1Fields();
      // TCR2: PASize, SEP = 7 (upstream), AS (16-bit ASID).
      this.w32(base + R.CB_TCR2, (f.IPS | (7 << 15) | R.TCR2_AS) >>> 0);
      // TCR: EPD1 (TTBR1 unused), TG0, SH0/ORGN0/IRGN0, T0SZ.
      const tcr = (1 << 23) | (f.TG0 << 14) | (3 << 12) | (1 << 10) | (1 << 8) | f.T0SZ;
      this.w32(base + R.CB_TCR, tcr >>> 0);
      this.w64(base + R.CB_TTBR0, (BigInt(d.asid) << 48n) | BigInt(f.TTBR0));
      this.w64(base + R.CB_TTBR1, BigInt(d.asid) << 48n);
      // MAIR: {0: NC 0x44, 1: WBRWA 0xff, 2: DEVICE 0x04, 3: inner NC outer WBRWA 0xf4} (io-pgtable's choice).
      this.w32(base + R.CB_MAIR0, 0xf404ff44);
      this.w32(base + R.CB_MAIR1, 0);
    }
    let sctlr = R.SCTLR_CFIE | R.SCTLR_CFRE | R.SCTLR_AFE | R.SCTLR_TRE | R.SCTLR_M;
    if (d.stage !== 's2') sctlr |= 1 << 12; // ASIDPNE
    if (this.opts.stallOnFault) sctlr |= R.SCTLR_CFCFG;
    if (this.opts.hitUnderFault) sctlr |= R.SCTLR_HUPCF;
    this.w32(base + R.CB_SCTLR, sctlr);
  }

  /** Attaches stream IDs (with SMR masks) to a domain: S2CR = translate to its bank. */
  attach(d: Domain, streams: Array<{ id: number; mask?: number }>): number[] {
    const idxs: number[] = [];
    const claimed: number[] = [];
    try {
      for (const s of streams) {
        const mask = s.mask ?? 0;
        const i = this.findSme(s.id, mask);
        if (this.smeCount[i] === 0) {
          this.smrs[i] = { id: s.id, mask, valid: true };
          claimed.push(i);
        }
        this.smeCount[i]!++;
        idxs.push(i);
      }
    } catch (e) {
      for (const i of idxs) this.smeCount[i]!--;
      for (const i of claimed) this.smrs[i] = { id: 0, mask: 0, valid: false };
      throw e;
    }
    for (const i of new Set(idxs)) this.writeSme(i, (R.S2CR_TYPE_TRANS << R.S2CR_TYPE_SHIFT) | d.cbndx);
    for (const s of streams) d.streams.push({ id: s.id, mask: s.mask ?? 0 });
    return idxs;
  }

  /**
   * Points physical stream `id` at a bank (S2CR translate), at bypass, or at fault, claiming a
   * stream-map entry for it the first time (used by a vSMMU to route assigned devices).
   */
  routeStream(id: number, route: { cbndx: number } | 'bypass' | 'fault'): number {
    const i = this.findSme(id, 0);
    if (this.probed.streamMatching && !this.smrs[i]!.valid) {
      this.smrs[i] = { id, mask: 0, valid: true };
      this.smeCount[i] = 1;
    }
    const s2cr =
      route === 'bypass'
        ? R.S2CR_TYPE_BYPASS << R.S2CR_TYPE_SHIFT
        : route === 'fault'
          ? R.S2CR_TYPE_FAULT << R.S2CR_TYPE_SHIFT
          : (R.S2CR_TYPE_TRANS << R.S2CR_TYPE_SHIFT) | route.cbndx;
    this.writeSme(i, s2cr);
    return i;
  }

  /** Hands bank `cbndx`'s context interrupts to another owner (a vSMMU that bound a guest bank to it). */
  delegateBank(cbndx: number, handler: (cbndx: number) => void): void {
    this.delegates.set(cbndx, handler);
  }

  /** Detaches every stream of a domain and frees its bank (SCTLR = 0). */
  destroyDomain(d: Domain): void {
    for (const s of d.streams) {
      const i = this.probed.streamMatching ? this.smrs.findIndex((x) => x.valid && x.id === s.id && x.mask === s.mask) : s.id;
      if (i < 0) continue;
      this.smeCount[i] = Math.max(0, this.smeCount[i]! - 1);
      if (this.smeCount[i] === 0) {
        if (this.probed.streamMatching) this.smrs[i] = { id: 0, mask: 0, valid: false };
        this.writeSme(i);
      }
    }
    d.streams = [];
    this.w32(this.cb(d.cbndx) + R.CB_SCTLR, 0);
    this.contextMap.delete(d.cbndx);
    this.domains.delete(d.cbndx);
    this.handlers.delete(d.cbndx);
  }

  // ---------------------------------------------------------------- TLB maintenance

  /** Context sync: write TLBSYNC, poll TLBSTATUS.SACTIVE (spin, then back off) until it clears. */
  sync(cbndx: number): void {
    this.accesses.syncs++;
    this.pollSync(this.cb(cbndx) + R.CB_TLBSYNC, this.cb(cbndx) + R.CB_TLBSTATUS);
  }

  /** Global sync: sTLBGSYNC / sTLBGSTATUS.GSACTIVE. */
  globalSync(): void {
    this.accesses.syncs++;
    this.pollSync(R.GR0_sTLBGSYNC, R.GR0_sTLBGSTATUS);
  }

  private pollSync(syncReg: number, statusReg: number): void {
    this.w32(syncReg, 0xffffffff);
    let spins = 0;
    for (let delay = 1; delay < TLB_LOOP_TIMEOUT; delay *= 2) {
      for (let i = 0; i < TLB_SPIN_COUNT; i++) {
        if ((this.r32(statusReg) & 1) === 0) return;
        spins++;
      }
    }
    throw new DriverError(`TLB sync timed out after ${spins} polls -- SMMU may be deadlocked`, 'ETIMEDOUT');
  }

  /** Stage-1 flush all (arm_smmu_tlb_inv_context_s1): TLBIASID, then sync. */
  flushAsid(d: Domain): void {
    this.accesses.tlbi++;
    this.w32(this.cb(d.cbndx) + R.CB_TLBIASID, d.asid);
    this.sync(d.cbndx);
  }

  /** Stage-2 flush all (arm_smmu_tlb_inv_context_s2): GR0 TLBIVMID, then global sync. */
  flushVmid(d: Domain): void {
    this.accesses.tlbi++;
    this.w32(R.GR0_TLBIVMID, d.vmid);
    this.globalSync();
  }

  /**
   * Invalidates [iova, iova+size) one `step` (default: the granule; io-pgtable passes the leaf
   * size) at a time: stage 1 with TLBIVA (or TLBIVAL for
   * leaf-only), value (iova >> 12) | (asid << 48); stage 2 with TLBIIPAS2(L), value ipa >> 12.
   * Then a context sync (unless `sync` is false, for gathered invalidations).
   */
  flushRange(d: Domain, iova: number, size: number, leaf: boolean, sync = true, step = 2 ** d.pgtable.gShift): void {
    const granule = step;
    const base = this.cb(d.cbndx);
    for (let a = iova; a < iova + size; a += granule) {
      this.accesses.tlbi++;
      if (d.stage === 's2') this.w64(base + (leaf ? R.CB_TLBIIPAS2L : R.CB_TLBIIPAS2), BigInt(Math.floor(a / 4096)));
      else this.w64(base + (leaf ? R.CB_TLBIVAL : R.CB_TLBIVA), (BigInt(d.asid) << 48n) | BigInt(Math.floor(a / 4096)));
    }
    if (sync) this.sync(d.cbndx);
  }

  /** Unmaps and invalidates (strict mode: TLBI + sync per unmap). Returns bytes unmapped. */
  unmap(d: Domain, iova: number, size: number): number {
    const step = leafStep(d.pgtable, iova);
    const n = d.pgtable.unmap(iova, size);
    if (n > 0) this.flushRange(d, iova, n, false, true, step);
    return n;
  }

  /** Maps (new mappings need no invalidation: nothing can be cached for an invalid entry). */
  map(d: Domain, iova: number, pa: number, size: number, prot: number): void {
    d.pgtable.map(iova, pa, size, prot);
  }

  /** arm_smmu_iova_to_phys_hard: ATS1PR, poll ATSR, read PAR. Null on a fault. */
  iovaToPhysHard(d: Domain, iova: number): number | null {
    if (!this.probed.translationOps) throw new DriverError('no address translation operations (IDR0.ATOSNS)', 'EINVAL');
    const base = this.cb(d.cbndx);
    this.w64(base + R.CB_ATS1PR, BigInt(iova - (iova % 4096)));
    for (let i = 0; i < 1000 && (this.r32(base + R.CB_ATSR) & 1) !== 0; i++);
    const par = this.mmio.read64(base + R.CB_PAR);
    if ((par & 1n) !== 0n) return null;
    return Number(par & 0xfffffffff000n) + (iova % 4096);
  }

  // ---------------------------------------------------------------- faults

  /** Installs an I/O page-fault handler for a domain (needs stallOnFault). */
  setFaultHandler(d: Domain, handler: IopfHandler): void {
    this.handlers.set(d.cbndx, handler);
  }

  /**
   * The context interrupt (arm_smmu_context_fault): read FSR, FSYNR0, FAR, CBFRSYNRA; clear
   * FSR; if the transaction stalled and a handler is installed, run it and RESUME (retry or
   * terminate). Returns what was read, or null when FSR showed no fault.
   */
  contextFaultIrq(cbndx: number): FaultInfo | null {
    const delegate = this.delegates.get(cbndx);
    if (delegate !== undefined) {
      delegate(cbndx);
      return null;
    }
    const base = this.cb(cbndx);
    const fsr = this.r32(base + R.CB_FSR);
    if ((fsr & (R.FSR_FAULT_BITS | R.FSR_MULTI | R.FSR_SS)) === 0) return null;
    const fsynr0 = this.r32(base + R.CB_FSYNR0);
    const info: FaultInfo = {
      cbndx,
      fsr,
      fsynr0,
      far: this.mmio.read64(base + R.CB_FAR),
      ipafar: this.mmio.read64(base + R.CB_IPAFAR),
      streamId: this.r32(this.gr1() + R.GR1_CBFRSYNRA + 4 * cbndx) & 0xffff,
      write: (fsynr0 & R.FSYNR0_WNR) !== 0,
      stalled: (fsr & R.FSR_SS) !== 0,
      level: fsynr0 & R.FSYNR0_PLVL_MASK,
      s1ptw: (fsynr0 & R.FSYNR0_PTWF) !== 0,
    };
    // Clear the fault bits first (FSR must be clear before RESUME).
    this.w32(base + R.CB_FSR, fsr);
    if (info.stalled) {
      const handler = this.handlers.get(cbndx);
      let answer: 'retry' | 'terminate' = 'terminate';
      if (handler !== undefined) {
        const t0 = performance.now();
        answer = handler(info);
        const ms = performance.now() - t0;
        this.iopf.faults++;
        this.iopf.totalMs += ms;
        if (ms > this.iopf.maxMs) this.iopf.maxMs = ms;
      }
      if (answer === 'retry') this.iopf.retried++;
      else this.iopf.terminated++;
      this.w32(base + R.CB_RESUME, answer === 'retry' ? 0 : R.RESUME_TNR);
    }
    return info;
  }

  /** The global interrupt (arm_smmu_global_fault): read and clear sGFSR. */
  globalFaultIrq(): { sgfsr: number; streamId: number; far: bigint } | null {
    const sgfsr = this.r32(R.GR0_sGFSR);
    if (sgfsr === 0) return null;
    const info = { sgfsr, streamId: this.r32(R.GR0_sGFSYNR1) & 0xffff, far: this.mmio.read64(R.GR0_sGFAR) };
    this.w32(R.GR0_sGFSR, sgfsr);
    return info;
  }

  domainOf(cbndx: number): Domain | undefined {
    return this.domains.get(cbndx);
  }
}
