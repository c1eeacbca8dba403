/**
 * SMMU_IDR0..2: what an SMMUv2 instance implements (Arm IHI 0062, 10.6
 * "Identification registers"). A model instance is built from exactly these
 * three values; `encodeIds` builds them from named features.
 */

export class SmmuConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SmmuConfigError';
  }
}

/** IDR2.IAS/OAS/UBS size codes -> bits (0:32, 1:36, 2:40, 3:42, 4:44, 5:48; larger read as 48 here). */
export function idSizeBits(code: number): number {
  return [32, 36, 40, 42, 44, 48][Math.min(code, 5)]!;
}

export function idSizeCode(bits: number): number {
  const i = [32, 36, 40, 42, 44, 48].indexOf(bits);
  if (i < 0) throw new SmmuConfigError(`address size ${bits} is not one of 32, 36, 40, 42, 44, 48`);
  return i;
}

export interface SmmuFeatures {
  id0: number;
  id1: number;
  id2: number;
  /** IDR0.S1TS / S2TS / NTS: stage 1, stage 2, nested (stage 1 followed by stage 2). */
  s1ts: boolean;
  s2ts: boolean;
  nts: boolean;
  /** IDR0.SMS: stream matching (SMRs); otherwise stream indexing. */
  sms: boolean;
  /** IDR0.ATOSNS: set when address translation operations are NOT supported. */
  atosns: boolean;
  /** IDR0.NUMSIDB: stream-ID bits. */
  numSidB: number;
  /** IDR0.NUMSMRG: stream match register groups. */
  numSmrg: number;
  /** IDR0.NUMIRPT, IDR0.CTTW, IDR0.EXIDS (extended stream IDs: not modelled). */
  numIrpt: number;
  cttw: boolean;
  exids: boolean;
  /** IDR1.PAGESIZE: log2 of the register page (12 or 16). */
  pageShift: number;
  /** NUMPAGE = 2^(IDR1.NUMPAGENDXB + 1): pages in each half of the SMMU address space. */
  numPage: number;
  /** IDR1.NUMS2CB: banks 0..NUMS2CB-1 support stage 2 only. */
  numS2Cb: number;
  /** IDR1.NUMCB: context banks. */
  numCb: number;
  /** IDR2.VMID16, PTFS_4K/16K/64K, UBS/OAS/IAS in bits. */
  vmid16: boolean;
  granules: { 4: boolean; 16: boolean; 64: boolean };
  ubsBits: number;
  oasBits: number;
  iasBits: number;
  /** Number of S2CR entries: NUMSMRG with stream matching, 2^NUMSIDB with stream indexing. */
  numS2cr: number;
}

/** Decodes IDR0..2; throws SmmuConfigError for an impossible instance. */
export function decodeIds(id0: number, id1: number, id2: number): SmmuFeatures {
  id0 >>>= 0;
  id1 >>>= 0;
  id2 >>>= 0;
  const sms = ((id0 >>> 27) & 1) === 1;
  const numSidB = (id0 >>> 9) & 0xf;
  const numSmrg = id0 & 0xff;
  const numCb = id1 & 0xff;
  const numS2Cb = (id1 >>> 16) & 0xff;
  const f: SmmuFeatures = {
    id0,
    id1,
    id2,
    s1ts: ((id0 >>> 30) & 1) === 1,
    s2ts: ((id0 >>> 29) & 1) === 1,
    nts: ((id0 >>> 28) & 1) === 1,
    sms,
    atosns: ((id0 >>> 26) & 1) === 1,
    numSidB,
    numSmrg,
    numIrpt: (id0 >>> 16) & 0xff,
    cttw: ((id0 >>> 14) & 1) === 1,
    exids: ((id0 >>> 8) & 1) === 1,
    pageShift: ((id1 >>> 31) & 1) === 1 ? 16 : 12,
    numPage: 1 << (((id1 >>> 28) & 7) + 1),
    numS2Cb,
    numCb,
    vmid16: ((id2 >>> 15) & 1) === 1,
    granules: { 4: ((id2 >>> 12) & 1) === 1, 16: ((id2 >>> 13) & 1) === 1, 64: ((id2 >>> 14) & 1) === 1 },
    ubsBits: idSizeBits((id2 >>> 8) & 0xf),
    oasBits: idSizeBits((id2 >>> 4) & 0xf),
    iasBits: idSizeBits(id2 & 0xf),
    numS2cr: sms ? numSmrg : 1 << numSidB,
  };
  if (!f.s1ts && !f.s2ts) throw new SmmuConfigError('IDR0: neither stage 1 (S1TS) nor stage 2 (S2TS) is implemented');
  if (f.nts && !(f.s1ts && f.s2ts)) throw new SmmuConfigError('IDR0.NTS (nesting) needs both S1TS and S2TS');
  if (sms && numSmrg === 0) throw new SmmuConfigError('IDR0.SMS is set but NUMSMRG is 0');
  if (numCb === 0) throw new SmmuConfigError('IDR1.NUMCB is 0');
  if (numS2Cb > numCb) throw new SmmuConfigError(`IDR1.NUMS2CB (${numS2Cb}) exceeds NUMCB (${numCb})`);
  if (numCb > f.numPage) throw new SmmuConfigError(`IDR1.NUMCB (${numCb}) exceeds NUMPAGE (${f.numPage}) context-bank pages`);
  if (!f.granules[4] && !f.granules[16] && !f.granules[64]) throw new SmmuConfigError('IDR2: no translation granule (PTFS_4K/16K/64K) is supported');
  return f;
}

