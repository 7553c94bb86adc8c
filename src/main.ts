import { type Config, ConfigError, loadConfig } from './config.js';
import { buildDeps, closeDeps, type Deps } from './deps.js';
import { type App, buildApp } from './http/app.js';
import { migrate } from './lib/migrate.js';
import { disconnectAllLocal } from './realtime/server.js';
import { defineJobs, startWorker } from './worker.js';

// Entry point. `npm start` runs ROLE (serve = api + worker); `npm run migrate` applies migrations.
async function main(command: string | undefined) {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`taskmaa: ${err.message}\nSee .env.example for every variable.\n`);
      process.exit(1);
    }
    throw err;
  }

  const deps = await buildDeps(config);
  const { log } = deps;
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  const { applied } = await migrate(deps.db);
  if (applied.length) log.info({ applied }, 'migrations applied');
  if (command === 'migrate') {
    await closeDeps(deps);
    return;
  }

  defineJobs(deps);
  let app: App | undefined;
  if (config.ROLE !== 'worker') {
    app = await buildApp(deps);
    await app.listen({ port: config.PORT, host: config.HOST });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.PORT;
    const shownHost = config.HOST === '0.0.0.0' || config.HOST === '127.0.0.1' ? 'localhost' : config.HOST;
    log.info(
      {
        docs: `http://${shownHost}:${port}/docs`,
        mode: config.DATABASE_URL ? 'postgres' : 'embedded',
        role: config.ROLE,
      },
      `TaskMaa API ready: http://${shownHost}:${port}/docs`,
    );
  }
  if (config.ROLE !== 'api') {
    await startWorker(deps);
    if (config.ROLE === 'worker')
      log.info({ role: config.ROLE, concurrency: config.JOBS_CONCURRENCY }, 'TaskMaa worker ready');
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'already shutting down');
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    deadline.unref();
    try {
      await stop(deps, app);
      log.info('stopped cleanly');
      log.flush?.();
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/**
 * Readiness goes 503 at once; after the drain delay the listener closes, sockets are told to
 * reconnect elsewhere, in-flight requests finish (new ones get 503), running jobs finish, then pools close.
 */
async function stop(deps: Deps, app: App | undefined) {
  deps.lifecycle.draining = true;
  if (deps.config.SHUTDOWN_DRAIN_DELAY_MS > 0) {
    await new Promise((r) => setTimeout(r, deps.config.SHUTDOWN_DRAIN_DELAY_MS));
  }
  if (app) {
    disconnectAllLocal(deps.io);
    await app.close();
  }
  await closeDeps(deps);
}

main(process.argv[2]).catch((err) => {
  process.stderr.write(
    `taskmaa: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
