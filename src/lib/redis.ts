import { Redis, type RedisOptions } from 'ioredis';

export interface RedisConnectOptions {
  url: string;
  commandTimeoutMs: number;
  name: string;
  onError?: (err: Error) => void;
}

/**
 * A client for request-path work (cache, rate limits): commands fail fast while Redis is away instead
 * of queueing, so callers fall back to PostgreSQL or the per-process limiter at once.
 */
export async function connectRedis(opts: RedisConnectOptions): Promise<Redis> {
  const client = new Redis(opts.url, {
    connectionName: opts.name,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let lastLogged = 0;
  client.on('error', (err) => {
    // ioredis reports every failed reconnect; one line every 10 s is enough to notice.
    if (Date.now() - lastLogged > 10_000) {
      lastLogged = Date.now();
      opts.onError?.(err);
    }
  });
  await client.connect();
  return client;
}

/** Options for BullMQ's connections, which must wait for Redis rather than fail commands. */
export function bullmqConnectionOptions(url: string, name: string): RedisOptions & { url: string } {
  return {
    url,
    connectionName: name,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  };
}
