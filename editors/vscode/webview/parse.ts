/**
 * Tiny runtime parsers for JSON that crosses a trust boundary (page <-> host).
 *
 * "Parse, don't validate": a parser returns a fresh value holding only the keys it
 * knows, or throws {@link ParseError} naming the bad field. Shared by the webview page
 * and the extension host, so this module must not use DOM or Node APIs.
 */

export class ParseError extends Error {
  constructor(
    readonly path: string,
    readonly expected: string,
  ) {
    super(`${path || 'message'}: expected ${expected}`);
    this.name = 'ParseError';
  }
}

/** Parses an unknown value into `T` or throws {@link ParseError}. */
export type Parser<T> = (value: unknown, path: string) => T;

/** Caps every string so a runaway peer cannot make the other side allocate without bound. */
export const MAX_STRING = 4 * 1024 * 1024;

export const str: Parser<string> = (v, p) => {
  if (typeof v !== 'string' || v.length > MAX_STRING) throw new ParseError(p, 'a string');
  return v;
};

export const num: Parser<number> = (v, p) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ParseError(p, 'a number');
  return v;
};

export const bool: Parser<boolean> = (v, p) => {
  if (typeof v !== 'boolean') throw new ParseError(p, 'a boolean');
  return v;
};

/** One of a closed set of string literals. */
export function literal<const L extends string>(...values: L[]): Parser<L> {
  return (v, p) => {
    if (typeof v !== 'string' || !(values as string[]).includes(v)) {
      throw new ParseError(p, `one of ${values.join(', ')}`);
    }
    return v as L;
  };
}

/** A missing key (or `undefined`) parses to `fallback`. */
export function withDefault<T>(parser: Parser<T>, fallback: T): Parser<T> {
  return (v, p) => (v === undefined ? fallback : parser(v, p));
}

/** `null` and a missing key both parse to `null`. */
export function nullable<T>(parser: Parser<T>): Parser<T | null> {
  return (v, p) => (v === undefined || v === null ? null : parser(v, p));
}

export function optional<T>(parser: Parser<T>): Parser<T | undefined> {
  return (v, p) => (v === undefined ? undefined : parser(v, p));
}

export function array<T>(item: Parser<T>, max = 10_000): Parser<T[]> {
  return (v, p) => {
    if (!Array.isArray(v) || v.length > max) throw new ParseError(p, 'an array');
    return v.map((x, i) => item(x, `${p}[${i}]`));
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Any JSON object, kept as is (tool arguments are free-form by design). */
export const jsonObject: Parser<Record<string, unknown>> = (v, p) => {
  if (!isRecord(v)) throw new ParseError(p, 'an object');
  return v;
};

/** Strings by name, e.g. environment variables. */
export const stringRecord: Parser<Record<string, string>> = (v, p) => {
  const obj = jsonObject(v, p);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(obj)) out[k] = str(val, `${p}.${k}`);
  return out;
};

/** The parser for each key of `T`; the compiler checks that every key has one. */
export type Shape<T> = { [K in keyof T]-?: Parser<T[K]> };

/** An object with exactly the keys of `shape`; other keys are dropped, not copied. */
export function object<T>(shape: Shape<T>): Parser<T> {
  return (v, p) => {
    if (!isRecord(v)) throw new ParseError(p, 'an object');
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape) as (keyof T & string)[]) {
      const value = shape[key](v[key], p ? `${p}.${key}` : key);
      if (value !== undefined) out[key] = value;
    }
    return out as T;
  };
}

/**
 * A union tagged by its `type` key: each member's parser is picked by the tag, and an
 * unknown tag is an error (the peer speaks a newer protocol, or something is wrong).
 */
export function tagged<T extends { type: string }>(members: {
  [K in T['type']]: Parser<Extract<T, { type: K }>>;
}): Parser<T> {
  return (v, p) => {
    if (!isRecord(v) || typeof v.type !== 'string') throw new ParseError(p, 'an object with a type');
    const table = members as Record<string, Parser<T> | undefined>;
    const member = Object.prototype.hasOwnProperty.call(table, v.type) ? table[v.type] : undefined;
    if (!member) throw new ParseError(p ? `${p}.type` : 'type', `a known type, not ${JSON.stringify(v.type)}`);
    return member(v, p);
  };
}

/** `{type: tag, ...shape}` as one member of a {@link tagged} union. */
export function variant<const Tag extends string, T>(
  tag: Tag,
  shape: Shape<T>,
): Parser<{ type: Tag } & NoInfer<T>> {
  const body = object(shape);
  return (v, p) => ({ type: tag, ...body(v, p) });
}
