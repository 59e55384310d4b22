/**
 * Fake prefill and decode workers for the sidecar's tests: real HTTP servers on 127.0.0.1 that
 * record every request they receive (method, path, headers, parsed body) and every connection,
 * and answer as vLLM with NixlConnector would, or as a test scripts them to (errors, hangs, slow
 * streams, dropped connections).
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/** One request as a fake worker received it. */
export interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly raw: Buffer;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: Record<string, unknown> | undefined;
}

/** How a fake worker answers one request. */
export type Answer = (req: Received, res: ServerResponse, incoming: IncomingMessage) => void | Promise<void>;

/** A running fake worker. */
export interface FakeWorker {
  readonly port: number;
  readonly hostPort: string;
  readonly url: string;
  /** Requests received, in order. */
  readonly received: Received[];
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests whose client went away before the answer finished. */
  aborted: number;
  /** Replaces the answer for the following requests. */
  answer: Answer;
  close(): Promise<void>;
}

/** Options of {@link startFakeWorker}. */
export interface FakeWorkerOptions {
  /** Serve HTTPS with this certificate and key. */
  readonly tls?: { cert: string; key: string };
  /** Bind to this port (a trap server on a port the allowlist does not admit). */
  readonly port?: number;
}

/** Starts a fake worker on 127.0.0.1. */
export async function startFakeWorker(answer: Answer, options: FakeWorkerOptions = {}): Promise<FakeWorker> {
  const sockets = new Set<Socket>();
  const worker: FakeWorker = {
    port: 0,
    hostPort: '',
    url: '',
    received: [],
    connections: 0,
    aborted: 0,
    answer,
    close: async () => {},
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      const received: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, raw, json };
      worker.received.push(received);
      res.on('close', () => {
        if (!res.writableFinished) worker.aborted++;
      });
      void Promise.resolve(worker.answer(received, res, req)).catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(e));
      });
    });
  };
  const server =
    options.tls === undefined ? http.createServer(onRequest) : https.createServer({ ...options.tls }, onRequest);
  server.on(options.tls === undefined ? 'connection' : 'secureConnection', () => worker.connections++);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  Object.assign(worker, {
    port,
    hostPort: `127.0.0.1:${port}`,
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  });
  return worker;
}

/** Sends a JSON answer. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** What a prefill answers, as vLLM's NixlConnector shapes it (plus kvwire's lease fields). */
export function prefillParams(requestId: string, port: number): Record<string, unknown> {
  return {
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_engine_id: 'prefill-engine-1',
    remote_request_id: requestId,
    remote_block_ids: [4, 5, 6],
    remote_host: '127.0.0.1',
    remote_port: port,
    tp_size: 1,
    remote_lease_slot: 3,
    remote_lease_token: 123456789,
  };
}

/**
 * A prefill answer: one token, the kv_transfer_params, and usage with `cachedTokens` (no usage at
 * all when undefined, as a worker that does not report it).
 */
export function prefillAnswer(cachedTokens: number | undefined, sideChannelPort = 5600): Answer {
  return (req, res) => {
    const id = String(req.headers['x-request-id'] ?? 'none');
    sendJson(res, 200, {
      id: `cmpl-${id}`,
      object: req.path.includes('chat') ? 'chat.completion' : 'text_completion',
      choices: [{ index: 0, text: 'x', finish_reason: 'length' }],
      ...(cachedTokens === undefined
        ? {}
        : {
            usage: {
              prompt_tokens: 12,
              completion_tokens: 1,
              total_tokens: 13,
              prompt_tokens_details: { cached_tokens: cachedTokens },
            },
          }),
      kv_transfer_params: prefillParams(id, sideChannelPort),
    });
  };
}

/** A decode worker's usage block (its own cached tokens: `cached`). */
function usage(cached: number): Record<string, unknown> {
  return {
    prompt_tokens: 12,
    completion_tokens: 3,
    total_tokens: 15,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

/**
 * A decode answer. Non-streaming: JSON with usage. Streaming: SSE chunks `tokens`, the usage
 * chunk when `stream_options.include_usage`, then `[DONE]`; each chunk waits for `gate(i)`
 * (default: none), so a test can hold the stream open and see what has reached the client.
 */
export function decodeAnswer(
  options: { ownCached?: number; tokens?: string[]; gate?: (i: number) => Promise<void> } = {},
): Answer {
  const tokens = options.tokens ?? ['Hello', ',', ' world'];
  return async (req, res) => {
    const body = req.json ?? {};
    const id = String(req.headers['x-request-id'] ?? 'none');
    const chat = req.path.includes('chat');
    if (body.stream !== true) {
      sendJson(res, 200, {
        id: `cmpl-${id}`,
        object: chat ? 'chat.completion' : 'text_completion',
        choices: [
          chat
            ? { index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: 'stop' }
            : { index: 0, text: tokens.join(''), finish_reason: 'stop' },
        ],
        usage: usage(options.ownCached ?? 0),
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    for (let i = 0; i < tokens.length; i++) {
      await options.gate?.(i);
      const choice = chat
        ? { index: 0, delta: { content: tokens[i] }, finish_reason: null }
        : { index: 0, text: tokens[i], finish_reason: null };
      const chunk: Record<string, unknown> = {
        id: `cmpl-${id}`,
        object: chat ? 'chat.completion.chunk' : 'text_completion',
        choices: [choice],
      };
      if (includeUsage) chunk.usage = null;
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    if (includeUsage) {
      res.write(
        `data: ${JSON.stringify({ id: `cmpl-${id}`, object: chat ? 'chat.completion.chunk' : 'text_completion', choices: [], usage: usage(options.ownCached ?? 0) })}\n\n`,
      );
    }
    res.end('data: [DONE]\n\n');
  };
}

/** A gate a test opens chunk by chunk: `wait(i)` resolves once `open(i)` was called. */
export class Gates {
  private readonly waiters = new Map<number, () => void>();
  private readonly opened = new Set<number>();

  /** Resolves when gate `i` opens. */
  wait = (i: number): Promise<void> =>
    this.opened.has(i) ? Promise.resolve() : new Promise<void>((resolve) => this.waiters.set(i, resolve));

  /** Opens gate `i`. */
  open(i: number): void {
    this.opened.add(i);
    this.waiters.get(i)?.();
    this.waiters.delete(i);
  }
}

/** A request to the sidecar with Node's http client; resolves with the whole answer. */
export function request(
  url: string,
  options: {
    method?: string;
    path: string;
    headers?: Record<string, string | string[]>;
    body?: string | Buffer;
    agent?: http.Agent;
    ca?: string;
  },
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string; json: Record<string, unknown> | undefined }> {
  return new Promise((resolve, reject) => {
    const u = new URL(options.path, url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(
      u,
      {
        method: options.method ?? 'POST',
        headers: { 'content-type': 'application/json', ...options.headers },
        agent: options.agent ?? false,
        ca: options.ca,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(body) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Polls `check` until it returns true (generous deadline: the machine is shared). */
export async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
