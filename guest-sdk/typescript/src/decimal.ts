/**
 * Exact decimal amounts: a bigint coefficient and a scale, never a `number`.
 *
 * `Decimal.parse("50.00")` keeps its scale (it prints `50.00`), compares
 * exactly with any other decimal (`50.00` equals `50`), and sums exactly.
 */

// The contract's grammar: an optional `-`, digits, optionally `.` and digits.
const GRAMMAR = /^-?[0-9]+(\.[0-9]+)?$/;
const MAX_SCALE = 28;
const MAX_DIGITS = 29;

export class Decimal {
  /** The value is `coefficient / 10^scale`. */
  private constructor(
    readonly coefficient: bigint,
    readonly scale: number,
  ) {}

  static readonly ZERO = new Decimal(0n, 0);

  /**
   * An exact decimal in the contract's grammar (`89.00`, `0.02`, `5000`).
   * Refuses exponents, `+`, spaces and anything outside the 96-bit range the
   * host keeps (28 digits after the point, 29 significant).
   */
  static parse(text: string): Decimal {
    if (typeof text !== "string" || !GRAMMAR.test(text)) {
      throw new RangeError(
        `invalid amount ${JSON.stringify(text)}: write digits with an optional \`.\` and more digits, such as 50.00`,
      );
    }
    const negative = text.startsWith("-");
    const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
    if (fraction.length > MAX_SCALE) {
      throw new RangeError(
        `invalid amount ${JSON.stringify(text)}: more than ${MAX_SCALE} digits after the point`,
      );
    }
    if ((whole + fraction).replace(/^0+/, "").length > MAX_DIGITS) {
      throw new RangeError(
        `invalid amount ${JSON.stringify(text)}: more than ${MAX_DIGITS} significant digits`,
      );
    }
    const magnitude = BigInt(whole + fraction);
    return new Decimal(negative ? -magnitude : magnitude, fraction.length);
  }

  /** A whole number of units. */
  static of(units: bigint): Decimal {
    return new Decimal(units, 0);
  }

  private aligned(other: Decimal): [bigint, bigint, number] {
    const scale = Math.max(this.scale, other.scale);
    return [
      this.coefficient * 10n ** BigInt(scale - this.scale),
      other.coefficient * 10n ** BigInt(scale - other.scale),
      scale,
    ];
  }

  /** -1, 0 or 1 as this is less than, equal to or greater than `other`. */
  compare(other: Decimal): -1 | 0 | 1 {
    const [a, b] = this.aligned(other);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  lt(other: Decimal): boolean {
    return this.compare(other) < 0;
  }
  lte(other: Decimal): boolean {
    return this.compare(other) <= 0;
  }
  gt(other: Decimal): boolean {
    return this.compare(other) > 0;
  }
  gte(other: Decimal): boolean {
    return this.compare(other) >= 0;
  }
  /** Equal in value, whatever the scale: `50.00` equals `50`. */
  equals(other: Decimal): boolean {
    return this.compare(other) === 0;
  }

  /** The exact sum, at the larger of the two scales. */
  plus(other: Decimal): Decimal {
    const [a, b, scale] = this.aligned(other);
    return new Decimal(a + b, scale);
  }

  /** The exact difference, at the larger of the two scales. */
  minus(other: Decimal): Decimal {
    const [a, b, scale] = this.aligned(other);
    return new Decimal(a - b, scale);
  }

  /** The exact product by a whole number. */
  times(units: bigint): Decimal {
    return new Decimal(this.coefficient * units, this.scale);
  }

  isPositive(): boolean {
    return this.coefficient > 0n;
  }

  /** As written: `50.00` stays `50.00`. */
  toString(): string {
    const negative = this.coefficient < 0n;
    let digits = (negative ? -this.coefficient : this.coefficient).toString();
    if (this.scale > 0) {
      digits = digits.padStart(this.scale + 1, "0");
      digits = `${digits.slice(0, -this.scale)}.${digits.slice(-this.scale)}`;
    }
    return negative ? `-${digits}` : digits;
  }

  toJSON(): string {
    return this.toString();
  }
}
