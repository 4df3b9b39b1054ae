/**
 * Reading a tenant's configuration document into the policy's own type.
 *
 * The document is JSON read exactly (numbers as written, duplicate keys
 * refused), merged over the policy's defaults, then read with a schema built
 * from the readers below, whose type is the configuration's type:
 *
 * ```ts
 * const schema = config.object({ ceiling: config.positiveAmount, blocked: config.list(config.string) });
 * type Settings = config.Infer<typeof schema>; // { ceiling: Decimal; blocked: string[] }
 * ```
 */

import { Decimal } from "./decimal.js";
import { type Json, JsonError, JsonNumber, parseJson } from "./json.js";
import { type RecipientTrust, type Tier, TIERS, TRUSTS, Window } from "./model.js";

/** A configuration the policy cannot read, saying what is wrong and where. */
export class ConfigError extends Error {}

/** Reads one value of a configuration at `path`. */
export type Reader<T> = (value: Json | undefined, path: string) => T;
export type Infer<R> = R extends Reader<infer T> ? T : never;

const U64_MAX = (1n << 64n) - 1n;

function where(path: string): string {
  return path === "" ? "the configuration" : path;
}

function kind(value: Json | undefined): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (value instanceof JsonNumber) return `the number ${value.text}`;
  if (Array.isArray(value)) return "a list";
  return "an object";
}

/** A required key the document leaves out; the object reading it names it. */
class Missing extends ConfigError {
  constructor(readonly path: string) {
    super(`${where(path)}: missing`);
  }
}

function expected(what: string, value: Json | undefined, path: string): never {
  if (value === undefined) throw new Missing(path);
  throw new ConfigError(`${where(path)}: expected ${what}, found ${kind(value)}`);
}

/** Runs `read`, turning its plain errors into errors naming `path`. */
function at<T>(path: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${where(path)}: ${(e as Error).message}`);
  }
}

export const string: Reader<string> = (v, path) => (typeof v === "string" ? v : expected("a string", v, path));

export const boolean: Reader<boolean> = (v, path) => (typeof v === "boolean" ? v : expected("true or false", v, path));

/** A count or cap: whole, not negative, within 64 bits. */
export const count: Reader<bigint> = (v, path) => {
  if (!(v instanceof JsonNumber) || !/^-?[0-9]+$/.test(v.text)) return expected("a whole number", v, path);
  const n = BigInt(v.text);
  if (n < 0n || n > U64_MAX) throw new ConfigError(`${where(path)}: ${v.text} is out of range (0 to ${U64_MAX})`);
  return n;
};

function decimalOf(v: Json | undefined, path: string): Decimal {
  if (typeof v === "string") return at(path, () => Decimal.parse(v));
  if (v instanceof JsonNumber) {
    // A number is read exactly as written; an exponent is not a decimal the host keeps.
    return at(path, () => Decimal.parse(v.text));
  }
  return expected("a decimal string or number", v, path);
}

/** An exact decimal, written as a string or a number. */
export const decimal: Reader<Decimal> = decimalOf;

/** A decimal greater than zero: a limit, a ceiling, a budget. */
export const positiveAmount: Reader<Decimal> = (v, path) => {
  const amount = decimalOf(v, path);
  if (!amount.isPositive()) throw new ConfigError(`${where(path)}: an amount here must be positive, not ${amount}`);
  return amount;
};

export const window: Reader<Window> = (v, path) =>
  typeof v === "string" ? at(path, () => Window.parse(v)) : expected("a window such as 1h", v, path);

function oneOf<T extends string>(label: string, values: readonly T[]): Reader<T> {
  return (v, path) => {
    if (v === undefined) throw new Missing(path);
    if (typeof v === "string" && (values as readonly string[]).includes(v)) return v as T;
    throw new ConfigError(
      `${where(path)}: unknown ${label} ${typeof v === "string" ? JSON.stringify(v) : kind(v)}: expected one of ${values.join(", ")}`,
    );
  };
}

export const tier: Reader<Tier> = oneOf("tier", TIERS);
export const recipientTrust: Reader<RecipientTrust> = oneOf("recipient trust", TRUSTS);

/** An ISO 3166-1 alpha-2 country code: two capital letters. */
export const jurisdiction: Reader<string> = (v, path) => {
  if (v === undefined) throw new Missing(path);
  if (typeof v === "string" && /^[A-Z]{2}$/.test(v)) return v;
  throw new ConfigError(
    `${where(path)}: ${typeof v === "string" ? JSON.stringify(v) : kind(v)} is not a jurisdiction code: write an ISO 3166-1 alpha-2 code, two capital letters such as "KP"`,
  );
};

export function list<T>(item: Reader<T>): Reader<T[]> {
  return (v, path) => (Array.isArray(v) ? v.map((x, i) => item(x, `${path}[${i}]`)) : expected("a list", v, path));
}

export function optional<T>(inner: Reader<T>): Reader<T | undefined> {
  return (v, path) => (v === undefined || v === null ? undefined : inner(v, path));
}

/** A default for a key the document may leave out. */
export function withDefault<T>(inner: Reader<T>, fallback: () => T): Reader<T> {
  return (v, path) => (v === undefined ? fallback() : inner(v, path));
}

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}

type Fields = { [key: string]: Reader<unknown> };

/** An object with exactly these keys: an unknown key is refused by name, a
 * missing one is refused unless its reader takes `undefined`. */
export function object<F extends Fields>(fields: F): Reader<{ [K in keyof F]: Infer<F[K]> }> {
  const names = Object.keys(fields);
  return (v, path) => {
    if (!isObject(v)) return expected("an object", v, path);
    for (const key of Object.keys(v)) {
      if (!names.includes(key)) {
        const list = names.map((n) => `\`${n}\``).join(", ");
        throw new ConfigError(`${where(path)}: unknown field \`${key}\`, expected one of ${list}`);
      }
    }
    const out: { [key: string]: unknown } = {};
    for (const name of names) {
      const inner = path === "" ? name : `${path}.${name}`;
      const value = Object.prototype.hasOwnProperty.call(v, name) ? v[name] : undefined;
      try {
        out[name] = fields[name](value, inner);
      } catch (e) {
        if (e instanceof Missing && e.path === inner) {
          throw new ConfigError(`${where(path)}: missing field \`${name}\``);
        }
        throw e;
      }
    }
    return out as { [K in keyof F]: Infer<F[K]> };
  };
}

/** The document as JSON; an empty document is `{}`. */
export function parseDocument(text: string): { [key: string]: Json } {
  if (text.trim() === "") return {};
  let doc: Json;
  try {
    doc = parseJson(text);
  } catch (e) {
    if (e instanceof JsonError) throw new ConfigError(e.message);
    throw e;
  }
  if (!isObject(doc)) throw new ConfigError("the configuration must be a JSON object");
  return doc;
}

/** `doc` over `defaults`: objects merge key by key at every depth, except at
 * the dotted paths in `replaceWhole`; anything else the tenant gives replaces
 * the default whole (a tenant's list is the whole list). */
export function merge(defaults: Json, doc: Json, replaceWhole: readonly string[] = [], path = ""): Json {
  if (!isObject(defaults) || !isObject(doc) || replaceWhole.includes(path)) return doc;
  const out: { [key: string]: Json } = {};
  for (const [key, value] of Object.entries(defaults)) {
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  for (const [key, value] of Object.entries(doc)) {
    const inner = path === "" ? key : `${path}.${key}`;
    const merged = Object.prototype.hasOwnProperty.call(defaults, key)
      ? merge(defaults[key], value, replaceWhole, inner)
      : value;
    Object.defineProperty(out, key, { value: merged, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
