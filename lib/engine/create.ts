/**
 * `createEngineServer()`: a runtime, the engine, its HTTP API and its KV event publisher, started
 * and bound; what `kvwire engine` runs.
 *
 * @packageDocumentation
 */
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { ErrorCode, KvwireError } from '../errors.js';
import { createRegistry, type MetricsRegistry } from '../metrics.js';
import type { SharedSecret } from '../pd/index.js';
import { KvEventPublisher, type KvEventsFormat } from './events/kv-events.js';
import { errorBody } from './http/errors.js';
import { configureApiServer, createApiHandler, type ApiHandler } from './http/server.js';
import { createLlamaRuntime } from './runtimes/llama/runtime.js';
import { createSyntheticRuntime } from './runtimes/synthetic/runtime.js';
import type { Runtime } from './runtimes/types.js';
import { Engine, type EngineRole, type KvLoadFailurePolicy } from './serving/engine.js';

/** Options of {@link createEngineServer}. */
export interface EngineServerOptions {
  /** prefill, decode or both. */
  readonly role: EngineRole;
  /** HTTP bind host; default 127.0.0.1. */
  readonly host?: string;
  /** HTTP port; 0 = any free port. */
  readonly port: number;
  /** Model: `tiny`/`small` (llama) or a KV preset such as `llama-3-8b` (synthetic). */
  readonly model: string;
  /** Runtime; default 'llama'. */
  readonly runtime?: 'llama' | 'synthetic';
  /** Model name in the API; default `model`. */
  readonly servedModelName?: string;
  /** Pod name (KV event topic); default `<hostname>-<port>`. */
  readonly pod?: string;
  /** Compute slots (MAX_BATCH_SIZE); default 8. */
  readonly maxBatchSize?: number;
  /** Requests waiting for a slot before 429; default 4 × maxBatchSize. */
  readonly maxQueue?: number;
  /** KV blocks; default enough for 2 × maxBatchSize full-length sequences. */
  readonly numBlocks?: number;
  /** Longest prompt + completion. */
  readonly maxModelLen?: number;
  /** CPU threads of the llama runtime; default 1. */
  readonly threads?: number;
  /** Synthetic runtime: override the preset's layers. */
  readonly layers?: number;
  /** P/D on (ENABLE_KV_TRANSFER); default true. */
  readonly kvTransfer?: boolean;
  /** Handshake secret. */
  readonly secret?: SharedSecret;
  /** Side channel bind (prefill/both); default 127.0.0.1:0. */
  readonly sideChannel?: { readonly host: string; readonly port: number; readonly advertiseHost?: string };
  /** Decode failure policy; default 'recompute'. */
  readonly kvLoadFailurePolicy?: KvLoadFailurePolicy;
  /** UCX transports (UCX_TLS syntax). */
  readonly transports?: string;
  /** Transport engine; default 'auto'. */
  readonly transportEngine?: 'auto' | 'ucx' | 'loopback';
  /** KV events PUB endpoint (bound). */
  readonly kvEventsEndpoint?: string;
  /** KV events replay ROUTER endpoint (bound). */
  readonly kvEventsReplayEndpoint?: string;
  /** KV events encoding; default 'map'. */
  readonly kvEventsFormat?: KvEventsFormat;
  /** Base lease (ms) of blocks a prefill holds for its decode; default lib/pd's 30 s. */
  readonly leaseMs?: number;
  /** How far each decode heartbeat extends a lease (ms); default lib/pd's 30 s. */
  readonly leaseExtensionMs?: number;
  /** Interval of a decode's lease heartbeats (ms; 0: none); default lib/pd's 5 s. */
  readonly leaseHeartbeatMs?: number;
  /** Largest request body; default 2 MiB. */
  readonly maxBodyBytes?: number;
  /** Request log (one line per generation request, x-request-id first); default none. */
  readonly log?: (line: string) => void;
  /** Model cache folder. */
  readonly modelCacheDir?: string;
  /** Metrics registry; default a fresh one. */
  readonly registry?: MetricsRegistry;
  /** Negative control for tests: load zero KV instead of the pulled/cached bytes. */
  readonly discardLoadedKv?: boolean;
}

/** A running engine server. */
export interface EngineServer {
  /** `http://host:port`. */
  readonly url: string;
  /** Bound HTTP port. */
  readonly port: number;
  /** Pod name. */
  readonly pod: string;
  /** Served model name. */
  readonly model: string;
  /** Role. */
  readonly role: EngineRole;
  /** Engine id (`remote_engine_id`). */
  readonly engineId: string;
  /** Side channel `host:port` (prefill/both with KV transfer), else null. */
  readonly sideChannel: string | null;
  /** Bound KV events endpoint, else null. */
  readonly kvEvents: string | null;
  /** Bound replay endpoint, else null. */
  readonly kvEventsReplay: string | null;
  /** Tokens per block. */
  readonly blockSize: number;
  /** The engine. */
  readonly engine: Engine;
  /** Drains (bounded), frees leases, closes everything. */
  close(drainMs?: number): Promise<void>;
}

