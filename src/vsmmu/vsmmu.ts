/**
 * The guest-visible virtual SMMUv2 and the host side that backs it.
 *
 * The guest sees a stage-1-only SMMUv2 (IDR0.S1TS = 1, S2TS = NTS = 0) and
 * programs it with an ordinary driver: stream-map entries, stage-1 context
 * banks (TCR/TCR2/TTBRs holding IPAs of tables in its own memory), TLB
 * maintenance, stall and RESUME. The host traps every access:
 *
 * - the guest's registers live in a shadow instance of the same register
 *   model, so reads, RAZ/WI fields and write-1-to-clear behave exactly as on
 *   hardware;
 * - each guest context bank with a stage-1 type is bound to a physical nested
 *   bank (CBAR.TYPE 3) whose CBAR.CBNDX names the VM's stage-2 bank, which
 *   the host owns (KVM's tables); the guest's TCR/TTBR/MAIR/SCTLR writes are
 *   copied to it, its TLBIs, syncs, RESUMEs and ATS operations forwarded;
 * - guest stream IDs of assigned devices map to physical stream IDs; the
 *   guest's SMR/S2CR choices are re-applied to the physical stream map
 *   (translate through the bound bank; bypass = stage 2 only; fault);
 * - stage-1 faults in a bound bank are injected into the guest's shadow
 *   FSR/FAR/FSYNR0/CBFRSYNRA and raised as the guest's context interrupt;
 *   stage-2 faults stay with the host.
 */

import type { ArmSmmuDriver, Domain, Mmio } from '../driver/arm-smmu.js';
import { PhysMem } from '../memory/phys.js';
import { encodeIds } from '../smmu/id.js';
import * as R from '../smmu/regs.js';
import { Smmu } from '../smmu/smmu.js';
import type { Vm } from './vm.js';

export interface AssignedDevice {
  /** The stream ID the guest sees (its SMRs match this). */
  vsid: number;
  /** The physical stream ID the device's transactions carry. */
  psid: number;
}

export interface VSmmuOptions {
  /** Guest-visible context banks and SMRs. */
  contextBanks?: number;
  smrs?: number;
  /**
   * The VM's stage-2 domain on the physical SMMU. Default: a new one over KVM's own stage-2
   * tables (shared ownership); a Stage2Owner supplies a private (VFIO-style) one.
   */
  stage2Domain?: Domain;
}

export class VSmmu implements Mmio {
  /** The guest's view: a stage-1-only SMMUv2 register file. */
  readonly shadow: Smmu;
  /** The VM's stage-2 domain on the physical SMMU (host-owned). */
  readonly s2domain: Domain;
  /** Guest context bank -> physical nested bank. */
  private readonly bound = new Map<number, number>();
  private readonly guestOf = new Map<number, number>();
  private readonly listeners: Array<(cb: number) => void> = [];
  /** Register accesses the host trapped, and what it forwarded. */
  readonly traps = { reads: 0, writes: 0, forwarded: 0, injectedFaults: 0 };

  constructor(
    readonly vm: Vm,
    readonly phys: Smmu,
    readonly host: ArmSmmuDriver,
    readonly devices: AssignedDevice[],
    opts: VSmmuOptions = {},
  ) {
    const p = host.probed;
    if (!p.nested) throw new Error('the physical SMMU does not implement nesting (IDR0.NTS)');
    const ipaBits = vm.stage2.ias;
    const granules = ([4, 16, 64] as const).filter((g) => phys.features.granules[g]);
    this.shadow = new Smmu(
      encodeIds({
        s1: true,
        s2: false,
        nested: false,
        smrs: opts.smrs ?? 16,
        sidBits: 15,
        contextBanks: opts.contextBanks ?? 8,
        s2OnlyBanks: 0,
        pageKiB: 4,
        granules: [...granules],
        ias: ipaBits,
        oas: ipaBits,
        ubs: 48,
        vmid16: false,
        ats: p.translationOps,
      }),
      PhysMem.create({ regions: [{ base: 0, size: 65536 }] }),
    );
    this.s2domain = opts.stage2Domain ?? host.createDomain('s2', vm.stage2);
    // Until the guest programs its stream map, assigned devices get stage 2 only (the guest's reset state is bypass).
    for (const d of devices) host.routeStream(d.psid, { cbndx: this.s2domain.cbndx });
  }

  /** The guest's context interrupt (what its driver's IRQ handler is wired to). */
  onGuestContextFault(handler: (cb: number) => void): void {
    this.listeners.push(handler);
  }

  /** The physical bank bound to guest context bank `cb`, or -1. */
  physicalBank(cb: number): number {
    return this.bound.get(cb) ?? -1;
  }

  // ---------------------------------------------------------------- the guest's MMIO

  read32(off: number): number {
    this.traps.reads++;
    const fwd = this.forwardedRead(off);
    return fwd ?? this.shadow.read32(off);
  }

