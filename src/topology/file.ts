/**
 * `smmu-topology/1` topology files: parsing and validation, with errors that
 * name the file, the JSON path and what is wrong (the style of
 * src/check/case-file.ts).
 *
 * The format (see TopologyDoc below; src/topology/presets.ts has examples):
 *
 *   {
 *     "format": "smmu-topology/1",
 *     "name": "example",
 *     "smmus": [ { "name": "smmu0", "shape": { "smrs": 48, "sidBits": 15 } } ],
 *     "hostBridges": [ {
 *       "name": "pcie0", "segment": 0, "bus-range": [0, 63],
 *       "iommu-map": [ { "rid-base": 0, "smmu": "smmu0", "sid-base": "0x1000", "length": "0x4000" } ],
 *       "iommu-map-mask": "0xffff",
 *       "devices": [ { "type": "root-port", "device": 1, "secondary": 1, "subordinate": 1, "acs": true,
 *                      "children": [ { "type": "endpoint", "name": "nic0", "device": 0, "functions": 2 } ] } ]
 *     } ],
 *     "platformDevices": [ { "name": "dma0", "iommus": [ { "smmu": "smmu0", "sid": "0x10", "mask": "0x3" } ] } ]
 *   }
 *
 * Names that are device-tree properties keep their device-tree spelling
 * (`bus-range`, `iommu-map`, `rid-base`, `sid-base`, `length`,
 * `iommu-map-mask`, `iommus`); the segment is what `linux,pci-domain` gives.
 * Numbers may be JSON integers or "0x..." strings. A top-level "comment" is
 * allowed and ignored; any other unknown property is an error (a typo).
 *
 * Structural problems (a wrong type, an unknown property) stop the parse at the
 * first one; consistency problems (overlapping bus ranges, a stream ID claimed
 * twice on one SMMU, a map entry naming an SMMU that does not exist, ...) are
 * all collected and reported together.
 */

import { SmmuConfigError, decodeIds, encodeIds, type SmmuShape } from '../smmu/id.js';
import {
  PCI_TYPES,
  devfnOf,
  fmtDevfn,
  fmtHex,
  isBridge,
  type FunctionSpec,
  type HostBridgeSpec,
  type IommuMapEntry,
  type IommusEntry,
  type PciNodeSpec,
  type PciType,
  type PlatformDeviceSpec,
  type SmmuSpec,
  type TopologySpec,
} from './model.js';

export const TOPOLOGY_FORMAT = 'smmu-topology/1';

// ------------------------------------------------------------------ the document (what a file holds)

export type NumberLike = number | string;

export interface IommuMapDoc {
  'rid-base': NumberLike;
  smmu: string;
  'sid-base': NumberLike;
  length: NumberLike;
}

export interface FunctionDoc {
  function: number;
  name?: string;
  /** "dd.f" devfns on the same bus (hex slot, as lspci writes them). */
  dmaAliases?: string[];
  acs?: boolean;
}

export interface PciNodeDoc {
  type: PciType;
  name?: string;
  device: number;
  /** Bridges: the function number (default 0). */
  function?: number;
  /** Endpoints and PCI devices: a count (functions 0..n-1) or a list (default 1). */
  functions?: number | FunctionDoc[];
  secondary?: number;
  subordinate?: number;
  acs?: boolean;
  pcieBridgeAlias?: boolean;
  children?: PciNodeDoc[];
}

export interface HostBridgeDoc {
  name: string;
  segment?: number;
  'bus-range'?: [number, number];
  'iommu-map'?: IommuMapDoc[];
  'iommu-map-mask'?: NumberLike;
  devices?: PciNodeDoc[];
}

export interface PlatformDeviceDoc {
  name: string;
  iommus: Array<{ smmu: string; sid: NumberLike; mask?: NumberLike }>;
}

export interface TopologyDoc {
  format: typeof TOPOLOGY_FORMAT;
  name: string;
  smmus: Array<{ name: string; shape?: SmmuShape }>;
  hostBridges?: HostBridgeDoc[];
  platformDevices?: PlatformDeviceDoc[];
}

