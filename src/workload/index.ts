/**
 * DMA workloads (issue D, item 5): stream generators per device, their
 * configurations and presets, and the trace formats. See generators.ts,
 * config.ts and trace.ts.
 */

export * from './batch.js';
export * from './rng.js';
export * from './generators.js';
export * from './config.js';
export * from './trace.js';
