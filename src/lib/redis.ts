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
  failFastAfterTimeout(client, opts.commandTimeoutMs);
  await client.connect();
  return client;
}

/**
 * A hung Redis answers nothing, so each command waits the whole command timeout; a request making
 * several calls would wait several timeouts. After one command times out, the next ones fail at once
 * for a while (callers fall back as when Redis is down), then are tried again.
 */
function failFastAfterTimeout(client: Redis, commandTimeoutMs: number) {
  const pauseMs = Math.max(1000, commandTimeoutMs * 2);
  let failUntil = 0;
  const send = client.sendCommand.bind(client);
  client.sendCommand = ((command: Parameters<Redis['sendCommand']>[0], stream?: unknown) => {
    if (Date.now() < failUntil) {
      command.reject(new Error('Redis is not answering (a recent command timed out)'));
      return command.promise;
    }
    const result = send(command, stream as never);
    command.promise.catch((err: unknown) => {
      if (err instanceof Error && err.message === 'Command timed out') failUntil = Date.now() + pauseMs;
    });
    return result;
  }) as Redis['sendCommand'];
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
