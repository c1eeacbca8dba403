/**
 * What a walk returns: the translation, or a fault. One reusable object per
 * caller, so a walk allocates nothing.
 */

/** Access kinds, combined into one number: kind | (unprivileged ? ACC_UNPRIV : 0). */
export const ACC_READ = 0;
export const ACC_WRITE = 1;
export const ACC_EXEC = 2;
export const ACC_KIND_MASK = 3;
/** The access is unprivileged (EL0; an SMMU transaction with the privileged attribute clear). */
export const ACC_UNPRIV = 4;

/** Fault types (Arm ARM D8.13 "MMU faults"; SMMU_CBn_FSR TF/AFF/PF/EF and address-size). */
export const FAULT_NONE = 0;
export const FAULT_TRANSLATION = 1;
export const FAULT_ACCESS_FLAG = 2;
export const FAULT_PERMISSION = 3;
export const FAULT_ADDRESS_SIZE = 4;
/** Synchronous external abort on a translation table walk (the descriptor address is not in RAM). */
export const FAULT_EXTERNAL = 5;

export const FAULT_NAMES = ['none', 'translation', 'access-flag', 'permission', 'address-size', 'external'] as const;
export type FaultName = (typeof FAULT_NAMES)[number];

/** Effective permission bits of a translation (stage 1 and stage 2 combined). */
export const PERM_PR = 1; // privileged read
export const PERM_PW = 2; // privileged write
export const PERM_PX = 4; // privileged execute
export const PERM_UR = 8; // unprivileged read
export const PERM_UW = 16; // unprivileged write
export const PERM_UX = 32; // unprivileged execute
export const PERM_ALL = 63;

/** The permission bit an access needs. */
export function permFor(acc: number): number {
  const kind = acc & ACC_KIND_MASK;
  const bit = kind === ACC_WRITE ? PERM_PW : kind === ACC_EXEC ? PERM_PX : PERM_PR;
  return (acc & ACC_UNPRIV) !== 0 ? bit << 3 : bit;
}

export class WalkResult {
  /** FAULT_NONE on success, else the fault type. */
  fault = FAULT_NONE;
  /** 1 or 2: the stage that faulted. */
  faultStage = 0;
  /** The lookup level that faulted (for s1ptw faults, the stage-2 level). */
  faultLevel = 0;
  /** A stage-2 fault taken while fetching a stage-1 descriptor (SMMU_CBn_FSYNR0.S1PTW). */
  s1ptw = false;
  /** For stage-2 faults, the IPA being translated (SMMU_CBn_IPAFAR); -1 otherwise. */
  faultIpa = -1;

  // Address fields start as non-integers so V8 gives them a double representation from the start.
  /** The output (physical) address. */
  pa = 0.5;
  /** The intermediate physical address (the stage-1 output, or the input when stage 1 is off). */
  ipa = 0.5;
  /** Leaf level at stage 1 and stage 2 (-1 when that stage is off). */
  s1Level = -1;
  s2Level = -1;
  /** log2 of the mapping size a TLB may cache: the smaller of the two stages' leaves. */
  sizeShift = 0;
  /** log2 of the stage-1 leaf's size and of the stage-2 leaf's size (0 when that stage is off). */
  s1SizeShift = 0;
  s2SizeShift = 0;
  /** Effective permissions, PERM_* bits, both stages combined. */
  perm = 0;
  /** Stage 1 AttrIndx, SH, nG (0/1). */
  attrIndx = 0;
  sh = 0;
  nG = 0;
  /** Stage 2 MemAttr and SH. */
  memAttr = 0;
  s2Sh = 0;
  /** Descriptors read by this walk (both stages). */
  reads = 0;
  /** log2 of the leaf size of the last stage-2 walk (including walks for stage-1 table fetches). */
  lastS2Shift = 0;
  /** Walker scratch: the input and output of the stage-2 walk in progress. */
  s2In = 0.5;
  s2Out = 0.5;

  get ok(): boolean {
    return this.fault === FAULT_NONE;
  }

  get faultName(): FaultName {
    return FAULT_NAMES[this.fault]!;
  }

  /** Clears the per-walk state (the walker calls it). */
  reset(): void {
    this.fault = FAULT_NONE;
    this.faultStage = 0;
    this.faultLevel = 0;
    this.s1ptw = false;
    this.faultIpa = -1;
    this.s1Level = -1;
    this.s2Level = -1;
    this.s1SizeShift = 0;
    this.s2SizeShift = 0;
    this.reads = 0;
  }

  /** A plain-object copy, for reports and tests (allocates). */
  snapshot(): WalkSnapshot {
    if (this.fault !== FAULT_NONE) {
      return {
        fault: { type: this.faultName, stage: this.faultStage, level: this.faultLevel, s1ptw: this.s1ptw, ipa: this.faultIpa },
        reads: this.reads,
      };
    }
    return {
      pa: this.pa,
      ipa: this.ipa,
      s1Level: this.s1Level,
      s2Level: this.s2Level,
      sizeShift: this.sizeShift,
      perm: this.perm,
      attrIndx: this.attrIndx,
      sh: this.sh,
      nG: this.nG,
      memAttr: this.memAttr,
      s2Sh: this.s2Sh,
      reads: this.reads,
    };
  }
}

export type WalkSnapshot =
  | { fault: { type: FaultName; stage: number; level: number; s1ptw: boolean; ipa: number }; reads: number }
  | {
      pa: number;
      ipa: number;
      s1Level: number;
      s2Level: number;
      sizeShift: number;
      perm: number;
      attrIndx: number;
      sh: number;
      nG: number;
      memAttr: number;
      s2Sh: number;
      reads: number;
    };
