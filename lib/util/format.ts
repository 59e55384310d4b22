/**
 * Formatting of numbers as messages quote them.
 *
 * @packageDocumentation
 */

/**
 * Formats an integer (a byte count, an offset, a block id) with thousands separators, as error
 * messages quote them: `8,388,608`.
 */
export function formatCount(n: number | bigint): string {
  return n.toLocaleString('en-US');
}
