/**
 * The endpoint picker (`kvwire epp`): an Envoy external processing (ext_proc v3) gRPC server that
 * implements the Gateway API Inference Extension's endpoint picker protocol (see `stream.ts`), and
 * the gRPC health service (`grpc.health.v1.Health`: `""`, `liveness`, `readiness`,
 * `envoy.service.ext_proc.v3.ExternalProcessor`; SERVING while a decode endpoint is healthy, except
 * liveness which is SERVING while the process answers). @grpc/grpc-js with kvwire's own protos.
 *
 * @packageDocumentation
 */
import {
  Server,
  ServerCredentials,
  status as GrpcStatus,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, KvwireError } from '../../errors.js';
import { SchedulingService, type SchedulingServiceOptions } from '../service.js';
import type { ProcessingRequest, ProcessingResponse } from './messages.js';
import { eppServices } from './protos.js';
import { EPP_WIRE_NAMES, EppStream, type EppWireNames } from './stream.js';

/** Options of {@link startEpp}. */
export interface EppOptions extends SchedulingServiceOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  readonly host?: string;
  /** Port; 0 (default) picks a free one. */
  readonly port?: number;
  /** Largest request body buffered, in bytes. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** `on-request` (default, header `x-kvwire-explain: 1`), `always` or `never`. */
  readonly explain?: 'on-request' | 'always' | 'never';
  /** Wire names, when the gateway is configured with others than the protocol's defaults. */
  readonly names?: Partial<EppWireNames>;
  /** A running service to use instead of creating one (the caller closes it). */
  readonly service?: SchedulingService;
  /**
   * Also serve `GET /metrics` (Prometheus text) and `GET /health` over HTTP on this address (the
   * gRPC port cannot answer HTTP/1.1 scrapes). Port 0: any free port. Default: not served.
   */
  readonly metrics?: { readonly host: string; readonly port: number };
}

/** A running endpoint picker. */
export interface Epp {
  /** The gRPC server. */
  readonly server: Server;
  /** `host:port` it listens on. */
  readonly address: string;
  /** The port. */
  readonly port: number;
  /** The scheduling service behind it. */
  readonly service: SchedulingService;
  /** Streams in progress. */
  readonly activeStreams: () => number;
  /** `http://host:port` of the metrics listener, when one was asked for. */
  readonly metricsUrl: string | undefined;
  /** Stops the server (in-flight streams are cancelled) and the service. */
  close(): Promise<void>;
}

const HEALTH_SERVICES = new Set(['', 'liveness', 'readiness', 'envoy.service.ext_proc.v3.ExternalProcessor']);

