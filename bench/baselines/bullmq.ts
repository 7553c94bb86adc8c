// B-bullmq: a plain BullMQ add loop and a no-op worker in one process, on the same Redis, with the app's
// job options and worker concurrency. POST /load?seconds=S adds jobs from 100 loops for S seconds and
// answers how many; the runner counts them processed the same way it counts the app's.
import { createServer } from 'node:http';
import { Queue, Worker } from 'bullmq';
import { announce, port, required } from './serve.js';

const LOOPS = 100;
const connection = { url: required('REDIS_URL'), maxRetriesPerRequest: null };
const prefix = required('QUEUE_PREFIX');
const queue = new Queue('jobs', { connection, prefix });
const worker = new Worker('jobs', async () => {}, {
  connection,
  prefix,
  concurrency: Number(process.env.CONCURRENCY ?? 4),
  lockDuration: 30_000,
  stalledInterval: 30_000,
});
await worker.waitUntilReady();
const options = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 24 * 3600 },
  removeOnFail: { age: 7 * 24 * 3600 },
};

async function load(seconds: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let added = 0;
  await Promise.all(
    Array.from({ length: LOOPS }, async (_, loop) => {
      while (Date.now() < until) {
        await queue.add('noop', { loop, n: added }, options);
        added++;
      }
    }),
  );
  return added;
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (req.method !== 'POST' || url.pathname !== '/load') {
    res.writeHead(404).end();
    return;
  }
  load(Number(url.searchParams.get('seconds') ?? 1)).then(
    (added) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ added })),
    (err) => res.writeHead(500).end(String(err)),
  );
});
server.listen(port(), '127.0.0.1', () => announce(server));
