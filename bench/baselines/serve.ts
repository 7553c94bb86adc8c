// What every baseline server does around its one job: listen on PORT (0: any free port) at
// 127.0.0.1, say `READY <url>` on stdout for the runner, and go away with the runner (its stdin closes
// when the runner dies, even by SIGKILL).
import type { Server } from 'node:net';

export function announce(server: Server): void {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => process.exit(0));
}

export const port = () => Number(process.env.PORT ?? 0);

export function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}
