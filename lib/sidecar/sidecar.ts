/**
 * `createSidecar()`: the routing sidecar beside a decode worker, wire-compatible with llm-d's
 * pd-sidecar (nixlv2 connector).
 *
 * @packageDocumentation
 */
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { ErrorCode, KvwireError } from '../errors.js';
import { defaultRegistry, type MetricsRegistry } from '../metrics.js';
import type { LegEndpoint } from './leg.js';
import { SidecarMetrics } from './metrics.js';
import { resolveSidecarOptions, type ResolvedSidecarOptions, type SidecarOptions } from './options.js';
import { handle, type SidecarContext } from './routes.js';
import { createAgents, createListener } from './tls.js';

/** A running sidecar. */
export interface Sidecar {
  /** Base URL clients use (`http://host:port` or `https://...`). */
  readonly url: string;
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on (the one chosen when `port` was 0). */
  readonly port: number;
  /** The options in effect (defaults applied). */
  readonly options: ResolvedSidecarOptions;
  /** Its metrics. */
  readonly metrics: SidecarMetrics;
  /** Stops listening, cuts open connections and closes the connection pools. Idempotent. */
  close(): Promise<void>;
}

function decodeEndpoint(options: ResolvedSidecarOptions, agents: ReturnType<typeof createAgents>): LegEndpoint {
  const url = options.decode;
  const https = url.protocol === 'https:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return {
    protocol: https ? 'https:' : 'http:',
    connectHost: host,
    port: url.port === '' ? (https ? 443 : 80) : Number(url.port),
    hostHeader: url.host,
    servername: undefined,
    agent: https ? agents.decode.https : agents.decode.http,
  };
}

async function serveMetrics(registry: MetricsRegistry, res: ServerResponse): Promise<void> {
  try {
    const text = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`metrics unavailable: ${(e as Error).message}\n`);
  }
}

/**
 * Starts a sidecar.
 *
 * @example
 * ```ts
 * const sidecar = await createSidecar({ decode: 'http://127.0.0.1:8200', port: 8000, allow: ['10.0.0.0/24:8100'] });
 * // POST http://127.0.0.1:8000/v1/chat/completions with x-prefiller-host-port: 10.0.0.7:8100
 * await sidecar.close();
 * ```
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a bad option (`details.field` names it),
 *   or when the address cannot be bound (`details.engineStatus` is the system's code, e.g.
 *   `EADDRINUSE`).
 */
export async function createSidecar(options: SidecarOptions): Promise<Sidecar> {
  const resolved = resolveSidecarOptions(options);
  const registry = options.registry ?? defaultRegistry();
  const metrics = new SidecarMetrics(registry);
  const agents = createAgents(resolved.prefillTls);
  const ctx: SidecarContext = {
    options: resolved,
    metrics,
    decode: decodeEndpoint(resolved, agents),
    prefillAgent: agents.prefill,
    prefillProtocol: resolved.prefillTls === undefined ? 'http:' : 'https:',
    log: options.log ?? (() => {}),
  };
  const server: Server = createListener(resolved.tls, { maxHeaderSize: resolved.maxHeaderBytes }, (req, res) => {
    if (req.method === 'GET' && req.url === resolved.metricsPath) void serveMetrics(registry, res);
    else handle(ctx, req, res);
  });
  // Longer than the usual client pool idle time, so a client does not send on a socket the
  // sidecar is closing; headers must still arrive promptly.
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      const why =
        e.code === 'EADDRINUSE'
          ? 'the port is in use'
          : e.code === 'EADDRNOTAVAIL'
            ? 'the address is not one of this host'
            : (e.code ?? e.message);
      reject(
        new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `the sidecar cannot listen on ${resolved.host}:${resolved.port}: ${why}; choose another address or port`,
          { field: 'port', engineStatus: e.code },
          { cause: e },
        ),
      );
    };
    server.once('error', onError);
    server.listen(resolved.port, resolved.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const scheme = resolved.tls === undefined ? 'http' : 'https';
  const hostForUrl = resolved.host.includes(':') ? `[${resolved.host}]` : resolved.host;
  let closing: Promise<void> | undefined;
  return {
    url: `${scheme}://${hostForUrl}:${port}`,
    host: resolved.host,
    port,
    options: resolved,
    metrics,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        agents.decode.http.destroy();
        agents.decode.https.destroy();
        agents.prefill.destroy();
      });
      return closing;
    },
  };
}