// ------------------------------------------------------------------ errors

export interface TopologyIssue {
  path: string;
  problem: string;
}

export class TopologyError extends Error {
  constructor(
    readonly file: string,
    readonly issues: TopologyIssue[],
  ) {
    super(issues.map((i) => `${file}: ${i.path}: ${i.problem}`).join('\n'));
    this.name = 'TopologyError';
  }
}

/** Thrown to stop at a structural problem (caught in parseTopology). */
class Stop extends Error {}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

class Reader {
  readonly issues: TopologyIssue[] = [];

  fail(path: string, problem: string): never {
    this.issues.push({ path, problem });
    throw new Stop();
  }

  /** A consistency problem: recorded, parsing goes on. */
  report(path: string, problem: string): void {
    this.issues.push({ path, problem });
  }

  object(v: unknown, path: string, allowed: readonly string[]): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `expected an object, got ${describe(v)}`);
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(`${path}.${k}`, `unknown property (expected one of: ${allowed.join(', ')})`);
    }
    return o;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, got ${describe(v)}`);
    return v;
  }

  /** An integer in [min, max], as a JSON number or a "0x..." string. */
  int(v: unknown, path: string, min: number, max: number, what = 'an integer'): number {
    let n: number | undefined;
    if (typeof v === 'number' && Number.isInteger(v)) n = v;
    else if (typeof v === 'string' && /^0x[0-9a-fA-F]{1,8}$/.test(v)) n = parseInt(v.slice(2), 16);
    if (n === undefined) this.fail(path, `expected ${what} (a number or a "0x..." string), got ${describe(v)}`);
    if (n < min || n > max) this.fail(path, `expected ${what} from ${fmtOrDec(min)} to ${fmtOrDec(max)}, got ${describe(v)}`);
    return n;
  }

  /** A plain JSON integer in [min, max] (bus, device and function numbers). */
  small(v: unknown, path: string, min: number, max: number, what: string): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, `expected ${what} from ${min} to ${max}, got ${describe(v)}`);
    return v;
  }

  /** The name of something defined elsewhere in the file (an SMMU). */
  ref(v: unknown, path: string, what: string): string {
    if (typeof v !== 'string' || v.length === 0) this.fail(path, `expected the name of ${what}, got ${describe(v)}`);
    return v;
  }

  bool(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, `expected true or false, got ${describe(v)}`);
    return v;
  }

  name(v: unknown, path: string): string {
    if (typeof v !== 'string' || !/^[A-Za-z0-9_.:+\-/]+$/.test(v)) {
      this.fail(path, `expected a name (letters, digits and _ . : + - /, no spaces), got ${describe(v)}`);
    }
    return v;
  }
}

function fmtOrDec(n: number): string {
  return n > 255 ? fmtHex(n) : String(n);
}

// ------------------------------------------------------------------ SMMUs

const SHAPE_KEYS = ['s1', 's2', 'nested', 'smrs', 'sidBits', 'contextBanks', 's2OnlyBanks', 'pageKiB', 'numPageNdxb', 'granules', 'ias', 'oas', 'ubs', 'vmid16', 'ats'] as const;
const SIZES = [32, 36, 40, 42, 44, 48];

function parseShape(r: Reader, v: unknown, path: string): SmmuShape {
  if (v === undefined) return {};
  const o = r.object(v, path, SHAPE_KEYS);
  const s: SmmuShape = {};
  for (const k of ['s1', 's2', 'nested', 'vmid16', 'ats'] as const) if (o[k] !== undefined) s[k] = r.bool(o[k], `${path}.${k}`);
  if (o.smrs !== undefined) s.smrs = r.small(o.smrs, `${path}.smrs`, 0, 255, 'a number of SMRs (IDR0.NUMSMRG; 0 = stream indexing)');
  if (o.sidBits !== undefined) s.sidBits = r.small(o.sidBits, `${path}.sidBits`, 0, 15, 'a number of stream-ID bits (IDR0.NUMSIDB)');
  if (o.contextBanks !== undefined) s.contextBanks = r.small(o.contextBanks, `${path}.contextBanks`, 1, 255, 'a number of context banks (IDR1.NUMCB)');
  if (o.s2OnlyBanks !== undefined) s.s2OnlyBanks = r.small(o.s2OnlyBanks, `${path}.s2OnlyBanks`, 0, 255, 'a number of stage-2-only banks (IDR1.NUMS2CB)');
  if (o.pageKiB !== undefined) {
    if (o.pageKiB !== 4 && o.pageKiB !== 64) r.fail(`${path}.pageKiB`, `expected 4 or 64 (KiB register pages), got ${describe(o.pageKiB)}`);
    s.pageKiB = o.pageKiB;
  }
  if (o.numPageNdxb !== undefined) s.numPageNdxb = r.small(o.numPageNdxb, `${path}.numPageNdxb`, 0, 7, 'IDR1.NUMPAGENDXB');
  if (o.granules !== undefined) {
    const g = r.array(o.granules, `${path}.granules`);
    if (g.length === 0) r.fail(`${path}.granules`, 'expected at least one granule');
    s.granules = g.map((x, i) => {
      if (x !== 4 && x !== 16 && x !== 64) r.fail(`${path}.granules[${i}]`, `expected a granule of 4, 16 or 64 (KiB), got ${describe(x)}`);
      return x;
    });
  }
  for (const k of ['ias', 'oas', 'ubs'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'number' || !SIZES.includes(o[k])) r.fail(`${path}.${k}`, `expected an address size of 32, 36, 40, 42, 44 or 48, got ${describe(o[k])}`);
    s[k] = o[k];
  }
  return s;
}

function parseSmmu(r: Reader, v: unknown, path: string): SmmuSpec {
  const o = r.object(v, path, ['name', 'shape']);
  const name = r.name(o.name, `${path}.name`);
  const shape = parseShape(r, o.shape, `${path}.shape`);
  try {
    const ids = encodeIds(shape);
    const features = decodeIds(ids.id0, ids.id1, ids.id2);
    return { name, shape, ids, features, path };
  } catch (e) {
    if (e instanceof SmmuConfigError) r.fail(`${path}.shape`, `not a possible SMMU: ${e.message}`);
    throw e;
  }
}

// ------------------------------------------------------------------ PCI

/** Where a node sits, which decides what may sit there. */
type BusKind = 'root' | 'link' | 'switch' | 'conventional';

const ALLOWED_ON: Record<BusKind, readonly PciType[]> = {
  // Root bus: root ports and integrated endpoints, or a conventional PCI host bridge's devices
  // (and an integrated PCIe-to-PCI bridge, as QEMU's pcie-pci-bridge on pcie.0).
  root: ['root-port', 'rc-endpoint', 'pcie-to-pci-bridge', 'pci-bridge', 'pci-device'],
  // A PCIe link below a root port or downstream port: one device (device 0).
  link: ['endpoint', 'upstream-port', 'pcie-to-pci-bridge'],
  // A switch's internal bus: its downstream ports.
  switch: ['downstream-port'],
  // A conventional PCI/PCI-X bus.
  conventional: ['pci-device', 'pci-bridge', 'pci-to-pcie-bridge'],
};

const BUS_KIND_WORDS: Record<BusKind, string> = {
  root: 'the root bus',
  link: 'a PCIe link',
  switch: "a switch's internal bus",
  conventional: 'a conventional PCI bus',
};

function secondaryKind(t: PciType): BusKind {
  switch (t) {
    case 'root-port':
    case 'downstream-port':
    case 'pci-to-pcie-bridge':
      return 'link';
    case 'upstream-port':
      return 'switch';
    default:
      return 'conventional';
  }
}

const NODE_KEYS = ['type', 'name', 'device', 'function', 'functions', 'secondary', 'subordinate', 'acs', 'pcieBridgeAlias', 'children'] as const;
const FUNCTION_KEYS = ['function', 'name', 'dmaAliases', 'acs'] as const;
const NO_ACS: readonly PciType[] = ['pcie-to-pci-bridge', 'pci-to-pcie-bridge', 'pci-bridge', 'pci-device'];

interface BusCtx {
  kind: BusKind;
  bus: number;
  /** Bus numbers bridges on this bus may use: (bus, hi]. */
  hi: number;
  segment: number;
  /** devfn -> JSON path of the function there. */
  devfns: Map<number, string>;
}

interface ParseState {
  r: Reader;
  /** name -> path, for every device and function name. */
  names: Map<string, string>;
}

function claimName(st: ParseState, name: string, path: string): void {
  const prev = st.names.get(name);
  if (prev !== undefined) st.r.report(path, `name "${name}" is already used by ${prev}`);
  else st.names.set(name, path);
}

function parseDevfnString(r: Reader, v: unknown, path: string): number {
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{1,2}\.[0-7]$/.test(v)) r.fail(path, `expected a devfn as "dd.f" (hex slot 00-1f, function 0-7), got ${describe(v)}`);
  const [d, f] = v.split('.');
  const dev = parseInt(d!, 16);
  if (dev > 31) r.fail(path, `slot 0x${d} is beyond 0x1f`);
  return devfnOf(dev, Number(f));
}

function parseNode(st: ParseState, v: unknown, path: string, ctx: BusCtx, siblings: Array<{ lo: number; hi: number; path: string }>): PciNodeSpec {
  const { r } = st;
  const o = r.object(v, path, NODE_KEYS);
  if (typeof o.type !== 'string' || !PCI_TYPES.includes(o.type as PciType)) r.fail(`${path}.type`, `expected one of ${PCI_TYPES.join(', ')}, got ${describe(o.type)}`);
  const type = o.type as PciType;
  const bridge = isBridge(type);
  if (!ALLOWED_ON[ctx.kind].includes(type)) {
    const hint = type === 'endpoint' && ctx.kind === 'root' ? ' (an endpoint integrated in the root complex is an rc-endpoint)' : '';
    r.fail(`${path}.type`, `a ${type} cannot sit on ${BUS_KIND_WORDS[ctx.kind]} (bus 0x${ctx.bus.toString(16)}); allowed there: ${ALLOWED_ON[ctx.kind].join(', ')}${hint}`);
  }
  const device = r.small(o.device, `${path}.device`, 0, 31, 'a device (slot) number');
  if (ctx.kind === 'link' && device !== 0) {
    r.report(`${path}.device`, `a device on a PCIe link (bus 0x${ctx.bus.toString(16)}, below a port) must be device 0, got ${device}`);
  }
  const defaultName = `${type}-${ctx.segment.toString(16).padStart(4, '0')}:${ctx.bus.toString(16).padStart(2, '0')}:${device.toString(16).padStart(2, '0')}`;
  const name = o.name === undefined ? defaultName : r.name(o.name, `${path}.name`);
  if (o.name !== undefined) claimName(st, name, `${path}.name`);
  let acs: boolean | undefined;
  if (o.acs !== undefined) {
    acs = r.bool(o.acs, `${path}.acs`);
    if (acs && NO_ACS.includes(type)) r.report(`${path}.acs`, `a ${type} cannot have ACS (conventional PCI has none, and PCIe 6.12.1 excludes PCIe-to-PCI and PCI-to-PCIe bridges)`);
  }
  if (o.pcieBridgeAlias !== undefined) {
    r.bool(o.pcieBridgeAlias, `${path}.pcieBridgeAlias`);
    if (type !== 'pci-bridge') r.fail(`${path}.pcieBridgeAlias`, `only a pci-bridge takes the PCIe-bridge-alias quirk (a pcie-to-pci-bridge aliases to its secondary bus anyway)`);
  }
  const functions: FunctionSpec[] = [];
  let secondary = -1;
  let subordinate = -1;
  const children: PciNodeSpec[] = [];
  if (bridge) {
    if (o.functions !== undefined) r.fail(`${path}.functions`, `a ${type} is one function; give its number as "function"`);
    const fn = o.function === undefined ? 0 : r.small(o.function, `${path}.function`, 0, 7, 'a function number');
    functions.push({ function: fn, name, dmaAliases: [], acs, path });
    if (o.secondary === undefined) r.fail(`${path}.secondary`, `a ${type} needs its secondary bus number`);
    if (o.subordinate === undefined) r.fail(`${path}.subordinate`, `a ${type} needs its subordinate bus number`);
    secondary = r.small(o.secondary, `${path}.secondary`, 0, 255, 'a bus number');
    subordinate = r.small(o.subordinate, `${path}.subordinate`, 0, 255, 'a bus number');
    let rangeOk = true;
    if (secondary <= ctx.bus) {
      r.report(`${path}.secondary`, `secondary bus 0x${secondary.toString(16)} must be above the bus the bridge is on (0x${ctx.bus.toString(16)})`);
      rangeOk = false;
    } else if (subordinate < secondary) {
      r.report(`${path}.subordinate`, `subordinate bus 0x${subordinate.toString(16)} is below the secondary bus 0x${secondary.toString(16)}`);
      rangeOk = false;
    } else if (subordinate > ctx.hi) {
      r.report(path, `buses 0x${secondary.toString(16)}-0x${subordinate.toString(16)} reach beyond the parent's range (up to 0x${ctx.hi.toString(16)})`);
      rangeOk = false;
    }
    if (rangeOk) {
      for (const s of siblings) {
        if (secondary <= s.hi && s.lo <= subordinate) {
          r.report(path, `buses 0x${secondary.toString(16)}-0x${subordinate.toString(16)} overlap buses 0x${s.lo.toString(16)}-0x${s.hi.toString(16)} of ${s.path}`);
          rangeOk = false;
          break;
        }
      }
      if (rangeOk) siblings.push({ lo: secondary, hi: subordinate, path });
    }
  } else {
    for (const k of ['function', 'secondary', 'subordinate', 'children'] as const) {
      if (o[k] !== undefined) r.fail(`${path}.${k}`, k === 'function' ? `a ${type} lists its functions in "functions"` : `only bridges have "${k}"`);
    }
    const fv = o.functions ?? 1;
    if (typeof fv === 'number') {
      const n = r.small(fv, `${path}.functions`, 1, 8, 'a number of functions');
      for (let f = 0; f < n; f++) functions.push({ function: f, name: n === 1 ? name : `${name}.${f}`, dmaAliases: [], acs, path });
    } else {
      const list = r.array(fv, `${path}.functions`);
      if (list.length === 0 || list.length > 8) r.fail(`${path}.functions`, `expected 1 to 8 functions, got ${list.length}`);
      list.forEach((fd, i) => {
        const fp = `${path}.functions[${i}]`;
        const fo = r.object(fd, fp, FUNCTION_KEYS);
        const fn = r.small(fo.function, `${fp}.function`, 0, 7, 'a function number');
        const fname = fo.name === undefined ? (list.length === 1 ? name : `${name}.${fn}`) : r.name(fo.name, `${fp}.name`);
        if (fo.name !== undefined) claimName(st, fname, `${fp}.name`);
        const dmaAliases = fo.dmaAliases === undefined ? [] : r.array(fo.dmaAliases, `${fp}.dmaAliases`).map((a, j) => parseDevfnString(r, a, `${fp}.dmaAliases[${j}]`));
        let facs = acs;
        if (fo.acs !== undefined) {
          facs = r.bool(fo.acs, `${fp}.acs`);
          if (facs && NO_ACS.includes(type)) r.report(`${fp}.acs`, `a ${type} cannot have ACS (conventional PCI has none)`);
        }
        functions.push({ function: fn, name: fname, dmaAliases, acs: facs, path: fp });
      });
    }
  }
  for (const f of functions) {
    const df = devfnOf(device, f.function);
    const prev = ctx.devfns.get(df);
    if (prev !== undefined) r.report(f.path, `devfn ${fmtDevfn(df)} on bus 0x${ctx.bus.toString(16)} is already taken by ${prev}`);
    else ctx.devfns.set(df, f.path);
  }
  if (bridge && o.children !== undefined) {
    const kind = secondaryKind(type);
    const sub: BusCtx = { kind, bus: secondary, hi: Math.max(subordinate, secondary), segment: ctx.segment, devfns: new Map() };
    children.push(...parseBus(st, o.children, `${path}.children`, sub));
  }
  return {
    type,
    name,
    device,
    functions,
    secondary,
    subordinate,
    pcieBridgeAlias: o.pcieBridgeAlias === true,
    children,
    path,
  };
}

