/**
 * The SMMUv2 device model (Arm IHI 0062): the register interface a driver
 * programs, stream matching, context banks, context and global faults with
 * stall and RESUME, TLB maintenance and address-translation operations.
 * Translation itself is the walker of src/walk, fed with each context bank's
 * configuration decoded once (and again after any register write that feeds
 * it).
 *
 * The model never throws out of a register access or a transaction: reserved
 * values, unsupported configurations and out-of-range indexes behave as
 * described next to each case, and `lastError` says what was wrong.
 */

import type { LayerClock } from './layers.js';
import { NoCache, type InvalidationScope, type TranslationCache } from '../cache/interface.js';
import type { PhysMem } from '../memory/phys.js';
import { PA_SIZE_BITS, type GranuleKiB } from '../pgtable/geometry.js';
import { Regime, RegimeError, decodeStage1, decodeStage2, tg0ToGranule } from '../pgtable/regime.js';
import {
  ACC_EXEC,
  ACC_READ,
  ACC_UNPRIV,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_ADDRESS_SIZE,
  FAULT_EXTERNAL,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  WalkResult,
} from '../walk/result.js';
import { translate, walkStage1 } from '../walk/walk.js';
import { decodeIds, type SmmuFeatures } from './id.js';
import * as R from './regs.js';

export type Access = 'r' | 'w' | 'x';

/** What became of one transaction. */
export type DmaOutcome =
  /** Completed at `pa` (a bypassed upper-half input keeps the walker's signed form: 2^64 + pa). */
  | { kind: 'pa'; pa: number }
  | { kind: 'abort'; reason: string }
  | { kind: 'stall'; tag: number };

export interface SmmuEvents {
  /** A context fault was recorded in bank `cb` with SCTLR.CFIE set (the context interrupt). */
  contextFault: (cb: number, fsr: number) => void;
  /** A global fault was recorded with sCR0.GFIE set (the global interrupt). */
  globalFault: (sgfsr: number) => void;
  /** A transaction stalled in bank `cb` (SCTLR.CFCFG = 1). */
  stall: (cb: number, tag: number) => void;
}

interface Txn {
  tag: number;
  sid: number;
  va: number;
  acc: Access;
  priv: boolean;
  outcome: DmaOutcome | null;
}

/** One context bank's registers (SMMU_CBn_*). 64-bit registers are held as two words. */
class ContextBank {
  sctlr = 0;
  actlr = 0;
  tcr2 = 0;
  ttbr0 = [0, 0];
  ttbr1 = [0, 0];
  tcr = 0;
  contextidr = 0;
  mair0 = 0;
  mair1 = 0;
  par = [0, 0];
  fsr = 0;
  far = [0, 0];
  fsynr0 = 0;
  fsynr1 = 0;
  ipafar = [0, 0];
  /** The stalled transaction (FSR.SS = 1), if any. */
  stalled: Txn | null = null;
  /** Transactions held behind it when SCTLR.HUPCF = 0. */
  held: Txn[] = [];
}

/** A bank's decoded configuration: what a transaction that reaches it gets. */
interface BankContext {
  /** 'translate': walk `regime`; 'bypass': output = input; 'invalid': a configuration the model cannot use. */
  mode: 'translate' | 'bypass' | 'invalid';
  regime: Regime;
  /** CBAR.TYPE 2: stage 1, then every access faults at stage 2. */
  s2Fault: boolean;
  /** The bank that records stage-2 faults (the nested bank's CBAR.CBNDX), or -1 for this bank. */
  s2Bank: number;
  /** A register value the walker cannot use (reserved TG, SL0, TxSZ): stage and reason; faults at level 0. */
  configFaultStage: number;
  error: string;
  vmid: number;
  asid: number;
}

const TWO32 = 4294967296;

/** Sign-extends a 64-bit value given as two words into the walker's signed-number VA convention. */
function signedVa(lo: number, hi: number): number {
  return (hi | 0) * TWO32 + (lo >>> 0);
}

function psEncodingCapped(bits: number, capBits: number): number {
  const b = Math.min(bits, capBits);
  let enc = 0;
  for (let i = 0; i < 6; i++) if (PA_SIZE_BITS[i]! <= b) enc = i;
  return enc;
}

const FSR_BIT_OF_FAULT: Record<number, number> = {
  [FAULT_TRANSLATION]: R.FSR_TF,
  [FAULT_ACCESS_FLAG]: R.FSR_AFF,
  [FAULT_PERMISSION]: R.FSR_PF,
  [FAULT_EXTERNAL]: R.FSR_EF,
  [FAULT_ADDRESS_SIZE]: R.FSR_ASF,
};

export class Smmu {
  readonly features: SmmuFeatures;
  readonly mem: PhysMem;
  cache: TranslationCache;
  /** The last thing the model refused or could not use, for diagnostics. */
  lastError = '';

  // GR0
  private scr0 = R.sCR0_CLIENTPD;
  private sacr = 0;
  private sgfsr = 0;
  private sgfar = [0, 0];
  private sgfsynr0 = 0;
  private sgfsynr1 = 0;
  private sgfsynr2 = 0;
  private gpar = [0, 0];
  private readonly smr: Uint32Array;
  private readonly s2cr: Uint32Array;
  private readonly smrIdMask: number;
  // GR1
  private readonly cbar: Uint32Array;
  private readonly cbfrsynra: Uint32Array;
  private readonly cba2r: Uint32Array;
  // Context banks
  private readonly cbs: ContextBank[];
  private readonly contexts: Array<BankContext | null>;

