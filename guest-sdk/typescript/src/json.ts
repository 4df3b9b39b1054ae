/**
 * JSON read exactly: numbers stay their text (`JSON.parse` would turn
 * `1.0000000000000001` into a float), and a key given twice in one object
 * is refused.
 */

/** A JSON number, kept as written. */
export class JsonNumber {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type Json = null | boolean | string | JsonNumber | Json[] | { [key: string]: Json };

export class JsonError extends Error {}

const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;
const MAX_DEPTH = 64;

export function parseJson(text: string): Json {
  let i = 0;
  const fail = (what: string): never => {
    const before = text.slice(0, i);
    const line = before.split("\n").length;
    const column = i - before.lastIndexOf("\n");
    throw new JsonError(`${what} at line ${line} column ${column}`);
  };
  const skip = () => {
    WHITESPACE.lastIndex = i;
    WHITESPACE.exec(text);
    i = WHITESPACE.lastIndex;
  };
  const string = (): string => {
    let out = "";
    i++; // the opening quote
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c === "\\") {
        const e = text[i + 1];
        const simple: Record<string, string> = {
          '"': '"',
          "\\": "\\",
          "/": "/",
          b: "\b",
          f: "\f",
          n: "\n",
          r: "\r",
          t: "\t",
        };
        if (e !== undefined && e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else {
          fail("invalid escape");
        }
      } else if (c < " ") {
        fail("control character in string");
      } else {
        out += c;
        i++;
      }
    }
  };
  const value = (depth: number): Json => {
    if (depth > MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH}`);
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: { [key: string]: Json } = {};
      skip();
      if (text[i] === "}") {
        i++;
        return out;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail("expected a key");
        const key = string();
        if (Object.prototype.hasOwnProperty.call(out, key)) fail(`duplicate field \`${key}\``);
        skip();
        if (text[i] !== ":") fail("expected `:`");
        i++;
        Object.defineProperty(out, key, {
          value: value(depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        skip();
        if (text[i] === ",") {
          i++;
        } else if (text[i] === "}") {
          i++;
          return out;
        } else {
          fail("expected `,` or `}`");
        }
      }
    }
    if (c === "[") {
      i++;
      const out: Json[] = [];
      skip();
      if (text[i] === "]") {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        skip();
        if (text[i] === ",") {
          i++;
        } else if (text[i] === "]") {
          i++;
          return out;
        } else {
          fail("expected `,` or `]`");
        }
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m === null) fail("expected a value");
    i = NUMBER.lastIndex;
    return new JsonNumber(m![0]);
  };
  const out = value(0);
  skip();
  if (i !== text.length) fail("trailing characters");
  return out;
}