/** The devices on one bus; then every occupied slot must implement function 0 (PCI finds a slot's functions through function 0). */
function parseBus(st: ParseState, v: unknown, path: string, ctx: BusCtx): PciNodeSpec[] {
  const siblings: Array<{ lo: number; hi: number; path: string }> = [];
  const nodes = st.r.array(v, path).map((d, i) => parseNode(st, d, `${path}[${i}]`, ctx, siblings));
  for (const [df, where] of ctx.devfns) {
    if ((df & 7) !== 0 && !ctx.devfns.has(df & ~7)) {
      st.r.report(where, `slot ${fmtDevfn(df).slice(0, 2)} on bus 0x${ctx.bus.toString(16)} has function ${df & 7} but no function 0 (PCI finds a slot's functions through function 0)`);
    }
  }
  return nodes;
}

function parseHostBridge(st: ParseState, v: unknown, path: string): HostBridgeSpec {
  const { r } = st;
  const o = r.object(v, path, ['name', 'segment', 'bus-range', 'iommu-map', 'iommu-map-mask', 'devices']);
  const name = r.name(o.name, `${path}.name`);
  claimName(st, name, `${path}.name`);
  const segment = o.segment === undefined ? 0 : r.small(o.segment, `${path}.segment`, 0, 0xffff, 'a PCI segment (domain) number');
  let busStart = 0;
  let busEnd = 255;
  if (o['bus-range'] !== undefined) {
    const br = r.array(o['bus-range'], `${path}.bus-range`);
    if (br.length !== 2) r.fail(`${path}.bus-range`, `expected [first bus, last bus], got ${br.length} elements`);
    busStart = r.small(br[0], `${path}.bus-range[0]`, 0, 255, 'a bus number');
    busEnd = r.small(br[1], `${path}.bus-range[1]`, 0, 255, 'a bus number');
    if (busEnd < busStart) r.fail(`${path}.bus-range`, `last bus 0x${busEnd.toString(16)} is below the first bus 0x${busStart.toString(16)}`);
  }
  const hasIommuMap = o['iommu-map'] !== undefined;
  const iommuMapMask = o['iommu-map-mask'] === undefined ? 0xffffffff : r.int(o['iommu-map-mask'], `${path}.iommu-map-mask`, 0, 0xffffffff, 'a 32-bit mask');
  const iommuMap: IommuMapEntry[] = [];
  if (hasIommuMap) {
    r.array(o['iommu-map'], `${path}.iommu-map`).forEach((e, i) => {
      const p = `${path}.iommu-map[${i}]`;
      const eo = r.object(e, p, ['rid-base', 'smmu', 'sid-base', 'length']);
      const ridBase = r.int(eo['rid-base'], `${p}.rid-base`, 0, 0xffff, 'a requester ID');
      const smmu = r.ref(eo.smmu, `${p}.smmu`, 'an SMMU');
      const sidBase = r.int(eo['sid-base'], `${p}.sid-base`, 0, 0xffff, 'a stream ID');
      const length = r.int(eo.length, `${p}.length`, 1, 0x10000, 'a length');
      if (ridBase + length > 0x10000) r.report(`${p}.length`, `RIDs ${fmtHex(ridBase)}..${fmtHex(ridBase + length - 1)} go beyond the 16-bit requester ID space`);
      // of_map_id(): "Invalid iommu-map translation - iommu-map-mask ignores id-base" (-EFAULT).
      if ((ridBase & ~iommuMapMask) !== 0) {
        r.report(`${p}.rid-base`, `iommu-map-mask ${fmtHex(iommuMapMask >>> 0)} ignores rid-base ${fmtHex(ridBase)} (bits ${fmtHex((ridBase & ~iommuMapMask) >>> 0)}): no masked RID can match it (of_map_id refuses this map)`);
      }
      iommuMap.push({ ridBase, smmu, sidBase, length, path: p });
    });
  }
  const ctx: BusCtx = { kind: 'root', bus: busStart, hi: busEnd, segment, devfns: new Map() };
  const devices = o.devices === undefined ? [] : parseBus(st, o.devices, `${path}.devices`, ctx);
  return { name, segment, busStart, busEnd, iommuMap, iommuMapMask: iommuMapMask >>> 0, hasIommuMap, devices, path };
}