async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      reject(
        e.code === 'EADDRINUSE'
          ? new KvwireError(
              ErrorCode.INVALID_ARGUMENT,
              `the HTTP address ${host}:${port} is already in use; choose another port (0 lets the system pick)`,
              { field: 'listen' },
              { cause: e },
            )
          : e,
      );
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : port;
}

/** Starts an engine: runtime, KV cache, coordinators, KV events, HTTP. */
export async function createEngineServer(o: EngineServerOptions): Promise<EngineServer> {
  const host = o.host ?? '127.0.0.1';
  const slots = o.maxBatchSize ?? 8;
  const registry = o.registry ?? createRegistry();
  const kind = o.runtime ?? 'llama';
  const servedModelName = o.servedModelName ?? o.model;
  const runtime: Runtime =
    kind === 'llama'
      ? await createLlamaRuntime({
          model: o.model,
          slots,
          ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
          ...(o.threads === undefined ? {} : { threads: o.threads }),
          ...(o.modelCacheDir === undefined ? {} : { cacheDir: o.modelCacheDir }),
          discardLoadedKv: o.discardLoadedKv === true,
        })
      : createSyntheticRuntime({
          model: o.model,
          slots,
          ...(o.layers === undefined ? {} : { layers: o.layers }),
          ...(o.maxModelLen === undefined ? {} : { maxModelLen: o.maxModelLen }),
          discardLoadedKv: o.discardLoadedKv === true,
        });
  const http = createApiServerPlaceholder();
  let port: number;
  try {
    // Bind HTTP first: a port in use must fail before anything heavier starts.
    port = await listen(http.server, host, o.port);
  } catch (e) {
    await runtime.close();
    throw e;
  }
  const pod = o.pod ?? `${hostname()}-${port}`;
  const engineId = `${pod}-${process.pid}`;
  let events: KvEventPublisher | undefined;
  let engine: Engine;
  try {
    if (o.kvEventsEndpoint !== undefined) {
      events = await KvEventPublisher.create({
        endpoint: o.kvEventsEndpoint,
        ...(o.kvEventsReplayEndpoint === undefined ? {} : { replayEndpoint: o.kvEventsReplayEndpoint }),
        pod,
        model: servedModelName,
        blockSize: 16,
        format: o.kvEventsFormat ?? 'map',
      });
    }
    const numBlocks = o.numBlocks ?? Math.max(256, 2 * slots * Math.ceil(runtime.maxModelLen / 16));
    engine = await Engine.create({
      role: o.role,
      runtime,
      servedModelName,
      engineId,
      numBlocks,
      kvTransfer: o.kvTransfer ?? true,
      ...(o.secret === undefined ? {} : { secret: o.secret }),
      ...(o.sideChannel === undefined ? {} : { sideChannel: o.sideChannel }),
      ...(o.kvLoadFailurePolicy === undefined ? {} : { kvLoadFailurePolicy: o.kvLoadFailurePolicy }),
      ...(o.maxQueue === undefined ? {} : { maxQueue: o.maxQueue }),
      ...(o.transports === undefined ? {} : { transports: o.transports }),
      ...(o.transportEngine === undefined ? {} : { transportEngine: o.transportEngine }),
      ...(o.leaseMs === undefined ? {} : { leaseMs: o.leaseMs }),
      ...(o.leaseExtensionMs === undefined ? {} : { leaseExtensionMs: o.leaseExtensionMs }),
      ...(o.leaseHeartbeatMs === undefined ? {} : { leaseHeartbeatMs: o.leaseHeartbeatMs }),
      ...(events === undefined ? {} : { events }),
      registry,
    });
  } catch (e) {
    await events?.close().catch(() => undefined);
    await runtime.close().catch(() => undefined);
    http.server.close();
    throw e;
  }
  http.attach(
    createApiHandler({
      engine,
      registry,
      ...(o.maxBodyBytes === undefined ? {} : { maxBodyBytes: o.maxBodyBytes }),
      ...(o.log === undefined ? {} : { log: o.log }),
    }),
  );
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    pod,
    model: servedModelName,
    role: o.role,
    engineId,
    sideChannel: engine.prefill === undefined ? null : `${engine.prefill.host}:${engine.prefill.port}`,
    kvEvents: events?.endpoint ?? null,
    kvEventsReplay: events?.replayEndpoint ?? null,
    blockSize: 16,
    engine,
    close(drainMs = 10_000) {
      closing ??= (async () => {
        await engine.close(drainMs);
        http.server.closeAllConnections();
        await new Promise<void>((r) => http.server.close(() => r()));
      })();
      return closing;
    },
  };
}

/**
 * A server that listens before the API exists: requests that arrive while the engine starts get
 * 503; `attach` hands them to the API from then on.
 */
function createApiServerPlaceholder(): { server: Server; attach(api: ApiHandler): void } {
  let handler: ApiHandler | undefined;
  const server = configureApiServer(
    createServer((req, res) => {
      if (handler !== undefined) return handler(req, res);
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(errorBody(503, 'the engine is starting', null));
    }),
  );
  return {
    server,
    attach(api: ApiHandler) {
      handler = api;
    },
  };
}
