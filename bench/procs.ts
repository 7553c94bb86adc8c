// Processes of `npm run bench`: the children it starts (the app and the baseline servers, pinned to
// core 0), the runner pinned to core 1, CPU time from /proc, and the machine's CPU that is not ours.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitReady } from '../scripts/cluster-support.js';
import type { Child } from './types.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHILD_CORE = '0';
const RUNNER_CORE = '1';
const STOP_GRACE_MS = 12_000;
const START_TIMEOUT_MS = 180_000;
/** The stderr lines of a child kept for the error message when it fails to start or dies. */
const TAIL_LINES = 30;

const TICK_MS = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const hz = Number(out.stdout?.trim());
  return 1000 / (Number.isFinite(hz) && hz > 0 ? hz : 100);
})();

const hasTaskset = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
/** Pinning needs a second core; on one core everything shares it anyway. */
const pinning = hasTaskset && (readProcStat().cores ?? 1) >= 2;

/** Moves every thread of this process (autocannon, socket clients) to the runner's core. */
export function pinSelf(): boolean {
  if (!pinning) return false;
  return (
    spawnSync('taskset', ['-a', '-cp', RUNNER_CORE, String(process.pid)], { stdio: 'ignore' }).status === 0
  );
}

/** CPU (user + system) a process has used so far, in ms; 0 once it is gone. */
function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields are counted from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

function rssBytesOf(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Busy and total CPU time of the whole machine (all cores), in ms. Steal counts as busy: we did not get it. */
export function readProcStat(): { busyMs: number; totalMs: number; cores: number } {
  const text = readFileSync('/proc/stat', 'utf8');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = (text.split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number) as number[];
  const busy = (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  const cores = text.split('\n').filter((l) => /^cpu\d+ /.test(l)).length;
  return { busyMs: busy * TICK_MS, totalMs: (busy + (idle ?? 0) + (iowait ?? 0)) * TICK_MS, cores };
}

/**
 * Foreign CPU over an interval: the share of all cores' time used by processes that are not ours.
 * `ours()` lists the PIDs working for the bench (this process, its children, its PostgreSQL backends,
 * the Redis server); it is asked at both ends, so a backend started in between is counted whole.
 */
export function cpuWatch(ours: () => Promise<number[]>) {
  return async () => {
    const before = readProcStat();
    const pids0 = await ours();
    const cpu0 = new Map(pids0.map((pid) => [pid, cpuMsOf(pid)]));
    return async (): Promise<{ foreignPct: number; oursMs: Map<number, number> }> => {
      const pids1 = await ours();
      const after = readProcStat();
      const oursMs = new Map<number, number>();
      for (const pid of new Set([...pids0, ...pids1])) {
        const now = cpuMsOf(pid);
        if (now > 0) oursMs.set(pid, now - (cpu0.get(pid) ?? 0));
      }
      const total = after.totalMs - before.totalMs;
      let mine = 0;
      for (const ms of oursMs.values()) mine += ms;
      const foreign = after.busyMs - before.busyMs - mine;
      return { foreignPct: total > 0 ? Math.max(0, (100 * foreign) / total) : 0, oursMs };
    };
  };
}

/**
 * Waits (at most `maxMs`) for a window of `windowMs` in which foreign CPU stays under `pct`; returns
 * the last window's figure and how long it waited.
 */
export async function waitQuiet(
  watch: ReturnType<typeof cpuWatch>,
  opts: { pct: number; maxMs: number; windowMs?: number },
): Promise<{ foreignPct: number; waitedMs: number }> {
  const started = Date.now();
  const windowMs = opts.windowMs ?? 500;
  for (;;) {
    const stop = await watch();
    await new Promise((r) => setTimeout(r, windowMs));
    const { foreignPct } = await stop();
    const waitedMs = Date.now() - started;
    if (foreignPct < opts.pct || waitedMs + windowMs > opts.maxMs) return { foreignPct, waitedMs };
  }
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => done(port));
    });
  });
}

const running = new Set<ChildProcess>();

/** Every child still running, stopped together (the runner's cleanup, on success, failure or Ctrl-C). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map((p) => stopProcess(p)));
}

export function childPids(): number[] {
  return [...running].flatMap((p) => (p.pid ? [p.pid] : []));
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    running.delete(proc);
    return;
  }
  const exited = new Promise<void>((done) => proc.once('exit', () => done()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
  running.delete(proc);
}

export interface StartOptions {
  /** What it is, for messages. */
  name: string;
  /** A TypeScript file run with tsx (the app's src/main.ts, a baseline). */
  file: string;
  env: Record<string, string | undefined>;
  /** How it tells it is ready: `READY <url>` on stdout, or 200 from /health/ready on this port. */
  ready: { stdout: true } | { port: number };
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

/** Starts a pinned child and resolves once it serves; a child that dies first rejects with its stderr. */
export async function startChild(opts: StartOptions): Promise<Child & { readyMs: number }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.env)) if (v !== undefined) env[k] = v;
  const argv = [...(opts.nodeArgs ?? []), '--import', 'tsx', resolve(ROOT, opts.file)];
  const started = performance.now();
  // taskset execs node, so the PID we get is node's own.
  const proc = pinning
    ? spawn('taskset', ['-c', CHILD_CORE, process.execPath, ...argv], { cwd: ROOT, env })
    : spawn(process.execPath, argv, { cwd: ROOT, env });
  running.add(proc);
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  // Both pipes are always read: a child whose pipe fills up would stall mid-benchmark.
  createInterface({ input: proc.stderr }).on('line', keep);
  let exitNote: string | undefined;
  proc.once('exit', (code, signal) => {
    exitNote = `${opts.name} exited (${signal ?? code}) while starting:\n${tail.join('\n')}`;
    running.delete(proc);
  });
  const urlFromStdout = new Promise<string>((done) => {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      const match = /^READY (\S+)/.exec(line);
      if (match?.[1]) done(match[1]);
      else keep(line);
    });
  });
  try {
    let url: string;
    if ('port' in opts.ready) {
      await waitReady(opts.ready.port, { timeoutMs: START_TIMEOUT_MS, gone: () => exitNote });
      url = `http://127.0.0.1:${opts.ready.port}`;
    } else {
      const gone = new Promise<never>((_, fail) => proc.once('exit', () => fail(new Error(exitNote))));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, fail) => {
        timer = setTimeout(() => fail(new Error(`${opts.name} not ready in time`)), START_TIMEOUT_MS);
      });
      url = await Promise.race([urlFromStdout, gone, late]).finally(() => clearTimeout(timer));
    }
    const pid = proc.pid as number;
    return {
      pid,
      url,
      readyMs: performance.now() - started,
      cpuMs: () => cpuMsOf(pid),
      rssBytes: () => rssBytesOf(pid),
      stop: () => stopProcess(proc),
    };
  } catch (err) {
    await stopProcess(proc);
    throw err;
  }
}
