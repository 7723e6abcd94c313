/**
 * The viewer's HTTP server (Fastify): the JSON API over a `ModelSession` and the built front end.
 *
 *   GET  /api/model                  everything the pages show (`ModelView`)
 *   POST /api/predict                an image file as the body → every task's top 3
 *   POST /api/tasks/:task/evaluate   {"weights": [[...], ...]} → original vs edited accuracy
 *   POST /api/tasks/:task/save       {"weights": ..., "name": "new-task"} → the new task, saved
 *
 * Safe by default: requests whose `Host` is not this machine are refused (DNS rebinding); a
 * cross-origin `Origin` on a request that changes or costs something is refused too (a page on
 * another site posting to the viewer); uploads are capped; JSON bodies must say they are JSON
 * (so a plain HTML form cannot post them); every refusal is a status with `{"error": message}`.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { HttpError } from './httpError.js';
import { hostAllowed, hostName, LOOPBACK_ONLY, type HostPolicy } from './hostCheck.js';
import { loadAssets, type Asset } from './staticAssets.js';
import type { ModelSession } from './session.js';

export interface AppOptions {
  /** `Host` headers accepted besides loopback names (default: loopback only). */
  hosts?: HostPolicy;
  /** Largest accepted upload in bytes (default 10 MiB). */
  maxUploadBytes?: number;
  /** The built front end (default: `loadAssets()`). */
  assets?: Map<string, Asset>;
}

const DEFAULT_MAX_UPLOAD = 10 * 2 ** 20;
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'application/octet-stream'];
const mib = (n: number) => `${+(n / 2 ** 20).toFixed(2)} MiB`;

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

/** The message a client sees for an error Fastify itself raised. */
function frameworkMessage(e: FastifyError, maxUpload: number): string {
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `the upload is too large: at most ${mib(maxUpload)} is accepted`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `unsupported content type: send an image as ${IMAGE_TYPES.join(', ')}, and edits as application/json`;
    default:
      return e.message;
  }
}

export function buildApp(session: ModelSession, o: AppOptions = {}): FastifyInstance {
  const hosts = o.hosts ?? LOOPBACK_ONLY;
  const maxUpload = o.maxUploadBytes ?? DEFAULT_MAX_UPLOAD;
  const assets = o.assets ?? loadAssets();
  const app = Fastify({ logger: false, bodyLimit: 1 * 2 ** 20, requestTimeout: 120_000, return503OnClosing: true });

  app.addContentTypeParser(IMAGE_TYPES, { parseAs: 'buffer', bodyLimit: maxUpload }, (_req, body, done) => done(null, body));

  app.addHook('onRequest', async (req, reply) => {
    reply.headers(SECURITY_HEADERS);
    const host = req.headers.host;
    if (!hostAllowed(host, hosts))
      return reply.code(403).send({ error: `refused: the Host header ${JSON.stringify(host ?? '')} does not name this machine; open the viewer at http://127.0.0.1 or http://localhost (requests for other names are refused to stop DNS-rebinding attacks)` });
    const origin = req.headers.origin;
    if (req.method !== 'GET' && req.method !== 'HEAD' && origin !== undefined) {
      let same = false;
      try {
        same = new URL(origin).host === host?.toLowerCase() && hostAllowed(new URL(origin).host, hosts);
      } catch {
        same = false;
      }
      if (!same) return reply.code(403).send({ error: `refused: a request from another site (Origin ${origin}); the viewer accepts changes only from its own page` });
    }
  });

  app.setErrorHandler((e: FastifyError, _req, reply) => {
    if (e instanceof HttpError) return reply.code(e.status).send({ error: e.message });
    const status = e.statusCode ?? 500;
    if (status >= 400 && status < 500) return reply.code(status).send({ error: frameworkMessage(e, maxUpload) });
    process.stderr.write(`compnet serve: internal error: ${e.stack ?? e.message}\n`);
    return reply.code(500).send({ error: `internal error: ${e.message}` });
  });

  app.get('/api/model', async () => session.view());

  app.post('/api/predict', { bodyLimit: maxUpload }, async (req) => {
    if (!Buffer.isBuffer(req.body)) throw new HttpError(415, `send the image file itself as the request body, with content type ${IMAGE_TYPES.join(' or ')}`);
    return session.classify(req.body);
  });

  const editBody = (body: unknown): { weights?: unknown; name?: unknown } => {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'expected a JSON object such as {"weights": [[1, 0], [0.5, 0.5]]}');
    return body as { weights?: unknown; name?: unknown };
  };
  app.post<{ Params: { task: string } }>('/api/tasks/:task/evaluate', async (req) => session.evaluateEdit(req.params.task, editBody(req.body).weights));
  app.post<{ Params: { task: string } }>('/api/tasks/:task/save', async (req) => {
    const b = editBody(req.body);
    return session.saveAs(req.params.task, b.weights, b.name);
  });

  const noSuchEndpoint = async (req: { method: string; url: string }) => {
    throw new HttpError(404, `no such API endpoint: ${req.method} ${req.url}`);
  };
  app.get('/api/*', noSuchEndpoint);
  app.setNotFoundHandler(noSuchEndpoint);

  app.get('/*', async (req, reply) => {
    const path = new URL(req.url, 'http://viewer').pathname;
    const asset = assets.get(path);
    if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send(`not found: ${path} (the viewer's page is at /)`);
    return reply
      .type(asset.type)
      .header('cache-control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .send(asset.body);
  });

  return app;
}

/** The URL to print for a server bound to `host` and `port` (a wildcard address is shown as 127.0.0.1). */
export function viewerUrl(host: string, port: number): string {
  const name = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : (hostName(host) ?? host);
  return `http://${name.includes(':') ? `[${name}]` : name}:${port}/`;
}