export interface SmmuShape {
  s1?: boolean;
  s2?: boolean;
  nested?: boolean;
  /** Stream matching with this many SMRs; 0 = stream indexing. */
  smrs?: number;
  sidBits?: number;
  contextBanks?: number;
  s2OnlyBanks?: number;
  /** 4 or 64 (KiB register pages). */
  pageKiB?: 4 | 64;
  /** NUMPAGENDXB (0..7). */
  numPageNdxb?: number;
  granules?: Array<4 | 16 | 64>;
  ias?: number;
  oas?: number;
  ubs?: number;
  vmid16?: boolean;
  ats?: boolean;
}

/** Builds IDR0..2 values from named features (defaults: an MMU-500-like instance). */
export function encodeIds(s: SmmuShape = {}): { id0: number; id1: number; id2: number } {
  const smrs = s.smrs ?? 48;
  const sidBits = s.sidBits ?? 15;
  const cbs = s.contextBanks ?? 16;
  const numPageNdxb = s.numPageNdxb ?? Math.max(0, Math.ceil(Math.log2(Math.max(cbs, 2))) - 1);
  const grans = s.granules ?? [4, 16, 64];
  if (!Number.isInteger(sidBits) || sidBits < 0 || sidBits > 15) throw new SmmuConfigError(`stream-ID bits must be 0..15 (IDR0.NUMSIDB), got ${sidBits}`);
  if (!Number.isInteger(smrs) || smrs < 0 || smrs > 255) throw new SmmuConfigError(`SMRs must be 0..255 (IDR0.NUMSMRG), got ${smrs}`);
  if (!Number.isInteger(cbs) || cbs < 1 || cbs > 255) throw new SmmuConfigError(`context banks must be 1..255 (IDR1.NUMCB), got ${cbs}`);
  const id0 =
    ((s.s1 ?? true ? 1 : 0) << 30) |
    ((s.s2 ?? true ? 1 : 0) << 29) |
    ((s.nested ?? true ? 1 : 0) << 28) |
    ((smrs > 0 ? 1 : 0) << 27) |
    ((s.ats ?? true ? 0 : 1) << 26) |
    (1 << 16) |
    ((sidBits & 0xf) << 9) |
    (smrs & 0xff);
  const id1 = ((s.pageKiB ?? 4) === 64 ? 1 << 31 : 0) | ((numPageNdxb & 7) << 28) | (((s.s2OnlyBanks ?? 0) & 0xff) << 16) | (cbs & 0xff);
  const id2 =
    ((s.vmid16 ?? true ? 1 : 0) << 15) |
    ((grans.includes(64) ? 1 : 0) << 14) |
    ((grans.includes(16) ? 1 : 0) << 13) |
    ((grans.includes(4) ? 1 : 0) << 12) |
    (idSizeCode(s.ubs ?? 48) << 8) |
    (idSizeCode(s.oas ?? 48) << 4) |
    idSizeCode(s.ias ?? 48);
  return { id0: id0 >>> 0, id1: id1 >>> 0, id2: id2 >>> 0 };
}