  read64(off: number): bigint {
    return (BigInt(this.read32(off + 4)) << 32n) | BigInt(this.read32(off));
  }

  write32(off: number, value: number): void {
    this.trapWrite(off, BigInt(value >>> 0), false);
  }

  write64(off: number, value: bigint | number): void {
    this.trapWrite(off, BigInt.asUintN(64, BigInt(value)), true);
  }

  private guestCb(off: number): { cb: number; reg: number } | null {
    const f = this.shadow.features;
    const page = Math.floor(off / (1 << f.pageShift));
    const cb = page - f.numPage;
    if (cb < 0 || cb >= f.numCb) return null;
    return { cb, reg: off % (1 << f.pageShift) };
  }

  private forwardedRead(off: number): number | null {
    if (off === R.GR0_sTLBGSTATUS) return this.phys.read32(R.GR0_sTLBGSTATUS);
    const g = this.guestCb(off);
    if (g === null) return null;
    const pcb = this.bound.get(g.cb);
    if (pcb !== undefined && (g.reg === R.CB_TLBSTATUS || g.reg === R.CB_ATSR)) return this.phys.read32(this.phys.cbOffset(pcb) + g.reg);
    return null;
  }

  private trapWrite(off: number, value: bigint, is64: boolean): void {
    this.traps.writes++;
    if (is64) this.shadow.write64(off, value);
    else this.shadow.write32(off, Number(value));
    const f = this.shadow.features;
    const gr1 = 1 << f.pageShift;
    if (off < gr1) {
      const streamMap = off === R.GR0_sCR0 || (off >= R.GR0_SMR && off < R.GR0_SMR + 4 * f.numSmrg) || (off >= R.GR0_S2CR && off < R.GR0_S2CR + 4 * f.numS2cr);
      if (streamMap) this.applyStreams();
      else if (off === R.GR0_TLBIALLNSNH || off === R.GR0_TLBIALLH) this.forward(R.GR0_TLBIVMID, BigInt(this.s2domain.vmid), false);
      else if (off === R.GR0_sTLBGSYNC) this.forward(R.GR0_sTLBGSYNC, 0n, false);
      return;
    }
    if (off < 2 * gr1) {
      const r = off - gr1;
      if (r >= R.GR1_CBAR && r < R.GR1_CBAR + 4 * f.numCb) {
        this.bindBank((r - R.GR1_CBAR) >> 2);
        this.applyStreams();
      } else if (r >= R.GR1_CBA2R && r < R.GR1_CBA2R + 4 * f.numCb) {
        const cb = (r - R.GR1_CBA2R) >> 2;
        const pcb = this.bound.get(cb);
        // The guest chooses the format (VA64); the VMID is the host's.
        if (pcb !== undefined) this.forward((1 << this.host.probed.pageShift) + R.GR1_CBA2R + 4 * pcb, value & BigInt(R.CBA2R_VA64), false);
      }
      return;
    }
    const g = this.guestCb(off);
    if (g === null) return;
    const pcb = this.bound.get(g.cb);
    if (pcb === undefined) return;
    const target = this.phys.cbOffset(pcb) + g.reg;
    if (g.reg === R.CB_RESUME) {
      // The shadow holds no stalled transaction: clear its SS here, and let the physical bank retry or terminate.
      const gbase = this.shadow.cbOffset(g.cb);
      this.shadow.write32(gbase + R.CB_FSRRESTORE, this.shadow.read32(gbase + R.CB_FSR) & ~R.FSR_SS);
      this.forward(target, value, is64);
      return;
    }
    switch (g.reg & ~4) {
      case R.CB_SCTLR & ~4: // SCTLR, ACTLR
      case R.CB_TCR2:
      case R.CB_TTBR0:
      case R.CB_TTBR1:
      case R.CB_TCR: // TCR, CONTEXTIDR
      case R.CB_MAIR0: // MAIR0, MAIR1
      case R.CB_TLBIVA:
      case R.CB_TLBIVAA:
      case R.CB_TLBIASID:
      case R.CB_TLBIALL:
      case R.CB_TLBIVAL:
      case R.CB_TLBIVAAL:
      case R.CB_TLBSYNC:
        this.forward(target, value, is64);
        return;
      case R.CB_ATS1PR:
      case R.CB_ATS1PW:
      case R.CB_ATS1UR:
      case R.CB_ATS1UW:
        // The physical nested bank's ATS1 gives the stage-1 result (an IPA): the guest's "PA".
        this.forward(target, value, is64);
        this.shadow.write64(this.shadow.cbOffset(g.cb) + R.CB_PAR, this.phys.read64(this.phys.cbOffset(pcb) + R.CB_PAR));
        return;
    }
  }

