/**
 * Argument checks shared by the public entry points of the transport: every bad argument is a
 * `KvwireError` with `ERR_KVWIRE_INVALID_ARGUMENT` that names the argument and quotes the value,
 * never a TypeError thrown from deep inside (reading a property of `null`, calling a method that
 * a look-alike object lacks, converting a Symbol to a string for a message).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { formatCount } from '../util/format.js';

/** Throws `ERR_KVWIRE_INVALID_ARGUMENT` saying `what` must be `expected`, quoting `value`. */
export function invalid(what: string, expected: string, value: unknown, details: Record<string, unknown> = {}): never {
  throw new KvwireError(
    ErrorCode.INVALID_ARGUMENT,
    `${what} must be ${expected}, not ${describeValue(value)}`,
    details,
  );
}

/**
 * An options argument: `undefined` is `{}`; anything but a plain object (null, a number, a string,
 * an array, a function) is refused.
 */
export function optionsObject<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(what, 'an options object', value);
  return value;
}

/** An optional `signal` option: undefined, or an AbortSignal (a look-alike would fail later, untyped). */
export function signalOption(value: unknown, what = 'signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) invalid(what, 'an AbortSignal', value);
  return value;
}

/** An optional boolean option (truthy look-alikes such as 'false' are refused, not guessed). */
export function booleanOption(value: unknown, what: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') invalid(what, 'true or false', value);
  return value;
}

/** An optional string option, one of `allowed`. */
export function choiceOption<C extends string>(value: unknown, what: string, allowed: readonly C[]): C | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    invalid(
      what,
      allowed
        .map((a) => `'${a}'`)
        .join(', ')
        .replace(/, ([^,]*)$/, ' or $1'),
      value,
    );
  }
  return value as C;
}

/** An optional integer option within [min, max]. */
export function integerOption(value: unknown, what: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    invalid(what, `an integer from ${formatCount(min)} to ${formatCount(max)}`, value);
  }
  return value;
}

/** A required object argument (not null, not a primitive). */
export function objectArgument(value: unknown, what: string, expected = 'an object'): object {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) invalid(what, expected, value);
  return value as object;
}
