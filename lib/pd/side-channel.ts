/**
 * The prefill's side channel: a small HTTP server (node:http) that answers two things, the
 * handshake at `POST /kvwire/v1/handshake` and lease heartbeats at `POST /kvwire/v1/heartbeat`
 * (one handler per path, both signed the same way). Its address is what `kv_transfer_params` calls
 * `remote_host`/`remote_port`, as vLLM's NixlConnector side channel.
 *
 * Hardened for a port that anything on the network can reach: bounded header and body sizes,
 * request deadlines, an empty 404 for every other method or path, and no body on any refusal made
 * before the caller proved it holds the secret (the handler decides; see `prefill-handshake.ts`).
 *
 * @packageDocumentation
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { SIGNATURE_HEADER } from './handshake-auth.js';
import { HANDSHAKE_PATH, HEARTBEAT_PATH } from './protocol.js';

/** Largest handshake request body accepted. */
export const MAX_HANDSHAKE_REQUEST_BYTES = 64 * 1024;

/** What the handler gets: the raw body and the signature header. */
export interface SideChannelRequest {
  /** The request body, unparsed. */
  readonly body: Buffer;
  /** The `x-kvwire-signature` header, if any. */
  readonly signature: string | undefined;
  /** The caller's address, for diagnostics. */
  readonly remoteAddress: string | undefined;
}

/** What the handler answers: a status, and for authenticated callers a signed body. */
export interface SideChannelAnswer {
  /** HTTP status. */
  readonly status: number;
  /** JSON body (omitted: empty body). */
  readonly body?: Buffer;
  /** Signature header value for the body. */
  readonly signature?: string;
}

/** Answers a handshake request. */
export type SideChannelHandler = (request: SideChannelRequest) => SideChannelAnswer;

/** Options of {@link SideChannel.listen}. */
export interface SideChannelOptions {
  /** Address to bind; default '127.0.0.1'. Use '0.0.0.0' or '::' to serve other hosts. */
  readonly host?: string;
  /** Port; default 0 (any free port). */
  readonly port?: number;
  /** Answers handshakes (`POST` {@link HANDSHAKE_PATH}). */
  readonly handler: SideChannelHandler;
  /** Answers lease heartbeats (`POST` {@link HEARTBEAT_PATH}); without it that path is a 404 too. */
  readonly heartbeat?: SideChannelHandler;
}

/** A listening side channel. */
export class SideChannel {
  /** The bound address. */
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  readonly #server: Server;
  #closed = false;

  private constructor(server: Server, host: string, port: number) {
    this.#server = server;
    this.host = host;
    this.port = port;
  }

  /**
   * Starts listening.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a bad port; `ERR_KVWIRE_PEER_UNREACHABLE`
   *   when the address cannot be bound (in use, not local), with the system's reason.
   */
  static async listen(options: SideChannelOptions): Promise<SideChannel> {
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `side channel port must be an integer in 0..65535 (0: any free port), got ${describeValue(port)}`,
        { field: 'port' },
      );
    }
    const server = createServer({
      requestTimeout: 10_000,
      headersTimeout: 5_000,
      keepAliveTimeout: 2_000,
      maxHeaderSize: 8192,
    });
    const routes = new Map<string, SideChannelHandler>([[HANDSHAKE_PATH, options.handler]]);
    if (options.heartbeat !== undefined) routes.set(HEARTBEAT_PATH, options.heartbeat);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => serve(req, res, routes));
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        reject(
          new KvwireError(
            ErrorCode.PEER_UNREACHABLE,
            `the side channel cannot listen on ${host}:${port}: ${e.code ?? e.message}; choose another port (0 picks a free one) or a local address`,
            { engineStatus: e.code },
          ),
        );
      };
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    return new SideChannel(server, host, addr.port);
  }

  /** Stops listening and drops open connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

function answer(res: ServerResponse, a: SideChannelAnswer): void {
  const headers: Record<string, string | number> = {
    'cache-control': 'no-store',
    'content-length': a.body?.byteLength ?? 0,
  };
  if (a.body !== undefined) headers['content-type'] = 'application/json';
  if (a.signature !== undefined) headers[SIGNATURE_HEADER] = a.signature;
  res.writeHead(a.status, headers);
  res.end(a.body);
}

function serve(req: IncomingMessage, res: ServerResponse, routes: ReadonlyMap<string, SideChannelHandler>): void {
  const handler = routes.get((req.url ?? '').split('?')[0]!);
  if (handler === undefined) {
    req.resume();
    answer(res, { status: 404 });
    return;
  }
  if (req.method !== 'POST') {
    req.resume();
    answer(res, { status: 405 });
    return;
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (!(declared <= MAX_HANDSHAKE_REQUEST_BYTES)) {
    answer(res, { status: 413 });
    req.destroy();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (c: Buffer) => {
    size += c.byteLength;
    if (size > MAX_HANDSHAKE_REQUEST_BYTES) {
      if (!over) answer(res, { status: 413 });
      over = true;
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('error', () => req.destroy());
  req.on('end', () => {
    if (over) return;
    const sig = req.headers['x-kvwire-signature'];
    let a: SideChannelAnswer;
    try {
      a = handler({
        body: Buffer.concat(chunks),
        signature: typeof sig === 'string' ? sig : undefined,
        remoteAddress: req.socket.remoteAddress,
      });
    } catch {
      a = { status: 500 };
    }
    answer(res, a);
  });
}