  private forward(physOff: number, value: bigint, is64: boolean): void {
    this.traps.forwarded++;
    if (is64) this.phys.write64(physOff, value);
    else this.phys.write32(physOff, Number(value & 0xffffffffn));
  }

  /** Binds guest bank `cb` to a physical nested bank when its CBAR names a stage-1 type. */
  private bindBank(cb: number): void {
    if (this.bound.has(cb)) return;
    const type = (this.shadow.read32((1 << this.shadow.features.pageShift) + R.GR1_CBAR + 4 * cb) >>> R.CBAR_TYPE_SHIFT) & 3;
    if (type === R.CBAR_TYPE_S2_TRANS) return;
    const pcb = this.host.allocContextBank('nested');
    this.bound.set(cb, pcb);
    this.guestOf.set(pcb, cb);
    const gr1 = 1 << this.host.probed.pageShift;
    this.phys.write32(gr1 + R.GR1_CBA2R + 4 * pcb, R.CBA2R_VA64);
    const ptype = type === R.CBAR_TYPE_S1_TRANS_S2_FAULT ? R.CBAR_TYPE_S1_TRANS_S2_FAULT : R.CBAR_TYPE_S1_TRANS_S2_TRANS;
    this.phys.write32(gr1 + R.GR1_CBAR + 4 * pcb, (ptype << R.CBAR_TYPE_SHIFT) | (this.s2domain.cbndx << R.CBAR_CBNDX_SHIFT));
    this.host.delegateBank(pcb, (n) => this.physicalFault(n));
  }

  /** Re-applies the guest's stream map to the physical one for every assigned device. */
  private applyStreams(): void {
    for (const d of this.devices) {
      const idx = this.shadow.streamIndex(d.vsid);
      let route: { cbndx: number } | 'fault' = 'fault';
      if (idx === -1) {
        // No guest SMR matches: the guest's sCR0.USFCFG decides (bypass = stage 2 only).
        const usf = (this.shadow.read32(R.GR0_sCR0) & R.sCR0_USFCFG) !== 0;
        route = usf ? 'fault' : { cbndx: this.s2domain.cbndx };
      } else if (idx >= 0) {
        const s2cr = this.shadow.read32(R.GR0_S2CR + 4 * idx);
        const type = (s2cr >>> R.S2CR_TYPE_SHIFT) & 3;
        if (type === R.S2CR_TYPE_BYPASS) route = { cbndx: this.s2domain.cbndx };
        else if (type === R.S2CR_TYPE_TRANS) {
          const pcb = this.bound.get(s2cr & R.S2CR_CBNDX_MASK);
          route = pcb === undefined ? 'fault' : { cbndx: pcb };
        }
      }
      if ((this.shadow.read32(R.GR0_sCR0) & R.sCR0_CLIENTPD) !== 0) route = { cbndx: this.s2domain.cbndx };
      this.host.routeStream(d.psid, route);
    }
  }

  /** A context fault in a bound physical bank: inject it into the guest's bank and raise its interrupt. */
  physicalFault(pcb: number): void {
    const cb = this.guestOf.get(pcb);
    if (cb === undefined) return;
    const pbase = this.phys.cbOffset(pcb);
    const fsr = this.phys.read32(pbase + R.CB_FSR);
    if ((fsr & (R.FSR_FAULT_BITS | R.FSR_SS)) === 0) return;
    const gbase = this.shadow.cbOffset(cb);
    const psid = this.phys.read32((1 << this.host.probed.pageShift) + R.GR1_CBFRSYNRA + 4 * pcb) & 0xffff;
    const vsid = this.devices.find((d) => d.psid === psid)?.vsid ?? psid;
    // Copy the syndrome; SS stays set on both sides until the guest's RESUME is forwarded.
    const gfsr = this.shadow.read32(gbase + R.CB_FSR);
    const merged = (gfsr & (R.FSR_FAULT_BITS | R.FSR_SS)) !== 0 ? gfsr | R.FSR_MULTI : fsr;
    this.shadow.write32(gbase + R.CB_FSRRESTORE, merged >>> 0);
    if ((gfsr & R.FSR_FAULT_BITS) === 0) {
      this.shadow.write64(gbase + R.CB_FAR, this.phys.read64(pbase + R.CB_FAR));
      this.shadow.write32(gbase + R.CB_FSYNR0, this.phys.read32(pbase + R.CB_FSYNR0) & ~(0xff << R.FSYNR0_S1CBNDX_SHIFT));
      this.shadow.write32((1 << this.shadow.features.pageShift) + R.GR1_CBFRSYNRA + 4 * cb, vsid);
    }
    this.phys.write32(pbase + R.CB_FSR, fsr & R.FSR_W1C);
    this.traps.injectedFaults++;
    const sctlr = this.shadow.read32(gbase + R.CB_SCTLR);
    if ((sctlr & R.SCTLR_CFIE) !== 0) for (const h of this.listeners) h(cb);
  }
}
