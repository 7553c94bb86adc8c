// Percentiles and their printing, shared by every bench scenario (and the chat clients' worker).

export interface Percentiles {
  n: number;
  p50: number;
  p95: number;
  p99: number;
}

export function stats(samples: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) =>
    sorted.length
      ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number)
      : Number.NaN;
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

export const fmt = (s: Percentiles) =>
  `p50 ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms`;

export const ratio = (a: number, b: number) => (a / b).toFixed(2);

/** The median of some figures (NaN for none): what every reported number of the runner is. */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
