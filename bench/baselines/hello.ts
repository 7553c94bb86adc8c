// Calibration: raw node:http answering a constant. If even this is slow, the machine is the problem.
import { createServer } from 'node:http';
import { announce, port } from './serve.js';

const body = JSON.stringify({ status: 'ok' });
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(port(), '127.0.0.1', () => announce(server));
