// Byte counts for people: the one formatter (progress bars, download and load summaries, device limits,
// memory budgets) and the one parser (--gpu-memory and other size flags).

/**
 * Decimal units by default (kB, MB, GB = 10^3, 10^6, 10^9: what download sizes and rates use);
 * `'binary'` for KiB, MiB, GiB (GPU limits and memory budgets). Two decimals from GB/GiB up, one below.
 * e.g. 152_600_000 -> "152.6 MB"; 2 * 1024 ** 3, 'binary' -> "2.00 GiB"; 512 -> "512 B".
 */
export function formatBytes(bytes: number, units: 'decimal' | 'binary' = 'decimal'): string {
  const [k, names] = units === 'binary' ? [1024, ['KiB', 'MiB', 'GiB', 'TiB']] : [1000, ['kB', 'MB', 'GB', 'TB']];
  let scaled = Math.round(bytes);
  let unit = -1;
  while (Math.abs(scaled) >= k && unit < names.length - 1) {
    scaled /= k;
    unit++;
  }
  if (unit < 0) return `${scaled} B`;
  // 999.96 MB would print as "1000.0 MB": carry into the next unit.
  const digits = unit >= 2 ? 2 : 1;
  if (Number(scaled.toFixed(digits)) >= k && unit < names.length - 1) {
    scaled /= k;
    unit++;
  }
  return `${scaled.toFixed(unit >= 2 ? 2 : 1)} ${names[unit]}`;
}

const SCALE: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3, tb: 1e12, tib: 1024 ** 4 };

/** "24GiB", "512 MiB", "1.5GB", "4096" (bytes) -> bytes, floored; case-insensitive. */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(text);
  if (!m) throw new Error(`cannot read "${text}" as a size; use e.g. 24GiB or 512MiB`);
  return Math.floor(Number(m[1]) * SCALE[(m[2] ?? 'b').toLowerCase()]!);
}