function parsePlatform(st: ParseState, v: unknown, path: string): PlatformDeviceSpec {
  const { r } = st;
  const o = r.object(v, path, ['name', 'iommus']);
  const name = r.name(o.name, `${path}.name`);
  claimName(st, name, `${path}.name`);
  const list = r.array(o.iommus, `${path}.iommus`);
  if (list.length === 0) r.fail(`${path}.iommus`, 'expected at least one {"smmu", "sid"} specifier');
  const iommus: IommusEntry[] = list.map((e, i) => {
    const p = `${path}.iommus[${i}]`;
    const eo = r.object(e, p, ['smmu', 'sid', 'mask']);
    const smmu = r.ref(eo.smmu, `${p}.smmu`, 'an SMMU');
    const sid = r.int(eo.sid, `${p}.sid`, 0, 0xffff, 'a stream ID');
    const mask = eo.mask === undefined ? 0 : r.int(eo.mask, `${p}.mask`, 0, 0xffff, 'an SMR mask');
    return { smmu, sid, mask, path: p };
  });
  return { name, iommus, path };
}

// ------------------------------------------------------------------ consistency

/** The stream IDs one `iommus` specifier covers: sid with every combination of the mask bits. */
export function expandMasked(sid: number, mask: number): number[] {
  const base = sid & ~mask;
  const out: number[] = [];
  // Enumerate the subsets of mask in increasing order.
  let sub = 0;
  for (;;) {
    out.push(base | sub);
    if (sub === mask) break;
    sub = (sub - mask) & mask;
  }
  return out.sort((a, b) => a - b);
}