  private nextTag = 1;
  /** Interrupts raised during a transaction, delivered when it returns (as an IRQ arrives after the fact). */
  private readonly irqs: Array<() => void> = [];
  private delivering = false;
  private readonly txns = new Map<number, Txn>();
  private readonly res = new WalkResult();
  private readonly listeners: { [K in keyof SmmuEvents]: Array<SmmuEvents[K]> } = { contextFault: [], globalFault: [], stall: [] };

  /** Counts of what happened, for reports. */
  /** Time per layer of every `dma()` when set (see layers.ts); null: off. */
  layers: LayerClock | null = null;
  readonly stats = { transactions: 0, translated: 0, bypassed: 0, aborted: 0, stalls: 0, contextFaults: 0, globalFaults: 0, tlbi: 0, syncs: 0 };

  constructor(ids: { id0: number; id1: number; id2: number }, mem: PhysMem, cache: TranslationCache = new NoCache()) {
    this.features = decodeIds(ids.id0, ids.id1, ids.id2);
    this.mem = mem;
    this.cache = cache;
    const f = this.features;
    this.smrIdMask = (1 << Math.min(f.numSidB, 16)) - 1;
    this.smr = new Uint32Array(f.sms ? f.numSmrg : 0);
    // S2CRs reset UNKNOWN (IHI 0062); this model resets them to TYPE = fault, the safe choice.
    this.s2cr = new Uint32Array(f.numS2cr).fill(R.S2CR_TYPE_FAULT << R.S2CR_TYPE_SHIFT);
    this.cbar = new Uint32Array(f.numCb);
    this.cbfrsynra = new Uint32Array(f.numCb);
    this.cba2r = new Uint32Array(f.numCb);
    this.cbs = Array.from({ length: f.numCb }, () => new ContextBank());
    this.contexts = new Array<BankContext | null>(f.numCb).fill(null);
  }

