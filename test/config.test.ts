import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, configVariables, loadConfig } from '../src/config.js';

const dirs: string[] = [];
const dataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'taskmaa-config-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const fails = (env: Record<string, string>) => {
  try {
    loadConfig({ DATA_DIR: dataDir(), ...env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
};

describe('config', () => {
  it('has working defaults for the embedded mode', () => {
    const config = loadConfig({ DATA_DIR: dataDir() });
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      ROLE: 'serve',
      PORT: 3000,
      HOST: '127.0.0.1',
      PUBLIC_URL: 'http://localhost:3000',
      CORS_ORIGINS: ['http://localhost:5173'],
      RATE_LIMIT_MULTIPLIER: 1,
      TRUST_PROXY: false,
    });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.REDIS_URL).toBeUndefined();
  });

  it('converts and validates values', () => {
    const config = loadConfig({
      DATA_DIR: dataDir(),
      PORT: '8080',
      RATE_LIMIT_MULTIPLIER: '0.5',
      CORS_ORIGINS: 'https://a.example, https://b.example',
      TRUST_PROXY: '10.0.0.0/8,127.0.0.1',
    });
    expect(config.PORT).toBe(8080);
    expect(config.RATE_LIMIT_MULTIPLIER).toBe(0.5);
    expect(config.CORS_ORIGINS).toEqual(['https://a.example', 'https://b.example']);
    expect(config.TRUST_PROXY).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });

  it('names the bad variable in a readable message', () => {
    expect(fails({ PORT: 'eighty' })).toMatch(/^Invalid environment variable PORT: .*"eighty"/);
    expect(fails({ PORT: '70000' })).toMatch(/PORT/);
    expect(fails({ ROLE: 'boss' })).toMatch(/ROLE/);
    expect(fails({ DATABASE_URL: 'mysql://x' })).toMatch(/DATABASE_URL/);
    expect(fails({ CORS_ORIGINS: 'https://a.example/path' })).toMatch(/CORS_ORIGINS.*bare origin/);
    expect(fails({ RATE_LIMIT_MULTIPLIER: '-1' })).toMatch(/RATE_LIMIT_MULTIPLIER/);
  });

  it('never echoes secrets or URLs in the message', () => {
    expect(fails({ ACCESS_TOKEN_SECRET: 'short-secret' })).toMatch(/ACCESS_TOKEN_SECRET.*<redacted>/);
    expect(fails({ ACCESS_TOKEN_SECRET: 'short-secret' })).not.toContain('short-secret');
  });

  it('refuses split roles on the embedded mode', () => {
    expect(fails({ ROLE: 'api' })).toMatch(/ROLE=api .*DATABASE_URL and REDIS_URL/);
    expect(fails({ ROLE: 'worker', DATABASE_URL: 'postgres://x/y' })).toMatch(/REDIS_URL/);
  });

  it('refuses a job drain that would end after the shutdown deadline', () => {
    expect(fails({ SHUTDOWN_DRAIN_DELAY_MS: '5000' })).toMatch(
      /JOBS_DRAIN_MS: .*SHUTDOWN_TIMEOUT_MS \(9000 ms\)/,
    );
    expect(fails({ JOBS_DRAIN_MS: '2000', SHUTDOWN_TIMEOUT_MS: '2000' })).toMatch(/JOBS_DRAIN_MS/);
    expect(
      loadConfig({ DATA_DIR: dataDir(), JOBS_DRAIN_MS: '1000', SHUTDOWN_TIMEOUT_MS: '2000' }).JOBS_DRAIN_MS,
    ).toBe(1000);
  });

  it('requires the token secret in production, and listens on all interfaces there', () => {
    expect(fails({ NODE_ENV: 'production' })).toMatch(/ACCESS_TOKEN_SECRET: required in production/);
    const config = loadConfig({
      DATA_DIR: dataDir(),
      NODE_ENV: 'production',
      ACCESS_TOKEN_SECRET: 's'.repeat(40),
    });
    expect(config.HOST).toBe('0.0.0.0');
    expect(config.isProduction).toBe(true);
  });

  it('generates a development secret once, privately, and reuses it', () => {
    const dir = dataDir();
    const first = loadConfig({ DATA_DIR: dir }).ACCESS_TOKEN_SECRET;
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(loadConfig({ DATA_DIR: dir }).ACCESS_TOKEN_SECRET).toBe(first);
    expect(statSync(join(dir, 'secrets.json')).mode & 0o777).toBe(0o600);
    expect(loadConfig({ DATA_DIR: dataDir() }).ACCESS_TOKEN_SECRET).not.toBe(first);
  });

  it('.env.example documents exactly the variables the service reads', () => {
    const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
    const documented = [...example.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(configVariables.map((v) => v.name).sort());
  });

  it('a bad variable stops `npm start` with exit 1 and a readable message', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir(), PORT: 'nope' },
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('taskmaa: Invalid environment variable PORT');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