interface Claim {
  lo: number;
  hi: number;
  path: string;
  what: string;
}

function checkClaims(r: Reader, spec: Omit<TopologySpec, 'file'>): void {
  const smmus = new Map(spec.smmus.map((s) => [s.name, s]));
  const claims = new Map<string, Claim[]>();
  const add = (smmu: string, c: Claim): void => {
    let l = claims.get(smmu);
    if (l === undefined) claims.set(smmu, (l = []));
    l.push(c);
  };
  const known = [...smmus.keys()].join(', ');
  for (const hb of spec.hostBridges) {
    for (const e of hb.iommuMap) {
      const s = smmus.get(e.smmu);
      if (s === undefined) {
        r.report(`${e.path}.smmu`, `no SMMU is named "${e.smmu}" (SMMUs: ${known})`);
        continue;
      }
      const last = e.sidBase + e.length - 1;
      const limit = 2 ** s.features.numSidB;
      if (last >= limit) {
        r.report(e.path, `stream IDs ${fmtHex(e.sidBase)}..${fmtHex(last)} do not fit in ${s.name}'s ${s.features.numSidB} stream-ID bits (up to ${fmtHex(limit - 1)})`);
        continue;
      }
      add(e.smmu, { lo: e.sidBase, hi: last, path: e.path, what: `the iommu-map of ${hb.name}` });
    }
  }
  for (const d of spec.platformDevices) {
    for (const e of d.iommus) {
      const s = smmus.get(e.smmu);
      if (s === undefined) {
        r.report(`${e.path}.smmu`, `no SMMU is named "${e.smmu}" (SMMUs: ${known})`);
        continue;
      }
      const limit = 2 ** s.features.numSidB;
      if ((e.sid | e.mask) >= limit) {
        r.report(e.path, `stream ID ${fmtHex(e.sid)} mask ${fmtHex(e.mask)} does not fit in ${s.name}'s ${s.features.numSidB} stream-ID bits`);
        continue;
      }
      for (const sid of expandMasked(e.sid, e.mask)) add(e.smmu, { lo: sid, hi: sid, path: e.path, what: `platform device ${d.name}` });
    }
  }
  for (const [smmu, list] of claims) {
    list.sort((a, b) => a.lo - b.lo || a.hi - b.hi);
    let reach: Claim | null = null;
    let reported = 0;
    for (const c of list) {
      if (reach !== null && c.lo <= reach.hi) {
        if (reported < 20) {
          const lo = c.lo;
          const hi = Math.min(c.hi, reach.hi);
          const ids = lo === hi ? `stream ID ${fmtHex(lo)}` : `stream IDs ${fmtHex(lo)}..${fmtHex(hi)}`;
          r.report(c.path, `${ids} of ${smmu} claimed twice: by ${c.what} here and by ${reach.what} at ${reach.path}`);
        }
        reported++;
      }
      if (reach === null || c.hi > reach.hi) reach = c;
    }
    if (reported > 20) r.report('$', `... and ${reported - 20} more stream IDs of ${smmu} claimed twice`);
  }
}

