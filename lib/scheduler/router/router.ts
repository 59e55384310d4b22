/**
 * The HTTP gateway (`kvwire router`): for local use and for deployments without Envoy.
 *
 * - `POST /v1/completions`, `POST /v1/chat/completions`: decide (see {@link Scheduler}), then
 *   forward to the decode endpoint's sidecar with `x-prefiller-host-port: <prefill host:port>` when
 *   the decision disaggregates, and stream the answer back. The response carries
 *   `x-session-token` (llm-d's session affinity) and, when asked for with `x-kvwire-explain: 1` (or
 *   `explain: 'always'`), `x-kvwire-decision` with the scores and the reason. A client's own
 *   `x-prefiller-host-port` is removed: only the scheduler names prefill workers. A connection
 *   refused by the chosen endpoint counts against its health and the request goes to the next best.
 * - `POST /v1/kv-events`: engines' events over HTTP (JSON, see `createKvEventsHandler`).
 * - `GET /v1/models`: the models the endpoints list. `GET /health`: 200 while a decode endpoint is
 *   healthy. `GET /metrics`: the scheduler's and the index's metrics.
 * - Any other path: forwarded to the least loaded healthy decode endpoint.
 *
 * Errors are OpenAI's error JSON: 400 no or bad prompt, 404 unknown model, 413 body too large,
 * 429 shedding, 502 the endpoint failed, 503 no healthy endpoint.
 *
 * @packageDocumentation
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, KvwireError } from '../../errors.js';
import { createKvEventsHandler } from '../../kv-index/events-http.js';
import { destinationUrl, hostPort } from '../endpoint.js';
import { EXPLAIN_HEADER } from '../explain.js';
import { EXPLAIN_REQUEST_HEADER, PREFILLER_HEADER } from '../headers.js';
import { INFERENCE_PATHS } from '../request.js';
import { statusOf } from '../scheduler.js';
import { SESSION_HEADER, sessionToken } from '../scorers/session-affinity.js';
import { SchedulingService, type SchedulingServiceOptions } from '../service.js';
import { endToEnd, forward, requestId } from './proxy.js';

export { EXPLAIN_REQUEST_HEADER, PREFILLER_HEADER } from '../headers.js';

/** Options of {@link startRouter}. */
export interface RouterOptions extends SchedulingServiceOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  readonly host?: string;
  /** Port; 0 (default) picks a free one. */
  readonly port?: number;
  /** `on-request` (default): explain when the request sends `x-kvwire-explain: 1`; `always`; `never`. */
  readonly explain?: 'on-request' | 'always' | 'never';
  /** Largest request body, in bytes. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Deadline for an endpoint's response headers, in ms (prefill included). Default 300,000. */
  readonly upstreamTimeoutMs?: number;
  /** Deadline of silence while an answer streams, in ms. Default 300,000. */
  readonly idleTimeoutMs?: number;
  /** When set, `POST /v1/kv-events` needs `Authorization: Bearer <token>`. */
  readonly eventsAuthToken?: string;
  /** A running service to use instead of creating one (the caller closes it). */
  readonly service?: SchedulingService;
}

/** A running router. */
export interface Router {
  /** The node:http server. */
  readonly server: Server;
  /** `http://host:port`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** The scheduling service behind it. */
  readonly service: SchedulingService;
  /** Stops listening, closes connections and the service. */
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit)
    throw new BodyTooLarge(`the body has ${declared} bytes, over the limit of ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new BodyTooLarge(`the body is over the limit of ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** Answers OpenAI's error JSON. */
export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  code: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const type =
    status === 400 || status === 404 || status === 413
      ? 'invalid_request_error'
      : status === 429
        ? 'rate_limit_error'
        : 'server_error';
  const text = JSON.stringify({ error: { message, type, param: null, code } });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

/** Header values as strings (first value of repeated ones), lower-case names. */
function flat(h: IncomingMessage['headers']): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(h)) out[k] = Array.isArray(v) ? v[0] : v;
  return out;
}

