/**
 * Reading untrusted JSON documents field by field, with errors that name the
 * file, the JSON path of the bad field and what is wrong. The file formats
 * (vmsa-case/1, smmu-script/1) each give their own error type.
 */

/** A short rendering of a JSON value for an error message. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

export class JsonReader {
  constructor(
    readonly file: string,
    private readonly makeError: (file: string, path: string, problem: string) => Error,
  ) {}

  fail(path: string, problem: string): never {
    throw this.makeError(this.file, path, problem);
  }

  /** The document `text` as its top-level object (`$`); fails if it is not valid JSON or not an object. */
  document(text: string): Record<string, unknown> {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      this.fail('$', `not valid JSON (${(e as Error).message})`);
    }
    return this.object(doc, '$');
  }

  object(v: unknown, path: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `expected an object, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, got ${describe(v)}`);
    return v;
  }

  /** A 64-bit value written as "0x" and 1 to 16 hex digits. */
  hex64(v: unknown, path: string, what = 'a 64-bit number as a "0x..." hex string (at most 16 digits)'): bigint {
    if (typeof v !== 'string' || !/^0x[0-9a-fA-F]{1,16}$/.test(v)) this.fail(path, `expected ${what}, got ${describe(v)}`);
    return BigInt(v);
  }

  int(v: unknown, path: string, ok: (n: number) => boolean, what: string): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || !ok(v)) this.fail(path, `expected ${what}, got ${describe(v)}`);
    return v;
  }

  bool(v: unknown, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, `expected true or false, got ${describe(v)}`);
    return v;
  }
}