function checkBusRanges(r: Reader, hostBridges: HostBridgeSpec[]): void {
  for (let i = 0; i < hostBridges.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = hostBridges[j]!;
      const b = hostBridges[i]!;
      if (a.segment === b.segment && b.busStart <= a.busEnd && a.busStart <= b.busEnd) {
        r.report(
          `${b.path}.bus-range`,
          `buses 0x${b.busStart.toString(16)}-0x${b.busEnd.toString(16)} of segment ${b.segment} overlap buses 0x${a.busStart.toString(16)}-0x${a.busEnd.toString(16)} of host bridge ${a.name} (${a.path})`,
        );
      }
    }
  }
}

/** Validates a topology document (already parsed JSON). Throws TopologyError listing every problem found. */
export function parseTopologyDoc(doc: unknown, file: string): TopologySpec {
  const r = new Reader();
  const st: ParseState = { r, names: new Map() };
  try {
    const o = r.object(doc, '$', ['format', 'name', 'smmus', 'hostBridges', 'platformDevices', 'comment']);
    if (o.format !== TOPOLOGY_FORMAT) r.fail('$.format', `expected "${TOPOLOGY_FORMAT}", got ${describe(o.format)}`);
    if (typeof o.name !== 'string' || o.name.length === 0) r.fail('$.name', `expected a non-empty string, got ${describe(o.name)}`);
    const name = o.name as string;
    const smmuList = r.array(o.smmus, '$.smmus');
    if (smmuList.length === 0) r.fail('$.smmus', 'expected at least one SMMU');
    const smmus = smmuList.map((s, i) => parseSmmu(r, s, `$.smmus[${i}]`));
    const seen = new Map<string, string>();
    for (const s of smmus) {
      const prev = seen.get(s.name);
      if (prev !== undefined) r.report(`${s.path}.name`, `SMMU name "${s.name}" is already used by ${prev}`);
      else seen.set(s.name, s.path);
    }
    const hostBridges = o.hostBridges === undefined ? [] : r.array(o.hostBridges, '$.hostBridges').map((h, i) => parseHostBridge(st, h, `$.hostBridges[${i}]`));
    const platformDevices = o.platformDevices === undefined ? [] : r.array(o.platformDevices, '$.platformDevices').map((d, i) => parsePlatform(st, d, `$.platformDevices[${i}]`));
    const spec = { name, smmus, hostBridges, platformDevices };
    checkBusRanges(r, hostBridges);
    checkClaims(r, spec);
    if (r.issues.length > 0) throw new TopologyError(file, r.issues);
    return { file, ...spec };
  } catch (e) {
    if (e instanceof Stop) throw new TopologyError(file, r.issues);
    throw e;
  }
}

/** Parses and validates a topology from its JSON text. Throws TopologyError. */
export function parseTopology(text: string, file: string): TopologySpec {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TopologyError(file, [{ path: '$', problem: `not valid JSON (${(e as Error).message})` }]);
  }
  return parseTopologyDoc(doc, file);
}
