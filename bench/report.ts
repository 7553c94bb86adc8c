// reports/bench.json and reports/bench.md: each scenario's medians next to its baseline's, the ratio
// and whether the issue's target was met. A number never fails anything; the table says it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Measurement, ScenarioRow } from './types.js';

/** Medians of a measure's repetitions (count, errors and lost summed over them). */
export type Summary = Omit<Measurement, 'serverCpuMs'> & {
  name: string;
  cpuPerRequestUs?: number;
  foreignCpuPct: number;
};

export interface Target {
  scenario: string;
  /** Another measure that already is this scenario, when no measure of this name was run. */
  sameAs?: string;
  baseline: string;
  /** Scenario over baseline, at least. */
  minRatio?: number;
  /** Scenario p99 at most this many times the baseline's. */
  p99Factor?: number;
  p99MaxMs?: number;
  noLoss?: boolean;
  /** Only latency is compared: the ratio is baseline p99 over ours. */
  latencyOnly?: boolean;
}

function targetText(t: Target): string {
  return [
    t.minRatio !== undefined ? `≥ ${t.minRatio.toFixed(2)}` : '',
    t.p99Factor !== undefined ? `p99 ≤ ${t.p99Factor}×` : '',
    t.p99MaxMs !== undefined ? `p99 ≤ ${t.p99MaxMs} ms` : '',
    t.noLoss ? '0 lost' : '',
  ]
    .filter(Boolean)
    .join(', ');
}

export function scenarioRow(t: Target, s: Summary, b: Summary): ScenarioRow {
  const ratio = t.latencyOnly ? b.p99 / s.p99 : s.value / b.value;
  const met =
    s.errors === 0 &&
    Number.isFinite(ratio) &&
    (t.minRatio === undefined || ratio >= t.minRatio) &&
    (t.p99Factor === undefined || s.p99 <= t.p99Factor * b.p99) &&
    (t.p99MaxMs === undefined || s.p99 <= t.p99MaxMs) &&
    (!t.noLoss || (s.lost ?? 0) === 0);
  return {
    name: s.name,
    value: s.value,
    unit: s.unit,
    baseline: b.name,
    ratio,
    p50: s.p50,
    p99: s.p99,
    baselineP99: b.p99,
    ...(s.lost !== undefined ? { lost: s.lost } : {}),
    errors: s.errors,
    target: targetText(t),
    met,
    ...(s.cpuPerRequestUs !== undefined ? { cpuPerRequestUs: s.cpuPerRequestUs } : {}),
    foreignCpuPct: s.foreignCpuPct,
  };
}

export interface Report {
  machine: Record<string, string | number | boolean>;
  valid: boolean;
  invalidBecause: string[];
  scenarios: ScenarioRow[];
  /** Every measure's medians, baselines included. */
  measures: Summary[];
  /** Figures the issue asks to record without a target. */
  recorded: Record<string, number | string>;
}

const num = (v: number | undefined, digits = 1) =>
  v === undefined || !Number.isFinite(v)
    ? '–'
    : v >= 1000 || Number.isInteger(v)
      ? Math.round(v).toString()
      : v.toFixed(digits);

export function scenarioTable(rows: ScenarioRow[]): string {
  const head =
    '| name | value | unit | baseline | ratio | p50 ms | p99 ms | baseline p99 ms | target | met | errors | lost | cpu µs/req |';
  const lines = rows.map(
    (r) =>
      `| ${r.name} | ${num(r.value)} | ${r.unit} | ${r.baseline} | ${num(r.ratio, 2)} | ${num(r.p50)} | ${num(r.p99)} | ${num(r.baselineP99)} | ${r.target} | ${r.met ? 'yes' : '**no**'} | ${r.errors} | ${r.lost ?? '–'} | ${num(r.cpuPerRequestUs, 0)} |`,
  );
  return [head, `|${'---|'.repeat(13)}`, ...lines].join('\n');
}

function measureTable(measures: Summary[]): string {
  const head =
    '| measure | value | unit | p50 ms | p99 ms | count | errors | cpu µs/req | foreign cpu % | notes |';
  const lines = measures.map((m) => {
    const notes = Object.entries(m.extra ?? {})
      .map(([k, v]) => `${k}=${typeof v === 'number' ? num(v, 2) : v}`)
      .join(' ');
    return `| ${m.name} | ${num(m.value)} | ${m.unit} | ${num(m.p50)} | ${num(m.p99)} | ${m.count} | ${m.errors} | ${num(m.cpuPerRequestUs, 0)} | ${num(m.foreignCpuPct)} | ${notes} |`;
  });
  return [head, `|${'---|'.repeat(10)}`, ...lines].join('\n');
}

function markdown(report: Report): string {
  const machine = Object.entries(report.machine)
    .map(([k, v]) => `${k}: ${typeof v === 'number' ? num(v) : v}`)
    .join(', ');
  const recorded = Object.entries(report.recorded)
    .map(([k, v]) => `- ${k}: ${typeof v === 'number' ? num(v) : v}`)
    .join('\n');
  return [
    '# npm run bench',
    '',
    `Run ${report.valid ? 'valid' : `**invalid** (${report.invalidBecause.join('; ')})`}. ${machine}.`,
    '',
    'Ratios are medians of the scenario over medians of its baseline, measured in the same run.',
    '',
    scenarioTable(report.scenarios),
    '',
    '## Every measure',
    '',
    measureTable(report.measures),
    '',
    '## Recorded, not gated',
    '',
    recorded || '- nothing',
    '',
  ].join('\n');
}

export function writeReports(dir: string, report: Report): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'bench.json');
  const md = join(dir, 'bench.md');
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(md, markdown(report));
  return { json, md };
}