/** Starts the router (see the module documentation). */
export async function startRouter(options: RouterOptions): Promise<Router> {
  const service = options.service ?? (await SchedulingService.create(options));
  const explainMode = options.explain ?? 'on-request';
  const limit = options.maxBodyBytes ?? 16 * 1024 * 1024;
  const upstreamTimeoutMs = options.upstreamTimeoutMs ?? 300_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
  const events = createKvEventsHandler(
    service.index,
    options.eventsAuthToken !== undefined ? { authToken: options.eventsAuthToken } : {},
  );
  const models = (): string[] => [...new Set(service.pool.specs.flatMap((s) => s.models))];

  const infer = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    const arrived = performance.now();
    let body: Buffer;
    try {
      body = await readBody(req, limit);
    } catch (e) {
      if (e instanceof BodyTooLarge) {
        res.once('finish', () => req.destroy());
        sendError(res, 413, `${e.message}: send a smaller request`, 'body_too_large', { connection: 'close' });
        return;
      }
      throw e;
    }
    const headers = flat(req.headers);
    const id = requestId(req.headers);
    const exclude = new Set<string>();
    for (let attempt = 0; attempt < 3; attempt++) {
      let placed;
      try {
        placed = await service.place(path, body, headers, { exclude });
      } catch (e) {
        const status = statusOf(e);
        sendError(
          res,
          status,
          (e as Error).message,
          status === 404 ? 'model_not_found' : ((e as KvwireError).code ?? 'error'),
          status === 429 || status === 503 ? { 'retry-after': '1' } : {},
        );
        return;
      }
      const d = placed.decision;
      const up = endToEnd(req.headers, new Set([PREFILLER_HEADER, EXPLAIN_REQUEST_HEADER]));
      up['x-request-id'] = id;
      if (d.prefill !== undefined) up[PREFILLER_HEADER] = hostPort(d.prefill.url);
      const responseHeaders: Record<string, string> = {
        [SESSION_HEADER]: sessionToken(d.decode.name),
        'x-request-id': id,
        // W3C Server-Timing: the router's share (body, tokens, decision); forward() puts it before
        // the entries of the sidecar and engines.
        'server-timing': `router;dur=${Number((performance.now() - arrived).toFixed(2))}`,
      };
      if (explainMode === 'always' || (explainMode === 'on-request' && headers[EXPLAIN_REQUEST_HEADER] === '1'))
        responseHeaders[EXPLAIN_HEADER] = d.explanation;
      const done = service.pool.begin(d.decode.name);
      const r = await forward(req, res, {
        base: destinationUrl(d.decode),
        path: req.url ?? path,
        method: 'POST',
        headers: up,
        body,
        responseHeaders,
        connectTimeoutMs: upstreamTimeoutMs,
        idleTimeoutMs,
      });
      done();
      if (r.kind === 'connect-failed') {
        service.pool.failed(d.decode.name, `connection failed: ${r.error.message}`);
        exclude.add(d.decode.name);
        continue;
      }
      if (r.kind === 'failed' && !res.headersSent)
        sendError(res, 502, `decode endpoint ${d.decode.name} failed: ${r.error.message}`, 'upstream_failed');
      return;
    }
    sendError(res, 502, 'three decode endpoints in a row refused the connection: retry later', 'upstream_unreachable', {
      'retry-after': '1',
    });
  };

  const passThrough = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = service.decodeCandidates()[0];
    if (target === undefined) {
      sendError(res, 503, 'no decode endpoint is healthy: retry later', 'no_healthy_endpoint', { 'retry-after': '1' });
      return;
    }
    const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await readBody(req, limit);
    const up = endToEnd(req.headers, new Set([PREFILLER_HEADER]));
    up['x-request-id'] = requestId(req.headers);
    const r = await forward(req, res, {
      base: destinationUrl(target.spec),
      path: req.url ?? '/',
      method: req.method ?? 'GET',
      headers: up,
      body,
      responseHeaders: {},
      connectTimeoutMs: upstreamTimeoutMs,
      idleTimeoutMs,
    });
    if (r.kind !== 'done' && !res.headersSent)
      sendError(res, 502, `decode endpoint ${target.spec.name} failed: ${r.error.message}`, 'upstream_failed');
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (INFERENCE_PATHS.has(path)) {
      if (req.method !== 'POST')
        return sendError(res, 405, `${req.method} ${path}: use POST`, 'method_not_allowed', { allow: 'POST' });
      return infer(req, res, path);
    }
    if (path === '/v1/kv-events') return events(req, res);
    if (path === '/health' && req.method === 'GET') {
      const ok = service.decodeCandidates().length > 0;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'no healthy decode endpoint\n');
      return;
    }
    if (path === '/metrics' && req.method === 'GET') {
      const text = await service.registry.metrics();
      res.writeHead(200, { 'content-type': service.registry.contentType });
      res.end(text);
      return;
    }
    if (path === '/v1/models' && req.method === 'GET' && models().length > 0) {
      const text = JSON.stringify({
        object: 'list',
        data: models().map((id) => ({ id, object: 'model', owned_by: 'kvwire' })),
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(text);
      return;
    }
    return passThrough(req, res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err =
        e instanceof KvwireError ? e : new KvwireError(ErrorCode.TRANSPORT, (e as Error)?.message ?? String(e));
      sendError(res, 500, `internal error: ${err.message}`, err.code);
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // answers stream for as long as generation runs; idle deadlines apply instead
  const host = options.host ?? '127.0.0.1';
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    if (options.service === undefined) await service.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      code === 'EADDRINUSE'
        ? `${host}:${options.port} is in use: choose another --listen port`
        : `cannot listen on ${host}:${options.port}: ${(e as Error).message}`,
      { field: 'listen' },
      { cause: e },
    );
  }
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    service,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (options.service === undefined) await service.close();
    },
  };
}
