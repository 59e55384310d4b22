/**
 * Parsers of option values, for commander's `Option.argParser()`. Each throws commander's
 * `InvalidArgumentError` with what the value must be ("must be an integer from 1 to 64"); the
 * command runner turns that into `--flag must be ..., not 'VALUE'` (or names the environment
 * variable the value came from) and exit code 2.
 *
 * @packageDocumentation
 */
import { InvalidArgumentError } from 'commander';

const fmt = (n: number): string => n.toLocaleString('en-US');

/** An integer from `min` to `max` (underscores and commas as digit separators are accepted). */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return (text) => {
    const t = text.trim().replace(/[_,]/g, '');
    const n = Number(t);
    if (!/^-?\d+$/.test(t) || !Number.isSafeInteger(n) || n < min || n > max) {
      if (max !== Number.MAX_SAFE_INTEGER) {
        throw new InvalidArgumentError(`must be an integer from ${fmt(min)} to ${fmt(max)}`);
      }
      const what =
        min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer of at least ${fmt(min)}`;
      throw new InvalidArgumentError(`must be ${what}`);
    }
    return n;
  };
}

/** A number of seconds from `min` to `max`. */
export function seconds(min: number, max = 86_400): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a number of seconds from ${min} to ${fmt(max)}`);
    }
    return n;
  };
}

/** One of `choices`, exactly as written. */
export function oneOf<const T extends string>(choices: readonly T[]): (text: string) => T {
  return (text) => {
    if (!(choices as readonly string[]).includes(text)) {
      const list =
        choices.length <= 2 ? choices.join(' or ') : `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)!}`;
      throw new InvalidArgumentError(`must be ${list}`);
    }
    return text as T;
  };
}

/** A comma-separated list of non-empty items (duplicates dropped, order kept). */
export function list(text: string): string[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new InvalidArgumentError('needs a comma-separated list');
  return [...new Set(items)];
}

/** `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), for boolean environment fallbacks. */
export function boolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(t)) return true;
  if (['false', '0', 'no', 'off', ''].includes(t)) return false;
  throw new InvalidArgumentError('must be true or false');
}

/** A `HOST:PORT` to listen on or connect to (`[::1]:8000` for IPv6; port 0 lets the OS choose). */
export function hostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65_535) throw new InvalidArgumentError('must be HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000');
  return { host: m[1] ?? m[2]!, port };
}
