/**
 * The caching configurations `smmu-farm replay --caches PRESET` runs scripts with: the presets of
 * src/cache/presets.ts. This is the one place replay learns about them.
 */

import type { TranslationCache } from '../cache/interface.js';
import { makeCache, presetNames } from '../cache/presets.js';

/** The model's default: no caching (NoCache). */
export const DEFAULT_CACHE_PRESET = 'none';

export function cachePresetNames(): string[] {
  return presetNames();
}

/**
 * A factory of fresh caches (one per script's model) for preset `name`; throws an Error naming
 * the valid presets for an unknown one, before any script runs.
 */
export function cacheFactory(name: string): () => TranslationCache {
  const names = presetNames();
  if (!names.includes(name)) throw new Error(`unknown cache preset ${JSON.stringify(name)} (valid presets: ${names.join(', ')})`);
  return () => makeCache(name);
}
