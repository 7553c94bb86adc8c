// B-http: bare Fastify answering a constant, what `health.stack` (the app's GET /health/live) costs
// without the app's plugins and hooks.
import Fastify from 'fastify';
import { announce, port } from './serve.js';

const app = Fastify({ logger: false });
app.get('/', async () => ({ status: 'ok' }));
await app.listen({ port: port(), host: '127.0.0.1' });
announce(app.server);
