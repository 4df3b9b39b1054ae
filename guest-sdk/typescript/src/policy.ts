/** A policy: its configuration's schema and defaults, and `classify`. */

import * as config from "./config.js";
import { type Json, JsonNumber } from "./json.js";
import { type Context, type Decision, TIERS, type Tier, type Transaction } from "./model.js";

export interface PolicyDefinition<C> {
  /** Reads the configuration; build it with `config.object(...)`. */
  readonly config: config.Reader<C>;
  /** The configuration's default document, as JSON text or as an object
   * whose numbers are whole (write amounts as strings), merged under the
   * tenant's: objects key by key, except the paths in `replaceWhole`, which
   * the tenant gives whole or not at all; anything else the tenant gives
   * replaces the default. */
  readonly defaults?: string | DefaultsObject;
  readonly replaceWhole?: readonly string[];
  /** The tiers `classify` can return; any other is a malformed answer. */
  readonly tiers?: readonly Tier[];
  /** Checks the configuration beyond its types; throw to refuse it. */
  validate?(config: NoInfer<C>): void;
  /** The tier of `tx` under `config`. */
  classify(config: NoInfer<C>, tx: Transaction, ctx: Context): Decision;
}

/** A policy ready to configure and run, in the sandbox or in a test. */
export interface Policy<C> {
  readonly tiers: readonly Tier[];
  /** The configuration read from the tenant's document over the defaults,
   * or a `config.ConfigError` saying what is wrong and where. */
  configure(text: string): C;
  classify(config: C, tx: Transaction, ctx: Context): Decision;
}

/** Defaults written as an object literal. */
export type DefaultsObject = { readonly [key: string]: DefaultsValue };
type DefaultsValue = null | boolean | string | number | readonly DefaultsValue[] | DefaultsObject;

/** An object literal's defaults as exact JSON: a fractional `number` is
 * refused, since it is already a float, not the decimal that was written. */
function exactDefaults(value: DefaultsValue, path: string): Json {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError(`defaults ${path}: ${value} is not a whole number; write an amount as a string`);
    }
    return new JsonNumber(String(value));
  }
  if (Array.isArray(value)) return value.map((v, i) => exactDefaults(v, `${path}[${i}]`));
  if (typeof value === "object" && value !== null) {
    const out: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, { value: exactDefaults(v as DefaultsValue, path ? `${path}.${k}` : k), enumerable: true });
    }
    return out;
  }
  return value as Json;
}

export function definePolicy<C>(definition: PolicyDefinition<C>): Policy<C> {
  // Read once: for a component, when it is built.
  const given = definition.defaults;
  const defaults: Json =
    given === undefined ? {} : typeof given === "string" ? config.parseDocument(given) : exactDefaults(given, "");
  const replaceWhole = definition.replaceWhole ?? [];
  return {
    tiers: definition.tiers ?? TIERS,
    configure(text: string): C {
      try {
        const merged = config.merge(defaults, config.parseDocument(text), replaceWhole);
        const read = definition.config(merged, "");
        definition.validate?.(read);
        return read;
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        throw new config.ConfigError(`invalid policy configuration: ${message}`);
      }
    },
    classify: (c, tx, ctx) => definition.classify(c, tx, ctx),
  };
}
