/** Starting and stopping the viewer for one saved model (what `compnet serve` runs). */
import type { FastifyInstance } from 'fastify';
import { buildApp, viewerUrl } from './app.js';
import { hostPolicy } from './hostCheck.js';
import { ModelSession } from './session.js';
import { DEFAULT_PORT } from './defaults.js';

export interface ViewerOptions {
  /** TCP port; 0 picks a free one (default 8765). */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Load every task's recorded data before listening, so the first edit answers at once. */
  preload?: boolean;
  maxUploadBytes?: number;
  log?: (line: string) => void;
}

export interface Viewer {
  url: string;
  port: number;
  app: FastifyInstance;
  session: ModelSession;
  /** Stops listening, waits for queued jobs and frees the model. */
  close(): Promise<void>;
}


export async function startViewer(dir: string, o: ViewerOptions = {}): Promise<Viewer> {
  const host = o.host ?? '127.0.0.1';
  const session = ModelSession.open(dir);
  try {
    if (o.preload) await session.preload(o.log);
    const app = buildApp(session, { hosts: hostPolicy(host), maxUploadBytes: o.maxUploadBytes });
    try {
      await app.listen({ port: o.port ?? DEFAULT_PORT, host });
    } catch (e) {
      await app.close();
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new Error(`port ${o.port ?? DEFAULT_PORT} on ${host} is in use (another viewer?); choose another with --port, or --port 0 for any free one`);
      if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new Error(`cannot listen on ${host}: this machine has no such address (--host)`);
      throw e;
    }
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : (o.port ?? DEFAULT_PORT);
    return {
      url: viewerUrl(host, port),
      port,
      app,
      session,
      close: async () => {
        await app.close();
        await session.close();
      },
    };
  } catch (e) {
    await session.close();
    throw e;
  }
}
