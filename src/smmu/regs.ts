/**
 * SMMUv2 register offsets and fields (Arm IHI 0062, chapter 10, with the
 * offsets Linux's arm-smmu driver uses), in the specification's names.
 */

// ---- Global register space 0 (GR0, page 0) ----
export const GR0_sCR0 = 0x0;
export const GR0_sACR = 0x10;
export const GR0_IDR0 = 0x20;
export const GR0_IDR7 = 0x3c;
export const GR0_sGFAR = 0x40;
export const GR0_sGFSR = 0x48;
export const GR0_sGFSRRESTORE = 0x4c;
export const GR0_sGFSYNR0 = 0x50;
export const GR0_sGFSYNR1 = 0x54;
export const GR0_sGFSYNR2 = 0x58;
export const GR0_TLBIVMID = 0x64;
export const GR0_TLBIALLNSNH = 0x68;
export const GR0_TLBIALLH = 0x6c;
export const GR0_sTLBGSYNC = 0x70;
export const GR0_sTLBGSTATUS = 0x74;
/** Global address translation operations: value = VA[63:12] | NDX[7:0] (the context bank). */
export const GR0_GATS1UR = 0x100;
export const GR0_GATS1UW = 0x108;
export const GR0_GATS1PR = 0x110;
export const GR0_GATS1PW = 0x118;
export const GR0_GATS12UR = 0x120;
export const GR0_GATS12UW = 0x128;
export const GR0_GATS12PR = 0x130;
export const GR0_GATS12PW = 0x138;
export const GR0_GPAR = 0x180;
export const GR0_GATSR = 0x188;
export const GR0_SMR = 0x800;
export const GR0_S2CR = 0xc00;

// sCR0 fields
export const sCR0_CLIENTPD = 1 << 0;
export const sCR0_GFRE = 1 << 1;
export const sCR0_GFIE = 1 << 2;
export const sCR0_USFCFG = 1 << 10;
export const sCR0_SMCFCFG = 1 << 21;
export const sCR0_VMID16EN = 1 << 31;

// sGFSR fields
export const sGFSR_ICF = 1 << 0;
export const sGFSR_USF = 1 << 1;
export const sGFSR_SMCF = 1 << 2;
export const sGFSR_UCBF = 1 << 3;
export const sGFSR_UCIF = 1 << 4;
export const sGFSR_CAF = 1 << 5;
export const sGFSR_EF = 1 << 6;
export const sGFSR_PF = 1 << 7;
export const sGFSR_UUT = 1 << 8;
export const sGFSR_MULTI = 1 << 31;
/** The write-1-to-clear bits of sGFSR. */
export const sGFSR_W1C = (0x1ff | sGFSR_MULTI) >>> 0;

// sGFSYNR0 fields
export const sGFSYNR0_NESTED = 1 << 0;
export const sGFSYNR0_WNR = 1 << 1;
export const sGFSYNR0_PNU = 1 << 2;
export const sGFSYNR0_IND = 1 << 3;

// SMR fields
export const SMR_VALID = 1 << 31;
export const SMR_MASK_SHIFT = 16;

// S2CR fields
export const S2CR_CBNDX_MASK = 0xff;
export const S2CR_TYPE_SHIFT = 16;
export const S2CR_TYPE_TRANS = 0;
export const S2CR_TYPE_BYPASS = 1;
export const S2CR_TYPE_FAULT = 2;

// ---- Global register space 1 (GR1, page 1) ----
export const GR1_CBAR = 0x0;
export const GR1_CBFRSYNRA = 0x400;
export const GR1_CBA2R = 0x800;

// CBAR fields
export const CBAR_TYPE_SHIFT = 16;
export const CBAR_TYPE_S2_TRANS = 0;
export const CBAR_TYPE_S1_TRANS_S2_BYPASS = 1;
export const CBAR_TYPE_S1_TRANS_S2_FAULT = 2;
export const CBAR_TYPE_S1_TRANS_S2_TRANS = 3;
/** CBAR.VMID[7:0] (type 0); CBAR.CBNDX[15:8] names the stage-2 bank of a nested (type 3) bank. */
export const CBAR_VMID_MASK = 0xff;
export const CBAR_CBNDX_SHIFT = 8;

