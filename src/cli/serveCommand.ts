/** `compnet serve MODEL [--port P] [--host H] [--data]`: the local viewer (see src/server/). */
import { resolve } from 'node:path';
import { DEFAULT_PORT } from '../server/defaults.js';
import { isLoopback } from '../server/hostCheck.js';

export { DEFAULT_PORT };

export async function serveCommand(dir: string, o: { port?: number; host?: string; data?: boolean }): Promise<void> {
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host))
    process.stderr.write(
      `compnet serve: warning: listening on ${host}, not only on this machine: anyone who can reach this address can see the model, ` +
        `run it on their images and save new tasks into ${resolve(dir)}. Use the default (127.0.0.1) unless you mean this.\n`,
    );
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (o.data) log('loading every task\'s recorded data…');
  // Loaded here, not at the top: every other command would otherwise pay for loading the web framework.
  const { startViewer } = await import('../server/serve.js');
  const viewer = await startViewer(dir, { port: o.port, host, preload: o.data, log });
  process.stdout.write(`compnet viewer for ${resolve(dir)}\nopen ${viewer.url} in a browser (Ctrl-C stops it)\n`);
  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void viewer.close().then(done, done);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
