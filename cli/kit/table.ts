/**
 * Plain-text tables for the CLI: right-aligned numbers, left-aligned text, no dependencies.
 *
 * @packageDocumentation
 */

/** Renders `rows` under `headers` as an aligned text table. */
export function renderTable(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  // A column is numeric when every cell is a number or a placeholder ('-' or empty: no value).
  const isNumber = (c: string | number | undefined) =>
    typeof c === 'number' || /^[-+]?[\d.,]+(?:[x%]|[KMG]i?B?)?$/.test(String(c));
  const isPlaceholder = (c: string | number | undefined) => c === '-' || c === '';
  const numeric = headers.map(
    (_, i) => rows.some((r) => isNumber(r[i])) && rows.every((r) => isNumber(r[i]) || isPlaceholder(r[i])),
  );
  const width = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(width[i]!) : c.padEnd(width[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