// CBA2R fields
export const CBA2R_VA64 = 1 << 0;
export const CBA2R_VMID16_SHIFT = 16;

// ---- Context bank n (page NUMPAGE + n) ----
export const CB_SCTLR = 0x0;
export const CB_ACTLR = 0x4;
export const CB_RESUME = 0x8;
export const CB_TCR2 = 0x10;
export const CB_TTBR0 = 0x20;
export const CB_TTBR1 = 0x28;
export const CB_TCR = 0x30;
export const CB_CONTEXTIDR = 0x34;
export const CB_MAIR0 = 0x38;
export const CB_MAIR1 = 0x3c;
export const CB_PAR = 0x50;
export const CB_FSR = 0x58;
export const CB_FSRRESTORE = 0x5c;
export const CB_FAR = 0x60;
export const CB_FSYNR0 = 0x68;
export const CB_FSYNR1 = 0x6c;
export const CB_IPAFAR = 0x70;
export const CB_TLBIVA = 0x600;
export const CB_TLBIVAA = 0x608;
export const CB_TLBIASID = 0x610;
export const CB_TLBIALL = 0x618;
export const CB_TLBIVAL = 0x620;
export const CB_TLBIVAAL = 0x628;
export const CB_TLBIIPAS2 = 0x630;
export const CB_TLBIIPAS2L = 0x638;
export const CB_TLBSYNC = 0x7f0;
export const CB_TLBSTATUS = 0x7f4;
export const CB_ATS1PR = 0x800;
export const CB_ATS1PW = 0x808;
export const CB_ATS1UR = 0x810;
export const CB_ATS1UW = 0x818;
export const CB_ATSR = 0x8f0;

// SCTLR fields
export const SCTLR_M = 1 << 0;
export const SCTLR_TRE = 1 << 1;
export const SCTLR_AFE = 1 << 2;
export const SCTLR_E = 1 << 4;
export const SCTLR_CFRE = 1 << 5;
export const SCTLR_CFIE = 1 << 6;
export const SCTLR_CFCFG = 1 << 7;
export const SCTLR_HUPCF = 1 << 8;
export const SCTLR_WXN = 1 << 9;

// TCR2 fields (AArch64 stage-1 banks)
export const TCR2_PASIZE_MASK = 0x7;
export const TCR2_AS = 1 << 4;

// FSR fields
export const FSR_TF = 1 << 1;
export const FSR_AFF = 1 << 2;
export const FSR_PF = 1 << 3;
export const FSR_EF = 1 << 4;
export const FSR_TLBMCF = 1 << 5;
export const FSR_TLBLKF = 1 << 6;
export const FSR_ASF = 1 << 7;
export const FSR_UUT = 1 << 8;
export const FSR_SS = 1 << 30;
export const FSR_MULTI = 1 << 31;
/** Fault bits that make a later fault a MULTI. */
export const FSR_FAULT_BITS = 0x1fe;
/** Write-1-to-clear bits: the fault bits and MULTI; SS is cleared only by a RESUME write. */
export const FSR_W1C = (FSR_FAULT_BITS | FSR_MULTI) >>> 0;

// FSYNR0 fields
export const FSYNR0_PLVL_MASK = 0x3;
export const FSYNR0_WNR = 1 << 4;
export const FSYNR0_PNU = 1 << 5;
export const FSYNR0_IND = 1 << 6;
export const FSYNR0_PTWF = 1 << 10;
export const FSYNR0_AFR = 1 << 11;
export const FSYNR0_S1CBNDX_SHIFT = 16;

// RESUME
export const RESUME_TNR = 1 << 0;

// PAR (AArch64 format): F = 1 on a fault, then the FSR-style fault bits and the level
export const PAR_F = 1 << 0;
