/**
 * DNS-rebinding defence. A web page anywhere can point a name it controls at 127.0.0.1 and then
 * talk to a local server as if same-origin; what gives it away is the `Host` header, which still
 * carries the attacker's name. So the viewer answers only requests whose `Host` names this machine
 * (or, when the user bound another address on purpose, that address).
 */
import { isIP } from 'node:net';

/** The host name of a `Host` header value (`name`, `name:port`, `[v6]` or `[v6]:port`), lower-cased; undefined when malformed. */
export function hostName(header: string): string | undefined {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const rest = h.slice(end + 1);
    if (rest && !/^:\d{1,5}$/.test(rest)) return undefined;
    return h.slice(1, end);
  }
  const m = /^([^:]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1] : undefined;
}

/** Whether an address or name always means this machine: `localhost`, 127.0.0.0/8 or `::1`. */
export function isLoopback(name: string): boolean {
  const n = name.toLowerCase().replace(/^\[|\]$/g, '');
  if (n === 'localhost' || n === '::1') return true;
  return isIP(n) === 4 && n.startsWith('127.');
}

/** Which `Host` headers a server accepts besides loopback names. */
export interface HostPolicy {
  /** Names accepted exactly (the address given with `--host`). */
  names: string[];
  /**
   * Accept any IP literal: set when the server listens on a wildcard address (0.0.0.0, ::), whose
   * clients reach it by one of the machine's addresses. An IP literal cannot be rebound.
   */
  anyIp: boolean;
}

export const LOOPBACK_ONLY: HostPolicy = { names: [], anyIp: false };

/** Whether a request with this `Host` header may be answered. */
export function hostAllowed(header: string | undefined, policy: HostPolicy = LOOPBACK_ONLY): boolean {
  if (!header) return false;
  const name = hostName(header);
  if (!name) return false;
  if (isLoopback(name)) return true;
  if (policy.names.some((n) => n.toLowerCase().replace(/^\[|\]$/g, '') === name)) return true;
  return policy.anyIp && isIP(name) !== 0;
}

/** The policy for a server bound to `bind`. */
export function hostPolicy(bind: string): HostPolicy {
  const wildcard = bind === '0.0.0.0' || bind === '::' || bind === '[::]';
  return { names: wildcard || isLoopback(bind) ? [] : [bind], anyIp: wildcard };
}
