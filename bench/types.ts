// The shapes every part of `npm run bench` agrees on. A Measure is one thing timed (a scenario of the
// app or a bare baseline); the runner warms each, runs them interleaved, repeats, takes medians and
// pairs each scenario with its baseline into a ratio.

/** One timed run of a measure. */
export interface Measurement {
  /** Throughput (or whatever `unit` says), the figure ratios are taken of. */
  value: number;
  unit: string;
  /** Latency percentiles of the run, in milliseconds. */
  p50: number;
  p99: number;
  /** Requests or events that went through (the counts behind the figure). */
  count: number;
  /** Non-2xx answers, error acks, timeouts: a scenario allows none. */
  errors: number;
  /** Messages offered but never stored or delivered (chat scenarios). */
  lost?: number;
  /** CPU time the server process(es) spent during the run, in milliseconds, from /proc. */
  serverCpuMs?: number;
  /** Anything else worth printing (not gated). */
  extra?: Record<string, number | string>;
}

export interface Measure {
  name: string;
  /** Runs once before the repetitions, not recorded (JIT, pools, caches). */
  warm?(seconds: number): Promise<void>;
  run(seconds: number): Promise<Measurement>;
}

/** A child process the bench started (app or baseline server), stopped by PID at the end. */
export interface Child {
  pid: number;
  url: string;
  /** CPU (user + system) the process has used so far, in milliseconds, from /proc/<pid>/stat. */
  cpuMs(): number;
  /** Resident set size now, in bytes, from /proc/<pid>/status. */
  rssBytes(): number;
  stop(): Promise<void>;
}

/** One row of reports/bench.json. */
export interface ScenarioRow {
  name: string;
  value: number;
  unit: string;
  baseline: string;
  /** Median of the scenario over median of its baseline (for latency-only targets, baseline p99 over ours). */
  ratio: number;
  p50: number;
  p99: number;
  baselineP99: number;
  lost?: number;
  errors: number;
  target: string;
  met: boolean;
  /** Server CPU per request, in microseconds. */
  cpuPerRequestUs?: number;
  /** Median share of all cores' time that processes not of the bench used during its runs. */
  foreignCpuPct?: number;
}

/** What the runner hands the chat scenarios (bench/chat.ts `chatMeasures`). */
export interface ChatContext {
  /** Starts an app process (pinned like the others) with extra env, e.g. no REDIS_URL for the in-memory adapter; returns its Child. */
  startApp(env?: Record<string, string | undefined>): Promise<Child>;
  /** The app started by the runner on PostgreSQL + Redis. */
  app: Child;
  /** Deps built in the bench process against the same scratch database and Redis with the same secrets (for seeding rows and signing tokens); not serving. */
  deps: import('../src/deps.js').Deps;
  databaseUrl: string;
  redisUrl: string;
  /** Starts a tiny baseline server file (e.g. 'bench/baselines/sio.ts') as a pinned child; the child listens on PORT (0: any free port) and prints `READY <url>` on stdout. */
  startBaseline(file: string, env?: Record<string, string>): Promise<Child>;
  quick: boolean;
  /**
   * Load for `mixed`: `tasks.list` on `app` at half its measured maximum rate for `seconds`, run by the
   * runner; resolves with that load's own measurement once it ends.
   */
  backgroundLoad?(seconds: number): Promise<Measurement>;
}
