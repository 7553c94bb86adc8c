import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Records one figure of RELIABILITY.md "Figures every run reports" for `npm run test:chaos`, which
 * gathers them into reports/chaos.json and reports/chaos.md. `key` is stable (the JSON's key), `value`
 * the figure (0 is the target for every loss, leak and mismatch) and `counts` the numbers behind it
 * (cells, requests, messages...). Outside the chaos run (CHAOS_FIGURES unset) it does nothing.
 */
export function figure(key: string, value: number, counts: Record<string, number> = {}, note?: string) {
  const dir = process.env.CHAOS_FIGURES;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const line = JSON.stringify({ key, value, counts, note, at: new Date().toISOString() });
  appendFileSync(join(dir, `${process.pid}.jsonl`), `${line}\n`);
}

/** True in `npm run test:chaos`: suites run their long form (more requests, longer soaks). */
export const chaos = () => Boolean(process.env.CHAOS_FIGURES);
