// B-lb: bare Fastify + ioredis on a copy of the app's leaderboard sorted set: one ZINCRBY and the top 10
// (ZREVRANGE WITHSCORES) in one pipeline per request.
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { announce, port, required } from './serve.js';

const redis = new Redis(required('REDIS_URL'));
const key = required('LB_KEY');
// A copy, so the baseline's increments never move the app's board.
await redis.zunionstore(key, 1, required('LB_SOURCE'));
const app = Fastify({ logger: false });

app.get<{ Params: { userId: string } }>('/lb/:userId', async (request) => {
  const results = await redis
    .pipeline()
    .zincrby(key, 1, request.params.userId)
    .zrevrange(key, 0, 9, 'WITHSCORES')
    .exec();
  const flat = (results?.[1]?.[1] ?? []) as string[];
  const top: { userId: string; score: number }[] = [];
  for (let i = 0; i < flat.length; i += 2)
    top.push({ userId: flat[i] as string, score: Number(flat[i + 1]) });
  return { top };
});

await app.listen({ port: port(), host: '127.0.0.1' });
announce(app.server);
