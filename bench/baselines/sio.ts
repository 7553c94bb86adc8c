// B-sio: a bare socket.io server with the shape of the app's chat and nothing else (no auth, no
// database, no Redis): every socket joins the room its handshake names, and `send` is acked and
// broadcast to the whole room, the sender included, as the app's chat:send reaches every device of
// every member. The payload is a message of the app's shape, so frames cost the same to encode.
// Env: PORT (0 = any free port), SIO_RECOVERY=1 turns on connection-state recovery as the app has it
// (it changes socket.io's broadcast path), SIO_PING_INTERVAL_MS like the app's.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Server } from 'socket.io';

interface SendPayload {
  conversationId?: unknown;
  clientMessageId?: unknown;
  body?: unknown;
}

const http = createServer();
const io = new Server(http, {
  serveClient: false,
  maxHttpBufferSize: 256 * 1024,
  pingInterval: Number(process.env.SIO_PING_INTERVAL_MS ?? 25_000),
  ...(process.env.SIO_RECOVERY === '1'
    ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60_000 } }
    : {}),
});
const seqs = new Map<string, number>();

io.on('connection', (socket) => {
  const { userId, room } = socket.handshake.auth as { userId?: unknown; room?: unknown };
  if (typeof userId !== 'string' || typeof room !== 'string') {
    socket.disconnect(true);
    return;
  }
  void socket.join(room);
  socket.on('send', (payload: SendPayload, ack: unknown) => {
    if (typeof ack !== 'function') return;
    const { conversationId, clientMessageId, body } = payload ?? {};
    // Only into the room the socket is in, as the app checks membership.
    if (typeof conversationId !== 'string' || !socket.rooms.has(conversationId)) {
      ack({ ok: false, error: { code: 'not_found', detail: 'No such room.' } });
      return;
    }
    if (typeof clientMessageId !== 'string' || typeof body !== 'string') {
      ack({ ok: false, error: { code: 'invalid_payload', detail: 'clientMessageId and body.' } });
      return;
    }
    const seq = (seqs.get(conversationId) ?? 0) + 1;
    seqs.set(conversationId, seq);
    const message = {
      id: randomUUID(),
      conversationId,
      seq,
      senderId: userId,
      clientMessageId,
      body,
      media: null,
      createdAt: new Date().toISOString(),
      deletedAt: null,
    };
    io.to(conversationId).emit('message', message);
    ack({ ok: true, data: message });
  });
});

http.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
});

// io.close closes the HTTP server too.
const stop = () => void io.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
