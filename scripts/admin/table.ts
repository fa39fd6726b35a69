/** Columns padded to their widest cell, for people; scripts use --json. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** A time for a table cell: ISO 8601 in UTC to the second (--json keeps the milliseconds). */
export function timeCell(iso: string | null | undefined): string {
  return iso ? new Date(iso).toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}
