/**
 * A running system for a topology: one src/smmu model instance per SMMU (built
 * from its ID values), each brought up by an ArmSmmuDriver, and attaching IOMMU
 * groups to host domains or to a VM's vSMMU.
 *
 * As in Linux, the unit of assignment is the IOMMU group: every stream ID of
 * every member goes to the same place. Attaching a group to a host domain
 * programs stream-match entries that cover its stream IDs exactly, folding
 * power-of-two aligned blocks into one masked SMR where it can (smr.ts).
 * Assigning groups to a VM hands their physical stream IDs to a VSmmu, which
 * routes each one through its own entry (the vSMMU's routeStream takes no mask).
 * When the stream-map entries run out, the attach fails with an AttachError
 * that says which SMMU, which group, how many entries it needed and how many
 * were free, and leaves the SMMU as it was.
 */

import { ArmSmmuDriver, DriverError, type Domain, type DriverOptions } from '../driver/arm-smmu.js';
import type { PhysMem } from '../memory/phys.js';
import * as R from '../smmu/regs.js';
import { Smmu } from '../smmu/smmu.js';
import type { Vm } from '../vsmmu/vm.js';
import { VSmmu, type AssignedDevice, type VSmmuOptions } from '../vsmmu/vsmmu.js';
import { fmtHex, fmtRid, masterName, type IommuGroup, type ResolvedTopology, type SmmuSpec } from './model.js';
import { coverStreamIds, entryMatches, fmtEntry, type SmrEntry } from './smr.js';

export type AttachErrorCode = 'ENOSPC' | 'EINVAL' | 'ENODEV' | 'EBUSY';

export class AttachError extends Error {
  constructor(
    message: string,
    readonly code: AttachErrorCode,
    readonly group: IommuGroup | null,
  ) {
    super(message);
    this.name = 'AttachError';
  }
}

export interface SmmuUnit {
  spec: SmmuSpec;
  smmu: Smmu;
  driver: ArmSmmuDriver;
}

export interface Attachment {
  group: IommuGroup;
  smmu: string;
  target: { kind: 'domain'; domain: Domain } | { kind: 'vm'; vsmmu: VSmmu };
  /** The stream-match entries programmed (host domains) or routed (one per stream ID, VMs). */
  entries: SmrEntry[];
  /** Their stream-map indexes. */
  smes: number[];
}

export interface MachineOptions extends DriverOptions {
  /** Fold aligned blocks of stream IDs into masked SMRs (default true); false: one SMR per stream ID, as Linux does for PCI. */
  useMasks?: boolean;
}

function fmtSids(sids: number[]): string {
  if (sids.length <= 6) return sids.map(fmtHex).join(', ');
  return `${sids.slice(0, 4).map(fmtHex).join(', ')}, ... ${fmtHex(sids[sids.length - 1]!)} (${sids.length})`;
}

