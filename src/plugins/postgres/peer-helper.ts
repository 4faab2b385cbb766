/**
 * The driver half of peer authentication (see client.ts): started as the OS user named like the
 * PostgreSQL role, it connects over the local socket and runs the statements it is sent over IPC,
 * one at a time, answering with rows or an error. It exits when told to, or when its parent goes.
 */
import pg from 'pg';

interface Request {
  id: number;
  op: 'connect' | 'query' | 'end';
  config?: pg.ClientConfig;
  sql?: string;
  params?: unknown[];
}

let client: pg.Client | undefined;

function reply(message: object): void {
  process.send?.(message);
}

async function handle(request: Request): Promise<void> {
  try {
    if (request.op === 'connect') {
      client = new pg.Client(request.config);
      client.on('error', () => {});
      await client.connect();
      reply({ id: request.id, rows: [] });
    } else if (request.op === 'query') {
      const result = await client!.query(request.sql!, request.params);
      reply({ id: request.id, rows: result.rows });
    } else {
      await client?.end();
      reply({ id: request.id, rows: [] });
      process.disconnect?.();
    }
  } catch (error) {
    const { message, code } = error as { message?: string; code?: string };
    reply({ id: request.id, error: { message: message ?? String(error), code } });
  }
}

let queue = Promise.resolve();
process.on('message', (request: Request) => {
  queue = queue.then(() => handle(request));
});
process.on('disconnect', () => {
  void client?.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
