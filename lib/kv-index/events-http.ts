/**
 * Engines' KV events over HTTP (JSON), into a {@link KvIndex}. node:http, no framework.
 *
 * `POST /v1/kv-events` with `Content-Type: application/json` and a body
 *
 * ```json
 * { "worker": "decode-0", "seq": 41,
 *   "events": [ { "type": "stored", "keys": ["3fa2c4d51b0e9a77"], "tier": "gpu" },
 *               { "type": "removed", "keys": ["…"], "tier": "cpu" },
 *               { "type": "cleared" } ] }
 * ```
 *
 * `seq` (optional) numbers the worker's batches: they apply in order, once. Events may also be
 * vLLM's (`BlockStored`, `BlockRemoved`, `AllBlocksCleared`, see {@link VllmEventTranslator}); a
 * batch may mix both shapes; `ts` and `data_parallel_rank` of a vLLM `KVEventBatch` are accepted and
 * ignored.
 *
 * Answers (always JSON): `200` applied or duplicate, `202` buffered (waiting for a missing `seq`),
 * with `{ status, events, unresolved, ignored }`; `400` malformed (nothing applied), `401` missing
 * or wrong bearer token (when `authToken` is set), `404` other path, `405` other method, `413` body
 * over `maxBodyBytes`, `415` not JSON, `503` index closed or backend unavailable (with
 * `Retry-After`), each with `{ error: { code, message } }`.
 *
 * The endpoint changes routing decisions, so expose it only to engines (or set `authToken`).
 *
 * @packageDocumentation
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, KvwireError, type ErrorCodeString } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import type { KvEvent, KvIndex } from './kv-index.js';
import { VllmEventTranslator } from './vllm-events.js';

/** Options of {@link createKvEventsHandler}. */
export interface KvEventsHandlerOptions {
  /** The path events are posted to. Default `/v1/kv-events`. */
  readonly path?: string;
  /** Largest accepted body in bytes. Default 4 MiB. */
  readonly maxBodyBytes?: number;
  /** When set, requests must carry `Authorization: Bearer <authToken>`. */
  readonly authToken?: string;
  /** Engine block hashes remembered for vLLM events, over all workers. Default 1,048,576. */
  readonly maxVllmBlocks?: number;
}

/** Options of {@link startKvEventsServer}. */
export interface KvEventsServerOptions extends KvEventsHandlerOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  readonly port?: number;
  /** Address to listen on. Default `127.0.0.1`. */
  readonly host?: string;
}

/** A running events server. */
export interface KvEventsServer {
  /** The node:http server. */
  readonly server: Server;
  /** The port it listens on. */
  readonly port: number;
  /** Where to post events, e.g. `http://127.0.0.1:40123/v1/kv-events`. */
  readonly url: string;
  /** Stops accepting connections and closes idle ones. */
  close(): Promise<void>;
}

/** A `(req, res)` handler, as `http.createServer` takes. */
export type KvEventsHandler = (req: IncomingMessage, res: ServerResponse) => void;

const TOP_FIELDS = new Set(['worker', 'seq', 'events', 'ts', 'data_parallel_rank']);
const EVENT_FIELDS = new Set(['type', 'keys', 'tier']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCodeString,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new HttpError(
      413,
      ErrorCode.CAPACITY,
      `body of ${declared.toLocaleString('en-US')} bytes is over the limit of ${limit.toLocaleString('en-US')}: send smaller batches`,
      { connection: 'close' },
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      throw new HttpError(
        413,
        ErrorCode.CAPACITY,
        `body is over the limit of ${limit.toLocaleString('en-US')} bytes: send smaller batches`,
        { connection: 'close' },
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

function nativeEvent(ev: unknown, where: string): KvEvent {
  if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${where} is ${describeValue(ev)}: an event is an object with a type`,
      { field: where },
    );
  }
  for (const k of Object.keys(ev)) {
    if (!EVENT_FIELDS.has(k)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${where} has an unknown field '${k}': events have type, keys and tier`,
        { field: `${where}.${k}` },
      );
    }
  }
  return ev as KvEvent;
}

