/**
 * `compnet train --nproc K`: data-parallel training on one machine. Starts K `compnet train`
 * workers (ranks 0..K-1, master on a free loopback port), each with its share of the threads, and
 * stands for them as one command:
 *  - SIGINT, SIGTERM and SIGHUP are forwarded to every worker, and it then dies of the same signal;
 *    a worker whose launcher is killed outright stops by itself (bin/compnet's watchdog);
 *  - when one worker fails (exits non-zero or dies), the others are stopped at once rather than
 *    left to notice it at their next collective, and it fails naming that worker;
 *  - it succeeds when all succeed (rank 0 has then saved the model).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** A TCP port free on loopback now (the master's store binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface LaunchOptions {
  nproc: number;
  /** Threads in all; each worker gets an equal share, at least 1. */
  threads: number;
  /** The `compnet train` arguments every worker gets (config, out, resume, timeout). */
  args: string[];
}

/** Runs the workers to their end (see the file's comment). */
export async function launchWorkers(o: LaunchOptions): Promise<void> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`--nproc: expected a positive integer, got ${o.nproc}`);
  const port = await freePort();
  const share = Math.max(1, Math.floor(o.threads / o.nproc));
  const bin = fileURLToPath(new URL('../../bin/compnet', import.meta.url));
  process.stderr.write(`compnet: starting ${o.nproc} workers (master 127.0.0.1:${port}, ${share} thread${share === 1 ? '' : 's'} each)\n`);
  const workers: ChildProcess[] = [];
  let failure: string | undefined;
  let signalled: NodeJS.Signals | undefined;
  const stopOthers = () => {
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGTERM');
  };
  const forward = (signal: NodeJS.Signals) => {
    signalled = signal;
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  try {
    await Promise.all(
      Array.from({ length: o.nproc }, (_, rank) => {
        const args = [bin, 'train', ...o.args, '--world-size', String(o.nproc), '--rank', String(rank), '--master', `127.0.0.1:${port}`, '--threads', String(share)];
        // COMPNET_LAUNCHER_PID: bin/compnet's watchdog then stops the worker if this process dies unforwardably (SIGKILL).
        const w = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, COMPNET_LAUNCHER_PID: String(process.pid) } });
        workers.push(w);
        return new Promise<void>((resolve) => {
          w.once('error', (e) => {
            failure ??= `worker ${rank} could not start: ${e.message}`;
            stopOthers();
            resolve();
          });
          w.once('exit', (code, signal) => {
            if ((code !== 0 || signal) && !signalled && failure === undefined) {
              failure = `worker ${rank} ${signal ? `was killed by ${signal}` : `exited with code ${code}`}; stopped the other workers`;
              stopOthers();
            }
            resolve();
          });
        });
      }),
    );
  } finally {
    for (const s of FORWARDED) process.off(s, forward);
  }
  if (signalled) {
    process.kill(process.pid, signalled); // end as the workers did
    process.exit(128 + (constants.signals[signalled] ?? 1));
  }
  if (failure) throw new Error(failure);
}
