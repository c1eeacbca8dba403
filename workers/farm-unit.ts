/**
 * Worker entry for the translation farm (piscina task): one long-lived task
 * per worker thread runs a translation unit's loop until the farm stops it.
 * See src/farm/unit.ts for the protocol and src/farm/layout.ts for the layout.
 */

import { Unit, type UnitInit, type UnitSummary } from '../src/farm/unit.js';

export default function runUnit(init: UnitInit): UnitSummary {
  return new Unit(init).loop();
}
