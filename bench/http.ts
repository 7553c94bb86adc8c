// HTTP load through autocannon's programmatic API: 100 connections, pipelining 1, as the issue asks.
import autocannon from 'autocannon';
import type { Child, Measure, Measurement } from './types.js';

export const CONNECTIONS = 100;

export interface Shot {
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface HttpLoad {
  /** Base URL of the server. */
  url: string;
  method?: 'GET' | 'POST';
  /** The request; a function is asked for every request (distinct ids, a token per user). */
  shot: Shot | (() => Shot);
  /** Open loop at this many requests per second overall; closed loop (as fast as answered) without. */
  overallRate?: number;
}

export async function fire(load: HttpLoad, seconds: number): Promise<autocannon.Result> {
  const { shot } = load;
  const fixed = typeof shot === 'function' ? shot() : shot;
  const request: autocannon.Request = {
    method: load.method ?? 'GET',
    path: fixed.path,
    headers: { ...(fixed.body ? { 'content-type': 'application/json' } : {}), ...fixed.headers },
    ...(fixed.body ? { body: fixed.body } : {}),
    ...(typeof shot === 'function'
      ? {
          setupRequest: (req: autocannon.Request) => {
            const next = shot();
            return {
              ...req,
              path: next.path,
              headers: { ...req.headers, ...next.headers },
              ...(next.body ? { body: next.body } : {}),
            };
          },
        }
      : {}),
  };
  return autocannon({
    url: load.url,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    requests: [request],
    ...(load.overallRate ? { overallRate: Math.max(1, Math.round(load.overallRate)) } : {}),
  });
}

/** An autocannon result as a Measurement: any answer but a 2xx is an error. */
export function toMeasurement(result: autocannon.Result, serverCpuMs: number): Measurement {
  return {
    value: result.requests.total / result.duration,
    unit: 'req/s',
    p50: result.latency.p50,
    p99: result.latency.p99,
    count: result.requests.total,
    errors: result.errors + result.non2xx + result.mismatches,
    serverCpuMs,
    ...(result.non2xx ? { extra: { statuses: statusSummary(result) } } : {}),
  };
}

function statusSummary(result: autocannon.Result): string {
  return Object.entries(result.statusCodeStats ?? {})
    .map(([code, s]) => `${code}×${s.count ?? 0}`)
    .join(' ');
}

/** A measure that is one HTTP load on one or more server processes; `rate()` is its last figure. */
export function httpMeasure(
  name: string,
  servers: Child[],
  load: () => HttpLoad,
): Measure & { rate(): number } {
  const cpu = () => servers.reduce((sum, s) => sum + s.cpuMs(), 0);
  let lastRate = Number.NaN;
  const run = async (seconds: number) => {
    const before = cpu();
    const result = await fire(load(), seconds);
    const m = toMeasurement(result, cpu() - before);
    lastRate = m.value;
    return m;
  };
  return {
    name,
    async warm(seconds) {
      await run(seconds);
    },
    run,
    rate: () => lastRate,
  };
}