/**
 * Returns a `(req, res)` handler that applies posted events to `index` (see the module docs).
 * Mount it on any node:http server, or use {@link startKvEventsServer}.
 */
export function createKvEventsHandler(index: KvIndex, options: KvEventsHandlerOptions = {}): KvEventsHandler {
  const path = options.path ?? '/v1/kv-events';
  const limit = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const vllm = new VllmEventTranslator(index.hasher, options.maxVllmBlocks);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path)
      throw new HttpError(404, ErrorCode.INVALID_ARGUMENT, `no route ${url.pathname}: post events to ${path}`);
    if (req.method !== 'POST')
      throw new HttpError(
        405,
        ErrorCode.INVALID_ARGUMENT,
        `${req.method ?? '?'} is not allowed: POST events to ${path}`,
        { allow: 'POST' },
      );
    if (options.authToken !== undefined && !tokenMatches(req.headers.authorization, options.authToken)) {
      throw new HttpError(
        401,
        ErrorCode.UNAUTHORIZED,
        'missing or wrong bearer token: send Authorization: Bearer <token>',
        { 'www-authenticate': 'Bearer' },
      );
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      throw new HttpError(
        415,
        ErrorCode.UNSUPPORTED,
        `content-type is ${describeValue(req.headers['content-type'] ?? '(none)')}: send application/json`,
      );
    }
    const body = await readBody(req, limit);
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch (e) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `body is not valid JSON: ${(e as Error).message}`);
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `body is ${describeValue(doc)}: send { "worker": ..., "seq"?: ..., "events": [...] }`,
      );
    }
    const top = doc as Record<string, unknown>;
    for (const k of Object.keys(top)) {
      if (!TOP_FIELDS.has(k))
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `body has an unknown field '${k}': expected worker, seq and events`,
          { field: k },
        );
    }
    if (typeof top.worker !== 'string')
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `worker is ${describeValue(top.worker)}: name the worker the events come from`,
        { field: 'worker' },
      );
    if (!Array.isArray(top.events))
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `events is ${describeValue(top.events)}: expected an array of events`,
        { field: 'events' },
      );
    const worker = top.worker;
    const events: KvEvent[] = [];
    let unresolved = 0,
      ignored = 0;
    top.events.forEach((ev: unknown, i: number) => {
      if (VllmEventTranslator.isVllmEvent(ev)) {
        const t = vllm.translate(worker, ev, `events[${i}]`);
        events.push(...t.events);
        unresolved += t.unresolved;
        ignored += t.ignored;
      } else {
        events.push(nativeEvent(ev, `events[${i}]`));
      }
    });
    const r = await index.apply(worker, events, top.seq === undefined ? {} : { seq: top.seq as number });
    send(res, r.status === 'buffered' ? 202 : 200, { status: r.status, events: events.length, unresolved, ignored });
  };

  return (req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (e instanceof HttpError) {
        // After a 413 the rest of the body is never read: close the connection once answered.
        if (e.status === 413) res.once('finish', () => req.destroy());
        send(res, e.status, { error: { code: e.code, message: e.message } }, e.headers);
        return;
      }
      if (e instanceof KvwireError) {
        const status =
          e.code === ErrorCode.INVALID_ARGUMENT
            ? 400
            : e.code === ErrorCode.CLOSED || e.code === ErrorCode.BACKEND_UNAVAILABLE
              ? 503
              : 500;
        send(
          res,
          status,
          { error: { code: e.code, message: e.message } },
          status === 503 ? { 'retry-after': '1' } : {},
        );
        return;
      }
      send(res, 500, {
        error: { code: ErrorCode.TRANSPORT, message: `internal error: ${(e as Error)?.message ?? String(e)}` },
      });
    });
  };
}

/** Starts a node:http server with {@link createKvEventsHandler} on `options.port` (0: any free port). */
export async function startKvEventsServer(
  index: KvIndex,
  options: KvEventsServerOptions = {},
): Promise<KvEventsServer> {
  const server = createServer(createKvEventsHandler(index, options));
  // Slow or stuck senders must not hold sockets forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    port,
    url: `http://${shown}:${port}${options.path ?? '/v1/kv-events'}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
