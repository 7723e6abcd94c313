/**
 * Data-parallel collectives over libtorch's own distributed engine: a c10d process group with the
 * Gloo backend, rendezvousing through c10d's TCP store on the master (rank 0), as PyTorch's
 * `torch.distributed.init_process_group('gloo', init_method='tcp://HOST:PORT')` does.
 *
 * A process is at most one rank (a collective blocks the JS thread until every rank has joined
 * it), so there is one group per process, like torch.distributed's default group. Every wait has
 * the group's timeout: an unreachable master, a world size the ranks disagree on, a missing worker,
 * or a worker that died mid-training become a JS error naming the rank within the timeout.
 */
import { callNative } from './native.js';
import type { Tensor } from './tensor.js';

/** Where and how to join (the `--world-size`, `--rank`, `--master` of `compnet train`). */
export interface GroupOptions {
  rank: number;
  worldSize: number;
  /** The master's address: rank 0 serves the rendezvous store on `port` there. */
  host: string;
  port: number;
  /** Milliseconds any wait may last (default 60 s, or $COMPNET_DIST_TIMEOUT_MS). */
  timeoutMs?: number;
  /**
   * The network interface Gloo sends on (default $GLOO_SOCKET_IFNAME, as PyTorch reads it).
   * Without one, a loopback master means loopback; otherwise Gloo uses this host's address, which
   * must be one the other machines can reach (Debian maps the host name to 127.0.1.1: set the
   * interface then).
   */
  interface?: string;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** `HOST:PORT` (IPv6 in brackets) as host and port, or an error naming `what`. */
export function parseMaster(s: string, what = '--master'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`${what}: expected HOST:PORT with a port in 1..65535, got '${s}'`);
  return { host: (m[1] ?? m[2])!, port };
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

function defaultTimeout(): number {
  const env = process.env.COMPNET_DIST_TIMEOUT_MS;
  if (env === undefined || env === '') return DEFAULT_TIMEOUT_MS;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`COMPNET_DIST_TIMEOUT_MS: expected a positive number of milliseconds, got '${env}'`);
  return n;
}

/** This process's membership of a process group; `close()` leaves it. */
export class ProcessGroup {
  #open = true;

  private constructor(
    readonly rank: number,
    readonly worldSize: number,
    readonly timeoutMs: number,
  ) {}

  /** Joins the group (blocks until every rank has joined, or fails within the timeout). */
  static join(o: GroupOptions): ProcessGroup {
    for (const [k, v] of [['rank', o.rank], ['worldSize', o.worldSize], ['port', o.port]] as const)
      if (!Number.isInteger(v)) throw new Error(`process group: ${k} must be an integer, got ${v}`);
    if (o.worldSize < 1) throw new Error(`process group: the world size must be at least 1, got ${o.worldSize}`);
    if (o.rank < 0 || o.rank >= o.worldSize) throw new Error(`process group: rank ${o.rank} is not in 0..${o.worldSize - 1} (world size ${o.worldSize})`);
    const timeoutMs = o.timeoutMs ?? defaultTimeout();
    const iface = o.interface ?? process.env.GLOO_SOCKET_IFNAME ?? '';
    callNative('distInit', {
      rank: o.rank,
      worldSize: o.worldSize,
      masterHost: o.host,
      masterPort: o.port,
      timeoutMs,
      deviceInterface: iface,
      deviceHost: iface === '' && isLoopback(o.host) ? (o.host === '::1' ? '::1' : '127.0.0.1') : '',
    });
    return new ProcessGroup(o.rank, o.worldSize, timeoutMs);
  }

  #check(what: string): void {
    if (!this.#open) throw new Error(`process group: ${what} after close()`);
  }

  /** Replaces every tensor by its mean over the ranks, in place: one all-reduce (the tensors are one bucket). */
  allReduceMean(tensors: readonly Tensor[]): void {
    this.#check('allReduceMean');
    if (tensors.length) callNative('distAllReduceMean', tensors.map((t) => t.handle));
  }

  /** Overwrites every tensor with rank `root`'s, in place: one broadcast. */
  broadcast(tensors: readonly Tensor[], root = 0): void {
    this.#check('broadcast');
    if (tensors.length) callNative('distBroadcast', tensors.map((t) => t.handle), root);
  }

  /** Returns once every rank has called it. */
  barrier(): void {
    this.#check('barrier');
    callNative('distBarrier');
  }

  /** Leaves the group (idempotent). Rank 0 closes the store the others rendezvoused through. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    callNative('distDestroy');
  }
}
