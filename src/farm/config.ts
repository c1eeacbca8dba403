/**
 * Decoded translation contexts in shared memory: each context is a decoded
 * regime (the walker's plain configuration) written as CTX_FIELDS numbers,
 * and a stream table maps stream IDs to contexts. The driver side writes them
 * from an SMMU model's registers; the units read them back into Regime
 * objects whenever CTL_CONFIG_GEN changes.
 */

import { Regime, type TableRoot } from '../pgtable/regime.js';
import * as R from '../smmu/regs.js';
import type { Smmu } from '../smmu/smmu.js';
import { CTX_FIELDS, MAX_CONTEXTS, MAX_STREAMS } from './layout.js';

/** What a stream's transactions get. */
export const CTX_TRANSLATE = 0;
export const CTX_BYPASS = 1;
export const CTX_ABORT = 2;

const ROOT_FIELDS = 9;

function putRoot(f: Float64Array, o: number, r: TableRoot): void {
  f[o] = r.enabled ? 1 : 0;
  f[o + 1] = r.granuleShift;
  f[o + 2] = r.stride;
  f[o + 3] = r.startLevel;
  f[o + 4] = r.inputBits;
  f[o + 5] = r.rootIndexBits;
  f[o + 6] = r.base;
  f[o + 7] = r.outputBits;
  f[o + 8] = r.tsz;
}

function getRoot(f: Float64Array, o: number, r: TableRoot): void {
  r.enabled = f[o] === 1;
  r.granuleShift = f[o + 1]!;
  r.stride = f[o + 2]!;
  r.startLevel = f[o + 3]!;
  r.inputBits = f[o + 4]!;
  r.rootIndexBits = f[o + 5]!;
  r.base = f[o + 6]!;
  r.outputBits = f[o + 7]!;
  r.tsz = f[o + 8]!;
}

/** Writes context `i`: a mode (CTX_*) and, for CTX_TRANSLATE, the regime. */
export function writeContext(config: Float64Array, i: number, mode: number, regime: Regime | null): void {
  if (i < 0 || i >= MAX_CONTEXTS) throw new RangeError(`context index ${i} is outside 0..${MAX_CONTEXTS - 1}`);
  const o = i * CTX_FIELDS;
  config.fill(0, o, o + CTX_FIELDS);
  config[o] = mode;
  if (regime === null) return;
  config[o + 1] = regime.s1 ? 1 : 0;
  config[o + 2] = regime.s2 ? 1 : 0;
  config[o + 3] = regime.wxn ? 1 : 0;
  config[o + 4] = regime.asid;
  config[o + 5] = regime.vmid;
  config[o + 6] = regime.cb;
  putRoot(config, o + 7, regime.ttbr0);
  putRoot(config, o + 7 + ROOT_FIELDS, regime.ttbr1);
  putRoot(config, o + 7 + 2 * ROOT_FIELDS, regime.vttbr);
}

/** Reads context `i` into `regime` (reused); returns its mode. */
export function readContext(config: Float64Array, i: number, regime: Regime): number {
  const o = i * CTX_FIELDS;
  regime.s1 = config[o + 1] === 1;
  regime.s2 = config[o + 2] === 1;
  regime.wxn = config[o + 3] === 1;
  regime.asid = config[o + 4]!;
  regime.vmid = config[o + 5]!;
  regime.cb = config[o + 6]!;
  getRoot(config, o + 7, regime.ttbr0);
  getRoot(config, o + 7 + ROOT_FIELDS, regime.ttbr1);
  getRoot(config, o + 7 + 2 * ROOT_FIELDS, regime.vttbr);
  return config[o]!;
}

/**
 * Snapshots what an SMMU model does with each of `sids`: the context bank its stream map
 * selects, decoded, or bypass, or abort. Banks whose configuration needs a fault at level 0
 * (a register value the walker cannot use), invalid banks, conflicts and faulting streams
 * abort. Returns the number of contexts written.
 */
export function snapshotSmmu(smmu: Smmu, sids: number[], config: Float64Array, streams: Int32Array): number {
  const scr0 = smmu.read32(R.GR0_sCR0);
  const byBank = new Map<number, number>();
  let next = 0;
  const ABORT = next++;
  writeContext(config, ABORT, CTX_ABORT, null);
  const BYPASS = next++;
  writeContext(config, BYPASS, CTX_BYPASS, null);
  for (const sid of sids) {
    if (sid < 0 || sid >= MAX_STREAMS) throw new RangeError(`stream ID ${sid} is outside 0..${MAX_STREAMS - 1}`);
    let ctx = ABORT;
    if ((scr0 & R.sCR0_CLIENTPD) !== 0) ctx = BYPASS;
    else {
      const idx = smmu.streamIndex(sid);
      if (idx === -1) ctx = (scr0 & R.sCR0_USFCFG) !== 0 ? ABORT : BYPASS;
      else if (idx >= 0) {
        const s2cr = smmu.read32(R.GR0_S2CR + 4 * idx);
        const type = (s2cr >>> R.S2CR_TYPE_SHIFT) & 3;
        const cb = s2cr & R.S2CR_CBNDX_MASK;
        if (type === R.S2CR_TYPE_BYPASS) ctx = BYPASS;
        else if (type === R.S2CR_TYPE_TRANS && cb < smmu.features.numCb) {
          const bank = smmu.context(cb);
          if (bank.mode === 'bypass') ctx = BYPASS;
          else if (bank.mode === 'translate' && bank.configFaultStage === 0 && !bank.s2Fault) {
            let i = byBank.get(cb);
            if (i === undefined) {
              i = next++;
              writeContext(config, i, CTX_TRANSLATE, bank.regime);
              byBank.set(cb, i);
            }
            ctx = i;
          }
        }
      }
    }
    streams[sid] = ctx;
  }
  return next;
}