function groupWords(g: IommuGroup): string {
  const names = g.members.map(masterName);
  return `group ${g.id} (${names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`})`;
}

export class TopologyMachine {
  readonly units = new Map<string, SmmuUnit>();
  readonly useMasks: boolean;
  private readonly attached = new Map<number, Attachment>();

  /** Builds and brings up (probe, reset) one SMMU instance per SMMU of the topology, all over `mem`. */
  constructor(
    readonly topo: ResolvedTopology,
    readonly mem: PhysMem,
    opts: MachineOptions = {},
  ) {
    this.useMasks = opts.useMasks ?? true;
    for (const spec of topo.spec.smmus) {
      const smmu = new Smmu(spec.ids, mem);
      const driver = new ArmSmmuDriver(smmu, opts);
      driver.probe();
      driver.reset();
      smmu.on('contextFault', (cb) => driver.contextFaultIrq(cb));
      this.units.set(spec.name, { spec, smmu, driver });
    }
  }

  unit(name: string): SmmuUnit {
    const u = this.units.get(name);
    if (u === undefined) throw new AttachError(`no SMMU is named "${name}" (SMMUs: ${[...this.units.keys()].join(', ')})`, 'ENODEV', null);
    return u;
  }

  group(g: IommuGroup | number): IommuGroup {
    if (typeof g !== 'number') return g;
    const found = this.topo.groups[g];
    if (found === undefined) throw new AttachError(`no IOMMU group ${g} (the topology has ${this.topo.groups.length})`, 'ENODEV', null);
    return found;
  }

  attachment(g: IommuGroup | number): Attachment | undefined {
    return this.attached.get(this.group(g).id);
  }

  /** The SMMU that serves a group; refuses a group with untranslated RIDs or stream IDs on several SMMUs. */
  unitOf(g: IommuGroup): SmmuUnit {
    const unmapped: string[] = [];
    for (const m of g.members) {
      if (m.kind !== 'pci') continue;
      for (const a of m.aliases) if (a.stream === null) unmapped.push(`${m.bdf} RID ${fmtRid(a.rid)}`);
    }
    if (unmapped.length > 0) {
      throw new AttachError(`${groupWords(g)} cannot be attached: no iommu-map entry translates ${unmapped.join(', ')}`, 'ENODEV', g);
    }
    if (g.smmus.length === 0) throw new AttachError(`${groupWords(g)} has no stream IDs`, 'ENODEV', g);
    if (g.smmus.length > 1) throw new AttachError(`${groupWords(g)} has stream IDs on ${g.smmus.join(' and ')}; a domain lives on one SMMU`, 'EINVAL', g);
    return this.unit(g.smmus[0]!);
  }

  /** The stream-match entries a group would take on its SMMU. */
  planGroup(g: IommuGroup | number): SmrEntry[] {
    const grp = this.group(g);
    const u = this.unitOf(grp);
    const sids = grp.streams.map((s) => s.sid);
    const p = u.driver.probed;
    if (!p.streamMatching || !this.useMasks) return sids.map((id) => ({ id, mask: 0 }));
    return coverStreamIds(sids, p.smrMaskMask);
  }

  /** The valid SMRs of an SMMU, read back from its registers. */
  smrs(name: string): Array<SmrEntry & { index: number }> {
    const u = this.unit(name);
    const out: Array<SmrEntry & { index: number }> = [];
    if (!u.smmu.features.sms) return out;
    for (let i = 0; i < u.smmu.features.numSmrg; i++) {
      const v = u.smmu.read32(R.GR0_SMR + 4 * i);
      if ((v & R.SMR_VALID) !== 0) out.push({ index: i, id: v & 0xffff & u.driver.probed.streamIdMask, mask: (v >>> R.SMR_MASK_SHIFT) & 0x7fff });
    }
    return out;
  }

  /** Free stream-map entries (SMRs; with stream indexing, every S2CR is its stream ID's own). */
  freeSmrs(name: string): number {
    const u = this.unit(name);
    return u.smmu.features.sms ? u.smmu.features.numSmrg - this.smrs(name).length : u.smmu.features.numS2cr;
  }

  /** Entries of `want` that an existing SMR does not already contain (the driver reuses contained ones). */
  private newEntries(name: string, want: SmrEntry[]): SmrEntry[] {
    const have = this.smrs(name);
    return want.filter((e) => !have.some((h) => (e.mask & h.mask) === e.mask && ((e.id ^ h.id) & ~h.mask) === 0));
  }

  private exhausted(u: SmmuUnit, g: IommuGroup, entries: SmrEntry[], what: string): AttachError {
    const need = this.newEntries(u.spec.name, entries).length;
    const free = this.freeSmrs(u.spec.name);
    const sids = g.streams.map((s) => s.sid);
    return new AttachError(
      `${u.spec.name}: stream-map entries (SMRs) exhausted ${what} ${groupWords(g)}: its stream IDs ${fmtSids(sids)} need ${need} new SMR${need === 1 ? '' : 's'} ` +
        `(${entries.map(fmtEntry).join(', ')}), but ${free} of ${u.smmu.features.numSmrg} are free`,
      'ENOSPC',
      g,
    );
  }

  private checkFree(g: IommuGroup): void {
    const a = this.attached.get(g.id);
    if (a !== undefined) throw new AttachError(`${groupWords(g)} is already attached (to ${a.target.kind === 'vm' ? 'a VM' : `domain on bank ${a.target.domain.cbndx}`} on ${a.smmu})`, 'EBUSY', g);
  }

  /**
   * Attaches every stream ID of a group to a host domain created on the group's SMMU
   * (machine.unit(name).driver.createDomain). Returns what was programmed.
   */
  attachGroup(group: IommuGroup | number, domain: Domain): Attachment {
    const g = this.group(group);
    this.checkFree(g);
    const u = this.unitOf(g);
    if (u.driver.domainOf(domain.cbndx) !== domain) {
      throw new AttachError(`${groupWords(g)} is on ${u.spec.name}, but the domain (bank ${domain.cbndx}) was not created by ${u.spec.name}'s driver`, 'EINVAL', g);
    }
    const entries = this.planGroup(g);
    let smes: number[];
    try {
      smes = u.driver.attach(domain, entries);
    } catch (e) {
      if (e instanceof DriverError && e.code === 'ENOSPC') throw this.exhausted(u, g, entries, 'attaching');
      if (e instanceof DriverError) throw new AttachError(`${u.spec.name}: cannot attach ${groupWords(g)}: ${e.message}`, e.code === 'EBUSY' ? 'EBUSY' : 'EINVAL', g);
      throw e;
    }
    const a: Attachment = { group: g, smmu: u.spec.name, target: { kind: 'domain', domain }, entries, smes };
    this.attached.set(g.id, a);
    return a;
  }

  /** Destroys a host domain (the driver frees its entries and bank) and forgets the groups attached to it. */
  destroyDomain(name: string, domain: Domain): void {
    this.unit(name).driver.destroyDomain(domain);
    for (const [id, a] of this.attached) if (a.target.kind === 'domain' && a.target.domain === domain) this.attached.delete(id);
  }

  /**
   * Assigns groups to a VM: a VSmmu on their SMMU whose assigned devices are their physical
   * stream IDs. `vsid` picks the stream ID the guest sees for each (default: the same).
   */
  assignToVm(groups: Array<IommuGroup | number>, vm: Vm, opts: VSmmuOptions & { vsid?: (psid: number) => number } = {}): { vsmmu: VSmmu; devices: AssignedDevice[]; attachments: Attachment[] } {
    if (groups.length === 0) throw new AttachError('no groups to assign', 'EINVAL', null);
    const gs = groups.map((x) => this.group(x));
    for (const g of gs) this.checkFree(g);
    const units = gs.map((g) => this.unitOf(g));
    const u = units[0]!;
    const other = units.findIndex((x) => x !== u);
    if (other >= 0) throw new AttachError(`${groupWords(gs[other]!)} is on ${units[other]!.spec.name}, not ${u.spec.name}: one vSMMU fronts one physical SMMU`, 'EINVAL', gs[other]!);
    const devices: AssignedDevice[] = [];
    for (const g of gs) for (const s of g.streams) devices.push({ vsid: opts.vsid ? opts.vsid(s.sid) : s.sid, psid: s.sid });
    const vsids = new Set(devices.map((d) => d.vsid));
    if (vsids.size !== devices.length) throw new AttachError('two assigned stream IDs would have the same guest stream ID', 'EINVAL', gs[0]!);
    // The vSMMU routes each physical stream ID through its own entry; check there are enough before it claims any.
    if (u.smmu.features.sms) {
      const entries = devices.map((d) => ({ id: d.psid, mask: 0 }));
      const need = this.newEntries(u.spec.name, entries).length;
      if (need > this.freeSmrs(u.spec.name)) {
        const all: IommuGroup = { id: gs[0]!.id, members: gs.flatMap((g) => g.members), smmus: [u.spec.name], streams: gs.flatMap((g) => g.streams), reasons: [] };
        throw this.exhausted(u, gs.length === 1 ? gs[0]! : all, entries, 'assigning to a VM');
      }
    }
    let vsmmu: VSmmu;
    try {
      vsmmu = new VSmmu(vm, u.smmu, u.driver, devices, opts);
    } catch (e) {
      if (e instanceof DriverError) throw new AttachError(`${u.spec.name}: cannot assign ${gs.map(groupWords).join(', ')} to a VM: ${e.message}`, e.code === 'ENOSPC' ? 'ENOSPC' : 'EINVAL', gs[0]!);
      throw new AttachError(`${u.spec.name}: cannot assign ${gs.map(groupWords).join(', ')} to a VM: ${(e as Error).message}`, 'EINVAL', gs[0]!);
    }
    const attachments = gs.map((g) => {
      const entries = g.streams.map((s) => ({ id: s.sid, mask: 0 }));
      const smes = u.smmu.features.sms ? entries.map((e) => this.smrs(u.spec.name).find((h) => entryMatches(h, e.id))?.index ?? -1) : entries.map((e) => e.id);
      const a: Attachment = { group: g, smmu: u.spec.name, target: { kind: 'vm', vsmmu }, entries, smes };
      this.attached.set(g.id, a);
      return a;
    });
    return { vsmmu, devices, attachments };
  }
}