  /** Subscribes to fault and stall events (the SMMU's interrupts). Returns an unsubscribe function. */
  on<K extends keyof SmmuEvents>(event: K, handler: SmmuEvents[K]): () => void {
    const list = this.listeners[event] as Array<SmmuEvents[K]>;
    list.push(handler);
    return () => {
      const i = list.indexOf(handler);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Size of the register space: two halves of NUMPAGE pages each. */
  get registerSpaceBytes(): number {
    return 2 * this.features.numPage * (1 << this.features.pageShift);
  }

  /** Byte offset of context bank `n`'s page. */
  cbOffset(n: number): number {
    return (this.features.numPage + n) << this.features.pageShift;
  }

  // ---------------------------------------------------------------- registers

  /** Reads the 32-bit register at byte offset `off`. Unimplemented locations read as zero. */
  read32(off: number): number {
    const f = this.features;
    const page = Math.floor(off / (1 << f.pageShift));
    const r = off % (1 << f.pageShift);
    if (off < 0 || off % 4 !== 0 || off >= this.registerSpaceBytes) return this.bad(`read32 at 0x${off.toString(16)} is outside the register space or misaligned`, 0);
    if (page === 0) return this.readGr0(r) >>> 0;
    if (page === 1) return this.readGr1(r) >>> 0;
    const cb = page - f.numPage;
    if (cb >= 0 && cb < f.numCb) return this.readCb(cb, r) >>> 0;
    return 0;
  }

  /** Reads a 64-bit register (or two adjacent 32-bit ones) as a BigInt. */
  read64(off: number): bigint {
    // Like write64: all 8 bytes must lie inside the register space (a read at -4 must not return sCR0 as its top half).
    if (!(off >= 0 && off % 4 === 0 && off + 8 <= this.registerSpaceBytes)) return this.bad(`read64 at 0x${off.toString(16)} is outside the register space or misaligned`, 0n);
    const lo = this.read32(off);
    const hi = this.read32(off + 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Writes the 32-bit register at byte offset `off`. Writes to read-only or unimplemented locations are ignored. */
  write32(off: number, value: number): void {
    this.write(off, value >>> 0, 0, false);
  }

  /** Writes a 64-bit register (or two adjacent 32-bit ones). */
  write64(off: number, value: bigint | number): void {
    // A number converts like write32's ToUint32: truncated, NaN and infinities as 0 (BigInt() would throw).
    const v = BigInt.asUintN(64, typeof value === 'bigint' ? value : BigInt(Number.isFinite(value) ? Math.trunc(value) : 0));
    this.write(off, Number(v & 0xffffffffn), Number(v >> 32n), true);
  }

  private bad<T>(msg: string, ret: T): T {
    this.lastError = msg;
    return ret;
  }

  private write(off: number, lo: number, hi: number, is64: boolean): void {
    const f = this.features;
    if (off < 0 || off % 4 !== 0 || off + (is64 ? 8 : 4) > this.registerSpaceBytes) {
      this.bad(`write at 0x${off.toString(16)} is outside the register space or misaligned`, undefined);
      return;
    }
    const page = Math.floor(off / (1 << f.pageShift));
    const r = off % (1 << f.pageShift);
    if (page === 0) {
      if (is64 && r === R.GR0_sGFAR) {
        this.sgfar = [lo, hi];
        return;
      }
      if (r >= R.GR0_GATS1UR && r <= R.GR0_GATS12PW + 4) {
        // A 64-bit write, or a 32-bit write to the low half (upper bits zero).
        if ((r & 4) === 0) this.gats(r, lo, is64 ? hi : 0);
        return;
      }
      this.writeGr0(r, lo);
      if (is64) this.writeGr0(r + 4, hi);
      return;
    }
    if (page === 1) {
      this.writeGr1(r, lo);
      if (is64) this.writeGr1(r + 4, hi);
      return;
    }
    const cb = page - f.numPage;
    if (cb >= 0 && cb < f.numCb) this.writeCb(cb, r, lo, hi, is64);
  }

  private readGr0(r: number): number {
    const f = this.features;
    switch (r) {
      case R.GR0_sCR0:
        return this.scr0;
      case R.GR0_sACR:
        return this.sacr;
      case R.GR0_IDR0:
        return f.id0;
      case R.GR0_IDR0 + 4:
        return f.id1;
      case R.GR0_IDR0 + 8:
        return f.id2;
      case R.GR0_sGFAR:
        return this.sgfar[0]!;
      case R.GR0_sGFAR + 4:
        return this.sgfar[1]!;
      case R.GR0_sGFSR:
        return this.sgfsr;
      case R.GR0_sGFSYNR0:
        return this.sgfsynr0;
      case R.GR0_sGFSYNR1:
        return this.sgfsynr1;
      case R.GR0_sGFSYNR2:
        return this.sgfsynr2;
      case R.GR0_sTLBGSTATUS:
        // GSACTIVE (bit 0) stays set until every earlier global invalidation is complete.
        return this.cache.syncComplete() ? 0 : 1;
      case R.GR0_GPAR:
        return this.gpar[0]!;
      case R.GR0_GPAR + 4:
        return this.gpar[1]!;
      case R.GR0_GATSR:
        return 0;
    }
    if (r >= R.GR0_SMR && r < R.GR0_SMR + 4 * this.smr.length) return this.smr[(r - R.GR0_SMR) >> 2]!;
    if (r >= R.GR0_S2CR && r < R.GR0_S2CR + 4 * this.s2cr.length) return this.s2cr[(r - R.GR0_S2CR) >> 2]!;
    return 0;
  }

  private writeGr0(r: number, v: number): void {
    switch (r) {
      case R.GR0_sCR0:
        this.scr0 = v >>> 0;
        this.invalidateContexts();
        return;
      case R.GR0_sACR:
        this.sacr = v >>> 0;
        return;
      case R.GR0_sGFSR:
        // Write-1-to-clear.
        this.sgfsr = (this.sgfsr & ~(v & R.sGFSR_W1C)) >>> 0;
        return;
      case R.GR0_sGFSRRESTORE:
        this.sgfsr = v >>> 0;
        return;
      case R.GR0_sGFAR:
        this.sgfar[0] = v;
        return;
      case R.GR0_sGFAR + 4:
        this.sgfar[1] = v;
        return;
      case R.GR0_sGFSYNR0:
        this.sgfsynr0 = v >>> 0;
        return;
      case R.GR0_sGFSYNR1:
        this.sgfsynr1 = v >>> 0;
        return;
      case R.GR0_sGFSYNR2:
        this.sgfsynr2 = v >>> 0;
        return;
      case R.GR0_TLBIVMID:
        this.tlbi({ kind: 'vmid', vmid: v & 0xffff });
        return;
      case R.GR0_TLBIALLNSNH:
      case R.GR0_TLBIALLH:
        this.tlbi({ kind: 'all' });
        return;
      case R.GR0_sTLBGSYNC:
        this.stats.syncs++;
        return;
    }
    if (r >= R.GR0_SMR && r < R.GR0_SMR + 4 * this.smr.length) {
      // Unimplemented ID and MASK bits are RAZ/WI (the driver probes the widths this way).
      const m = this.smrIdMask;
      this.smr[(r - R.GR0_SMR) >> 2] = ((v & R.SMR_VALID) | (((v >>> R.SMR_MASK_SHIFT) & m) << R.SMR_MASK_SHIFT) | (v & m)) >>> 0;
      return;
    }
    if (r >= R.GR0_S2CR && r < R.GR0_S2CR + 4 * this.s2cr.length) {
      this.s2cr[(r - R.GR0_S2CR) >> 2] = v & 0x3fffffff;
      return;
    }
  }

  private readGr1(r: number): number {
    const n = this.features.numCb;
    if (r >= R.GR1_CBAR && r < R.GR1_CBAR + 4 * n) return this.cbar[(r - R.GR1_CBAR) >> 2]!;
    if (r >= R.GR1_CBFRSYNRA && r < R.GR1_CBFRSYNRA + 4 * n) return this.cbfrsynra[(r - R.GR1_CBFRSYNRA) >> 2]!;
    if (r >= R.GR1_CBA2R && r < R.GR1_CBA2R + 4 * n) return this.cba2r[(r - R.GR1_CBA2R) >> 2]!;
    return 0;
  }

  private writeGr1(r: number, v: number): void {
    const f = this.features;
    const n = f.numCb;
    if (r >= R.GR1_CBAR && r < R.GR1_CBAR + 4 * n) {
      const i = (r - R.GR1_CBAR) >> 2;
      // Banks below NUMS2CB support stage 2 only: their CBAR.TYPE is fixed at 0 (stage 2 context).
      this.cbar[i] = i < f.numS2Cb ? v & ~(3 << R.CBAR_TYPE_SHIFT) : v >>> 0;
      this.invalidateContexts();
      return;
    }
    if (r >= R.GR1_CBFRSYNRA && r < R.GR1_CBFRSYNRA + 4 * n) {
      this.cbfrsynra[(r - R.GR1_CBFRSYNRA) >> 2] = v & 0xffff;
      return;
    }
    if (r >= R.GR1_CBA2R && r < R.GR1_CBA2R + 4 * n) {
      // VMID16 is RAZ/WI without IDR2.VMID16.
      this.cba2r[(r - R.GR1_CBA2R) >> 2] = (f.vmid16 ? v : v & 0xffff) >>> 0;
      this.invalidateContexts();
    }
  }

  private readCb(n: number, r: number): number {
    const b = this.cbs[n]!;
    switch (r) {
      case R.CB_SCTLR:
        return b.sctlr;
      case R.CB_ACTLR:
        return b.actlr;
      case R.CB_TCR2:
        return b.tcr2;
      case R.CB_TTBR0:
        return b.ttbr0[0]!;
      case R.CB_TTBR0 + 4:
        return b.ttbr0[1]!;
      case R.CB_TTBR1:
        return b.ttbr1[0]!;
      case R.CB_TTBR1 + 4:
        return b.ttbr1[1]!;
      case R.CB_TCR:
        return b.tcr;
      case R.CB_CONTEXTIDR:
        return b.contextidr;
      case R.CB_MAIR0:
        return b.mair0;
      case R.CB_MAIR1:
        return b.mair1;
      case R.CB_PAR:
        return b.par[0]!;
      case R.CB_PAR + 4:
        return b.par[1]!;
      case R.CB_FSR:
        return b.fsr;
      case R.CB_FAR:
        return b.far[0]!;
      case R.CB_FAR + 4:
        return b.far[1]!;
      case R.CB_FSYNR0:
        return b.fsynr0;
      case R.CB_FSYNR1:
        return b.fsynr1;
      case R.CB_IPAFAR:
        return b.ipafar[0]!;
      case R.CB_IPAFAR + 4:
        return b.ipafar[1]!;
      case R.CB_TLBSTATUS:
        // SACTIVE (bit 0) stays set until every earlier invalidation for this bank is complete.
        return this.cache.syncComplete() ? 0 : 1;
      case R.CB_ATSR:
        // Address translation operations complete at once: ACTIVE reads 0.
        return 0;
    }
    return 0;
  }

  private writeCb(n: number, r: number, lo: number, hi: number, is64: boolean): void {
    const b = this.cbs[n]!;
    switch (r) {
      case R.CB_SCTLR:
        b.sctlr = lo >>> 0;
        this.invalidateContexts();
        return;
      case R.CB_ACTLR:
        b.actlr = lo >>> 0;
        return;
      case R.CB_RESUME:
        this.resume(n, (lo & R.RESUME_TNR) !== 0);
        this.deliverIrqs();
        return;
      case R.CB_TCR2:
        b.tcr2 = lo >>> 0;
        this.invalidateContexts();
        return;
      case R.CB_TCR:
        b.tcr = lo >>> 0;
        this.invalidateContexts();
        return;
      case R.CB_CONTEXTIDR:
        b.contextidr = lo >>> 0;
        return;
      case R.CB_MAIR0:
        b.mair0 = lo >>> 0;
        return;
      case R.CB_MAIR1:
        b.mair1 = lo >>> 0;
        return;
      case R.CB_FSR:
        // Fault bits and MULTI are write-1-to-clear; SS is cleared only by a RESUME write.
        b.fsr = (b.fsr & ~(lo & R.FSR_W1C)) >>> 0;
        return;
      case R.CB_FSRRESTORE:
        b.fsr = lo >>> 0;
        return;
      case R.CB_FSYNR0:
        b.fsynr0 = lo >>> 0;
        return;
      case R.CB_FSYNR1:
        b.fsynr1 = lo >>> 0;
        return;
      case R.CB_TLBIASID:
        this.tlbi({ kind: 'asid', vmid: this.bankVmid(n), asid: lo & 0xffff });
        return;
      case R.CB_TLBIALL:
        this.tlbi(this.cbarType(n) === R.CBAR_TYPE_S2_TRANS ? { kind: 'vmid', vmid: this.bankVmid(n) } : { kind: 'context', cb: n, vmid: this.bankVmid(n) });
        return;
      case R.CB_TLBSYNC:
        this.stats.syncs++;
        return;
    }
    // 64-bit registers: a 64-bit write, or 32-bit writes to either half.
    const half = r & 4;
    const base = r - half;
    const setPair = (pair: number[]): void => {
      // A 64-bit write at the high half (offset 4 mod 8) writes only that half: it must not
      // put its low word into the register's low half, below the bytes addressed.
      if (is64 && half === 0) {
        pair[0] = lo;
        pair[1] = hi;
      } else pair[half >> 2] = lo;
    };
    switch (base) {
      case R.CB_TTBR0:
        setPair(b.ttbr0);
        this.invalidateContexts();
        return;
      case R.CB_TTBR1:
        setPair(b.ttbr1);
        this.invalidateContexts();
        return;
      case R.CB_PAR:
        setPair(b.par);
        return;
      case R.CB_FAR:
        setPair(b.far);
        return;
      case R.CB_IPAFAR:
        setPair(b.ipafar);
        return;
    }
    // Maintenance and translation operations: a 64-bit write, or a 32-bit write to the low half
    // (upper bits zero); a 32-bit write to the high half does nothing.
    if (half !== 0) return;
    const h = is64 ? hi : 0;
    switch (base) {
      case R.CB_TLBIVA:
      case R.CB_TLBIVAL:
      case R.CB_TLBIVAA:
      case R.CB_TLBIVAAL: {
        // AArch64 format: VA[55:12] in bits [43:0], ASID in bits [63:48].
        const pageNum = (h & 0xfff) * TWO32 + (lo >>> 0);
        let va = pageNum * 4096;
        if ((h & 0x800) !== 0) va -= 2 ** 56; // VA[55] set: the TTBR1 half (sign-extended)
        const allAsids = base === R.CB_TLBIVAA || base === R.CB_TLBIVAAL;
        this.tlbi({
          kind: 'va',
          vmid: this.bankVmid(n),
          asid: (h >>> 16) & 0xffff,
          allAsids,
          va,
          leaf: base === R.CB_TLBIVAL || base === R.CB_TLBIVAAL,
        });
        return;
      }
      case R.CB_TLBIIPAS2:
      case R.CB_TLBIIPAS2L:
        // IPA[47:12] in bits [35:0].
        this.tlbi({ kind: 'ipa', vmid: this.bankVmid(n), ipa: ((h & 0xf) * TWO32 + (lo >>> 0)) * 4096, leaf: base === R.CB_TLBIIPAS2L });
        return;
      case R.CB_ATS1PR:
      case R.CB_ATS1PW:
      case R.CB_ATS1UR:
      case R.CB_ATS1UW:
        this.ats1(n, signedVa(lo & ~0xfff, h), base === R.CB_ATS1PW || base === R.CB_ATS1UW ? 'w' : 'r', base === R.CB_ATS1PR || base === R.CB_ATS1PW);
        return;
    }
  }

  private tlbi(scope: InvalidationScope): void {
    this.stats.tlbi++;
    this.cache.invalidate(scope);
  }

  // ---------------------------------------------------------------- context decode

  private invalidateContexts(): void {
    this.contexts.fill(null);
  }

  private cbarType(n: number): number {
    return (this.cbar[n]! >>> R.CBAR_TYPE_SHIFT) & 3;
  }

  /** The VMID a bank's entries are tagged with: CBA2R.VMID16 with sCR0.VMID16EN, else CBAR.VMID; a nested bank uses its stage-2 bank's. */
  private bankVmid(n: number): number {
    if (this.cbarType(n) === R.CBAR_TYPE_S1_TRANS_S2_TRANS) {
      const s2 = (this.cbar[n]! >>> R.CBAR_CBNDX_SHIFT) & 0xff;
      if (s2 < this.features.numCb && s2 !== n) n = s2;
    }
    if ((this.scr0 & R.sCR0_VMID16EN) !== 0 && this.features.vmid16) return this.cba2r[n]! >>> R.CBA2R_VMID16_SHIFT;
    return this.cbar[n]! & R.CBAR_VMID_MASK;
  }

  private granuleOk(g: GranuleKiB): boolean {
    return this.features.granules[g];
  }

  /** Decodes bank `n` (cached until a register that feeds it is written). */
  context(n: number): BankContext {
    const cached = this.contexts[n];
    if (cached !== null && cached !== undefined) return cached;
    const ctx = this.decodeContext(n);
    this.contexts[n] = ctx;
    return ctx;
  }

  private decodeContext(n: number): BankContext {
    const f = this.features;
    const b = this.cbs[n]!;
    const type = this.cbarType(n);
    const ctx: BankContext = { mode: 'translate', regime: new Regime(), s2Fault: false, s2Bank: -1, configFaultStage: 0, error: '', vmid: this.bankVmid(n), asid: 0 };
    const invalid = (why: string): BankContext => {
      ctx.mode = 'invalid';
      ctx.error = `context bank ${n}: ${why}`;
      return ctx;
    };
    const enabled = (b.sctlr & R.SCTLR_M) !== 0;
    if (type === R.CBAR_TYPE_S2_TRANS) {
      if (!f.s2ts) return invalid('CBAR.TYPE 0 (stage 2) but IDR0.S2TS is 0');
      if (!enabled) {
        ctx.mode = 'bypass';
        return ctx;
      }
      this.fillStage2(n, ctx);
      return ctx;
    }
    if (n < f.numS2Cb) return invalid('a stage-2-only bank (below IDR1.NUMS2CB) with a stage-1 CBAR.TYPE');
    if (!f.s1ts) return invalid(`CBAR.TYPE ${type} needs stage 1 but IDR0.S1TS is 0`);
    if (type === R.CBAR_TYPE_S1_TRANS_S2_TRANS && !f.nts) return invalid('CBAR.TYPE 3 (nested) but IDR0.NTS is 0');
    if ((this.cba2r[n]! & R.CBA2R_VA64) === 0) return invalid('CBA2R.VA64 is 0: the AArch32 context formats are not modelled');
    ctx.s2Fault = type === R.CBAR_TYPE_S1_TRANS_S2_FAULT;
    const nested = type === R.CBAR_TYPE_S1_TRANS_S2_TRANS;
    if (nested) {
      const s2 = (this.cbar[n]! >>> R.CBAR_CBNDX_SHIFT) & 0xff;
      if (s2 >= f.numCb) return invalid(`CBAR.CBNDX ${s2} names no context bank`);
      if (this.cbarType(s2) !== R.CBAR_TYPE_S2_TRANS) return invalid(`CBAR.CBNDX ${s2} is not a stage-2 (TYPE 0) bank`);
      ctx.s2Bank = s2;
      if ((this.cbs[s2]!.sctlr & R.SCTLR_M) !== 0) this.fillStage2(s2, ctx);
    }
    if (enabled) this.fillStage1(n, ctx, nested ? f.iasBits : f.oasBits);
    if (!ctx.regime.s1 && !ctx.regime.s2 && ctx.configFaultStage === 0 && !ctx.s2Fault) ctx.mode = 'bypass';
    // Cache entries are tagged with the bank's VMID (the one its TLB maintenance names) and index.
    ctx.regime.vmid = ctx.vmid;
    ctx.regime.cb = n;
    return ctx;
  }

  private fillStage1(n: number, ctx: BankContext, capBits: number): void {
    const b = this.cbs[n]!;
    const tcr = b.tcr;
    try {
      const tg0 = tg0ToGranule((tcr >>> 14) & 3);
      if (!this.granuleOk(tg0)) throw new RegimeError(`TCR.TG0 selects a ${tg0} KiB granule, which IDR2 does not support`);
      const asidMask = (b.tcr2 & R.TCR2_AS) !== 0 ? 0xffff : 0xff;
      const a1 = ((tcr >>> 22) & 1) === 1;
      decodeStage1(
        {
          T0SZ: tcr & 0x3f,
          EPD0: (tcr >>> 7) & 1,
          TG0: (tcr >>> 14) & 3,
          T1SZ: (tcr >>> 16) & 0x3f,
          EPD1: (tcr >>> 23) & 1,
          TG1: (tcr >>> 30) & 3,
          IPS: psEncodingCapped(PA_SIZE_BITS[Math.min(b.tcr2 & R.TCR2_PASIZE_MASK, 5)]!, capBits),
          TTBR0: (b.ttbr0[1]! & 0xffff) * TWO32 + (b.ttbr0[0]! >>> 0),
          TTBR1: (b.ttbr1[1]! & 0xffff) * TWO32 + (b.ttbr1[0]! >>> 0),
          WXN: (b.sctlr & R.SCTLR_WXN) !== 0 ? 1 : 0,
        },
        ctx.regime,
      );
      ctx.asid = ((a1 ? b.ttbr1[1]! : b.ttbr0[1]!) >>> 16) & asidMask;
      ctx.regime.asid = ctx.asid;
    } catch (e) {
      ctx.configFaultStage = 1;
      ctx.error = `context bank ${n}: ${(e as Error).message}`;
    }
  }

  private fillStage2(n: number, ctx: BankContext): void {
    const b = this.cbs[n]!;
    const tcr = b.tcr;
    try {
      const g = tg0ToGranule((tcr >>> 14) & 3);
      if (!this.granuleOk(g)) throw new RegimeError(`TCR.TG0 selects a ${g} KiB granule, which IDR2 does not support`);
      decodeStage2(
        {
          T0SZ: tcr & 0x3f,
          SL0: (tcr >>> 6) & 3,
          TG0: (tcr >>> 14) & 3,
          PS: psEncodingCapped(PA_SIZE_BITS[Math.min((tcr >>> 16) & 7, 5)]!, this.features.oasBits),
          VTTBR: (b.ttbr0[1]! & 0xffff) * TWO32 + (b.ttbr0[0]! >>> 0),
          VMID: this.bankVmid(n),
        },
        ctx.regime,
      );
    } catch (e) {
      ctx.configFaultStage = 2;
      ctx.error = `context bank ${n}: ${(e as Error).message}`;
    }
  }

  // ---------------------------------------------------------------- transactions

  /**
   * One transaction from stream `sid` at input address `va` (a signed number:
   * TTBR1-half addresses are negative), of kind `acc`, privileged or not.
   */
  dma(sid: number, va: number, acc: Access, priv: boolean): DmaOutcome {
    this.stats.transactions++;
    const txn: Txn = { tag: 0, sid, va, acc, priv, outcome: null };
    const clock = this.layers;
    if (clock !== null) return this.timedDma(clock, txn);
    const o = this.process(txn);
    this.deliverIrqs();
    return o;
  }

  /** `dma` with the time of each layer added to `clock` (see layers.ts). */
  private timedDma(clock: LayerClock, txn: Txn): DmaOutcome {
    const t0 = performance.now();
    const o = this.process(txn);
    const t1 = performance.now();
    this.deliverIrqs();
    const t2 = performance.now();
    clock.transactions++;
    clock.irqMs += t2 - t1;
    clock.totalMs += t2 - t0;
    return o;
  }

  /**
   * Runs the interrupt handlers raised so far. Handlers may write registers (clear FSR, write
   * RESUME), which may raise more interrupts; those run in the same loop.
   */
  deliverIrqs(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.irqs.length > 0) this.irqs.shift()!();
    } finally {
      this.delivering = false;
    }
  }

  /** The outcome of a stalled transaction with `tag`: still `stall`, or what became of it after RESUME. */
  pending(tag: number): DmaOutcome | null {
    const t = this.txns.get(tag);
    if (t === undefined) return null;
    return t.outcome ?? { kind: 'stall', tag };
  }

  /** Tags of the transactions currently held (stalled or queued behind a stall). */
  get stalledTags(): number[] {
    return [...this.txns.values()].filter((t) => t.outcome === null).map((t) => t.tag);
  }

  private finish(txn: Txn, o: DmaOutcome): DmaOutcome {
    if (o.kind === 'pa') this.stats.translated++;
    else if (o.kind === 'abort') this.stats.aborted++;
    if (o.kind !== 'stall') txn.outcome = o;
    return o;
  }

  /** Bypass: the output address is the input address, unchanged (an upper-half VA stays negative). */
  private bypass(txn: Txn): DmaOutcome {
    this.stats.bypassed++;
    return this.finish(txn, { kind: 'pa', pa: txn.va });
  }

  /** The S2CR index for `sid`: >= 0, -1 when no SMR matches, -2 on a stream match conflict. */
  streamIndex(sid: number): number {
    const f = this.features;
    if (!f.sms) return sid >= 0 && sid < this.s2cr.length ? sid : -1;
    let found = -1;
    for (let i = 0; i < this.smr.length; i++) {
      const s = this.smr[i]!;
      if ((s & R.SMR_VALID) === 0) continue;
      const id = s & this.smrIdMask;
      const mask = (s >>> R.SMR_MASK_SHIFT) & this.smrIdMask;
      if (((sid ^ id) & ~mask) === 0) {
        if (found >= 0) return -2;
        found = i;
      }
    }
    return found;
  }

  private process(txn: Txn): DmaOutcome {
    if ((this.scr0 & R.sCR0_CLIENTPD) !== 0) return this.bypass(txn);
    let idx: number;
    if (this.layers === null) idx = this.streamIndex(txn.sid);
    else {
      const t0 = performance.now();
      idx = this.streamIndex(txn.sid);
      this.layers.streamMatchMs += performance.now() - t0;
    }
    if (idx === -2) {
      // Stream match conflict: a global fault when sCR0.SMCFCFG = 1; otherwise UNPREDICTABLE,
      // and this model terminates the transaction without recording it.
      if ((this.scr0 & R.sCR0_SMCFCFG) !== 0) return this.globalFault(txn, R.sGFSR_SMCF);
      return this.finish(txn, { kind: 'abort', reason: 'stream match conflict' });
    }
    if (idx === -1) {
      if ((this.scr0 & R.sCR0_USFCFG) !== 0) return this.globalFault(txn, R.sGFSR_USF);
      return this.bypass(txn);
    }
    const s2cr = this.s2cr[idx]!;
    const type = (s2cr >>> R.S2CR_TYPE_SHIFT) & 3;
    if (type === R.S2CR_TYPE_BYPASS) return this.bypass(txn);
    if (type !== R.S2CR_TYPE_TRANS) return this.finish(txn, { kind: 'abort', reason: `S2CR${idx}.TYPE is fault` });
    const cb = s2cr & R.S2CR_CBNDX_MASK;
    if (cb >= this.features.numCb) return this.globalFault(txn, R.sGFSR_UCBF);
    return this.inBank(txn, cb);
  }

  private inBank(txn: Txn, cb: number): DmaOutcome {
    const bank = this.cbs[cb]!;
    if (bank.stalled !== null && (bank.sctlr & R.SCTLR_HUPCF) === 0) {
      // No hit under a previous context fault: hold the transaction until the stall resolves.
      this.hold(txn);
      bank.held.push(txn);
      return { kind: 'stall', tag: txn.tag };
    }
    const ctx = this.context(cb);
    if (ctx.mode === 'bypass') return this.bypass(txn);
    if (ctx.mode === 'invalid') {
      this.lastError = ctx.error;
      return this.finish(txn, { kind: 'abort', reason: ctx.error });
    }
    const res = this.res;
    if (ctx.configFaultStage !== 0) {
      // A register value the walk cannot use: a Translation fault at level 0 of that stage.
      res.reset();
      res.fault = FAULT_TRANSLATION;
      res.faultStage = ctx.configFaultStage;
      res.faultLevel = 0;
      this.lastError = ctx.error;
      return this.contextFault(txn, ctx.configFaultStage === 2 && ctx.s2Bank >= 0 ? ctx.s2Bank : cb, cb, res);
    }
    const acc = (txn.acc === 'w' ? ACC_WRITE : txn.acc === 'x' ? ACC_EXEC : ACC_READ) | (txn.priv ? 0 : ACC_UNPRIV);
    let ok: boolean;
    const clock = this.layers;
    if (clock === null) ok = this.cache.translate(this.mem, ctx.regime, cb, txn.sid, txn.va, acc, res);
    else {
      const t0 = performance.now();
      ok = this.cache.translate(this.mem, ctx.regime, cb, txn.sid, txn.va, acc, res);
      const dt = performance.now() - t0;
      // Answered without reading a descriptor: a cache hit; otherwise it walked.
      if (res.reads === 0) {
        clock.hits++;
        clock.hitMs += dt;
      } else {
        clock.walks++;
        clock.walkMs += dt;
      }
    }
    if (ok) {
      if (ctx.s2Fault) return this.finish(txn, { kind: 'abort', reason: `context bank ${cb}: CBAR.TYPE 2, stage 2 faults every access` });
      return this.finish(txn, { kind: 'pa', pa: res.pa });
    }
    const recordIn = res.faultStage === 2 && ctx.s2Bank >= 0 ? ctx.s2Bank : cb;
    if (clock === null) return this.contextFault(txn, recordIn, cb, res);
    const t0 = performance.now();
    const o = this.contextFault(txn, recordIn, cb, res);
    clock.faults++;
    clock.faultMs += performance.now() - t0;
    return o;
  }

  private hold(txn: Txn): void {
    if (txn.tag === 0) {
      txn.tag = this.nextTag++;
      this.txns.set(txn.tag, txn);
    }
    txn.outcome = null;
  }

  /** Records a context fault in bank `n` (the stage-1 bank is `s1cb`) and terminates or stalls the transaction. */
  private contextFault(txn: Txn, n: number, s1cb: number, res: WalkResult): DmaOutcome {
    const b = this.cbs[n]!;
    this.stats.contextFaults++;
    const bit = FSR_BIT_OF_FAULT[res.fault] ?? R.FSR_TF;
    const busy = (b.fsr & (R.FSR_FAULT_BITS | R.FSR_SS)) !== 0;
    if (busy) {
      // A fault is already recorded: note that another arrived, keep the first syndrome.
      b.fsr = (b.fsr | R.FSR_MULTI) >>> 0;
    } else {
      b.fsr = (b.fsr | bit) >>> 0;
      const va = BigInt.asUintN(64, BigInt(txn.va));
      b.far = [Number(va & 0xffffffffn), Number(va >> 32n)];
      let syn = res.faultLevel & R.FSYNR0_PLVL_MASK;
      if (txn.acc === 'w') syn |= R.FSYNR0_WNR;
      if (txn.priv) syn |= R.FSYNR0_PNU;
      if (txn.acc === 'x') syn |= R.FSYNR0_IND;
      if (res.s1ptw) syn |= R.FSYNR0_PTWF;
      if (n !== s1cb) syn |= (s1cb & 0xff) << R.FSYNR0_S1CBNDX_SHIFT;
      b.fsynr0 = syn >>> 0;
      if (res.faultStage === 2 && res.faultIpa >= 0) {
        // IPAFAR holds IPA[47:12] of the faulting stage-2 access; bits [11:0] read as zero
        // (as HPFAR_EL2.FIPA does for a CPU).
        const ipa = res.faultIpa - (res.faultIpa % 4096);
        b.ipafar = [ipa >>> 0, Math.floor(ipa / TWO32)];
      }
      this.cbfrsynra[n] = txn.sid & 0xffff;
    }
    const irq = (b.sctlr & R.SCTLR_CFIE) !== 0;
    if ((b.sctlr & R.SCTLR_CFCFG) !== 0 && (b.stalled === null || b.stalled === txn)) {
      b.fsr = (b.fsr | R.FSR_SS) >>> 0;
      b.stalled = txn;
      this.hold(txn);
      this.stats.stalls++;
      const tag = txn.tag;
      for (const h of this.listeners.stall) this.irqs.push(() => h(n, tag));
      if (irq) for (const h of this.listeners.contextFault) this.irqs.push(() => h(n, b.fsr));
      return { kind: 'stall', tag };
    }
    if (irq) for (const h of this.listeners.contextFault) this.irqs.push(() => h(n, b.fsr));
    return this.finish(txn, { kind: 'abort', reason: `context fault in bank ${n}` });
  }

  private globalFault(txn: Txn, bit: number): DmaOutcome {
    this.stats.globalFaults++;
    if ((this.sgfsr & 0x1ff) !== 0) {
      this.sgfsr = (this.sgfsr | R.sGFSR_MULTI) >>> 0;
    } else {
      this.sgfsr = (this.sgfsr | bit) >>> 0;
      const va = BigInt.asUintN(64, BigInt(txn.va));
      this.sgfar = [Number(va & 0xffffffffn), Number(va >> 32n)];
      this.sgfsynr0 = (txn.acc === 'w' ? R.sGFSYNR0_WNR : 0) | (txn.priv ? R.sGFSYNR0_PNU : 0) | (txn.acc === 'x' ? R.sGFSYNR0_IND : 0);
      this.sgfsynr1 = txn.sid & 0xffff;
      this.sgfsynr2 = 0;
    }
    if ((this.scr0 & R.sCR0_GFIE) !== 0) for (const h of this.listeners.globalFault) this.irqs.push(() => h(this.sgfsr));
    return this.finish(txn, { kind: 'abort', reason: `global fault 0x${bit.toString(16)}` });
  }

  /** A write to SMMU_CBn_RESUME: retry (TnR = 0) or terminate (TnR = 1) the stalled transaction. */
  private resume(n: number, terminate: boolean): void {
    const b = this.cbs[n]!;
    const txn = b.stalled;
    if (txn === null) return;
    b.stalled = null;
    b.fsr = (b.fsr & ~R.FSR_SS) >>> 0;
    if (terminate) this.finish(txn, { kind: 'abort', reason: 'terminated by RESUME' });
    else this.process(txn);
    // Transactions held behind the stall go on, in order, until one stalls again.
    while (b.stalled === null && b.held.length > 0) this.process(b.held.shift()!);
  }

  // ---------------------------------------------------------------- address translation operations

  /**
   * Runs an address translation operation in bank `n`: stage 1 only (`both` false: ATS1*,
   * GATS1*; the result is the stage-1 output, an IPA for a nested bank, whose stage-1 table
   * addresses stage 2 still translates) or stages 1 and 2 (GATS12*). Returns the PAR value:
   * PA[47:12] on success, or F (bit 0) with the FSR bit of the fault. Faults are not recorded
   * in FSR.
   */
  private translationOp(n: number, va: number, acc: Access, priv: boolean, both: boolean): [number, number] {
    const fail = (bit: number): [number, number] => [(R.PAR_F | bit) >>> 0, 0];
    if (this.features.atosns || !this.features.s1ts) {
      this.lastError = 'address translation operations are not implemented (IDR0.ATOSNS)';
      return fail(R.FSR_TF);
    }
    if (n >= this.features.numCb) return fail(R.FSR_TF);
    const ctx = this.context(n);
    const res = this.res;
    res.reset();
    let ok: boolean;
    let out = va;
    if (ctx.mode === 'bypass') ok = true;
    else if (ctx.mode === 'invalid' || ctx.configFaultStage !== 0) ok = false;
    else {
      const acc2 = (acc === 'w' ? ACC_WRITE : ACC_READ) | (priv ? 0 : ACC_UNPRIV);
      if (both) {
        ok = translate(this.mem, ctx.regime, va, acc2, res) && !ctx.s2Fault;
        out = res.pa;
      } else if (!ctx.regime.s1) {
        ok = va >= 0;
      } else {
        ok = walkStage1(this.mem, ctx.regime, va, acc2, res, null) === 0;
        out = res.ipa;
      }
    }
    if (!ok) return fail(FSR_BIT_OF_FAULT[res.fault] ?? R.FSR_TF);
    const pa = out - (out % 4096);
    return [pa >>> 0, Math.floor(pa / TWO32)];
  }

  /** ATS1PR/PW/UR/UW in bank `n`: result in the bank's PAR. */
  private ats1(n: number, va: number, acc: Access, priv: boolean): void {
    this.cbs[n]!.par = this.translationOp(n, va, acc, priv, false);
  }

  /** GATS1* / GATS12* (GR0): bank from NDX[7:0], result in GPAR. */
  private gats(r: number, lo: number, hi: number): void {
    const n = lo & 0xff;
    const op = (r - R.GR0_GATS1UR) >> 3; // 0 UR, 1 UW, 2 PR, 3 PW, then the same for stages 1+2
    const write = (op & 1) === 1;
    const priv = (op & 2) === 2;
    if (n >= this.features.numCb) {
      this.lastError = `GATS NDX ${n} names no context bank`;
      this.gpar = [(R.PAR_F | R.FSR_TF) >>> 0, 0];
      return;
    }
    this.gpar = this.translationOp(n, signedVa(lo & ~0xfff, hi), write ? 'w' : 'r', priv, op >= 4);
  }
}