/** Starts the endpoint picker (see the module documentation). */
export async function startEpp(options: EppOptions): Promise<Epp> {
  const { ExternalProcessor, Health } = eppServices();
  const service = options.service ?? (await SchedulingService.create(options));
  const names: EppWireNames = { ...EPP_WIRE_NAMES, ...(options.names ?? {}) };
  const streamOptions = {
    names,
    maxBodyBytes: options.maxBodyBytes ?? 16 * 1024 * 1024,
    explain: options.explain ?? 'on-request',
  } as const;
  let active = 0;

  const process = (call: ServerDuplexStream<ProcessingRequest, ProcessingResponse>): void => {
    active++;
    const stream = new EppStream(service, streamOptions);
    // Messages are handled one at a time, in order: answers must keep Envoy's headers-body-trailers order.
    let chain = Promise.resolve();
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      active--;
      stream.close();
    };
    call.on('data', (req: ProcessingRequest) => {
      chain = chain.then(async () => {
        if (ended) return;
        try {
          for (const answer of await stream.onMessage(req)) call.write(answer);
        } catch (e) {
          end();
          call.emit('error', { code: GrpcStatus.INTERNAL, details: `endpoint picker failed: ${(e as Error).message}` });
        }
      });
    });
    call.on('end', () => {
      void chain.then(() => {
        end();
        call.end();
      });
    });
    call.on('cancelled', end);
    call.on('error', end);
    call.on('close', end);
  };

  const statusOf = (svc: string): string => {
    if (!HEALTH_SERVICES.has(svc)) return 'SERVICE_UNKNOWN';
    if (svc === 'liveness') return 'SERVING';
    return service.decodeCandidates().length > 0 ? 'SERVING' : 'NOT_SERVING';
  };
  const check = (
    call: ServerUnaryCall<{ service?: string }, { status: string }>,
    cb: sendUnaryData<{ status: string }>,
  ): void => {
    const svc = call.request.service ?? '';
    if (!HEALTH_SERVICES.has(svc)) {
      cb({
        code: GrpcStatus.NOT_FOUND,
        details: `unknown service '${svc}': ask for '', liveness, readiness or envoy.service.ext_proc.v3.ExternalProcessor`,
      });
      return;
    }
    cb(null, { status: statusOf(svc) });
  };
  const watch = (call: ServerWritableStream<{ service?: string }, { status: string }>): void => {
    const svc = call.request.service ?? '';
    let last = '';
    const send = (): void => {
      const s = statusOf(svc);
      if (s !== last) {
        last = s;
        call.write({ status: s });
      }
    };
    send();
    const t = setInterval(send, 1_000);
    call.on('cancelled', () => clearInterval(t));
    call.on('close', () => clearInterval(t));
  };

  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  server.addService(ExternalProcessor.service, { Process: process });
  server.addService(Health.service, { Check: check, Watch: watch });
  const host = options.host ?? '127.0.0.1';
  const bindHost = host.includes(':') ? `[${host}]` : host;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${bindHost}:${options.port ?? 0}`, ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      );
    });
  } catch (e) {
    if (options.service === undefined) await service.close();
    // grpc-js reports the bind failure only in its message: carry the errno as the cause's code.
    const errno = /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.exec((e as Error).message)?.[1];
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      errno === 'EADDRINUSE'
        ? `${host}:${options.port} is in use: choose another --listen port`
        : `cannot listen on ${host}:${options.port}: ${(e as Error).message}`,
      { field: 'listen' },
      { cause: Object.assign(new Error((e as Error).message), errno !== undefined ? { code: errno } : {}) },
    );
  }
  let metricsServer: HttpServer | undefined;
  let metricsUrl: string | undefined;
  if (options.metrics !== undefined) {
    const m = options.metrics;
    metricsServer = createServer((req, res) => {
      void (async () => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (req.method === 'GET' && path === '/metrics') {
          const text = await service.registry.metrics();
          res.writeHead(200, { 'content-type': service.registry.contentType });
          res.end(text);
        } else if (req.method === 'GET' && path === '/health') {
          const ok = service.decodeCandidates().length > 0;
          res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
          res.end(ok ? 'ok\n' : 'no healthy decode endpoint\n');
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('GET /metrics or /health\n');
        }
      })().catch(() => res.destroy());
    });
    try {
      await new Promise<void>((resolve, reject) => {
        metricsServer!.once('error', reject);
        metricsServer!.listen(m.port, m.host, () => resolve());
      });
    } catch (e) {
      server.forceShutdown();
      if (options.service === undefined) await service.close();
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `cannot serve metrics on ${m.host}:${m.port}: ${(e as Error).message}`,
        { field: 'metrics' },
        { cause: e },
      );
    }
    const mh = m.host.includes(':') ? `[${m.host}]` : m.host;
    metricsUrl = `http://${mh}:${(metricsServer.address() as AddressInfo).port}`;
  }
  return {
    server,
    metricsUrl,
    address: `${bindHost}:${port}`,
    port,
    service,
    activeStreams: () => active,
    async close() {
      if (metricsServer !== undefined) {
        await new Promise<void>((resolve) => {
          metricsServer!.close(() => resolve());
          metricsServer!.closeAllConnections();
        });
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      if (options.service === undefined) await service.close();
    },
  };
}
