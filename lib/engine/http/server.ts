/**
 * The engine's HTTP API, as vLLM serves it: `/v1/completions`, `/v1/chat/completions` (JSON or
 * SSE), `/v1/models`, `/health`, `/metrics`, `/tokenize`, `/detokenize`. node:http, no framework.
 *
 * Hazards guarded: a body over the limit is refused while it streams in (413, the rest is not
 * buffered); a body that is not UTF-8 or not JSON answers 400; a client that goes away aborts its
 * request, which frees its slot and sequence; headers and bodies have deadlines.
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { MetricsRegistry } from '../../metrics.js';
import type { Engine, EngineResult } from '../serving/engine.js';
import type { RequestTiming } from '../serving/timing.js';
import { ApiError, errorBody, toApiError } from './errors.js';
import { serverTimingHeader } from './server-timing.js';
import { parseGenerationRequest, parseTokenizeRequest, type GenerationRequest } from './requests.js';

/** Options of {@link createApiServer}. */
export interface ApiServerOptions {
  /** The engine. */
  readonly engine: Engine;
  /** Metrics registry served on /metrics. */
  readonly registry: MetricsRegistry;
  /** Largest request body; default 2 MiB. */
  readonly maxBodyBytes?: number;
  /** One line per finished or failed generation request (x-request-id first); default none. */
  readonly log?: (line: string) => void;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw new ApiError(413, `the request body has ${declared} bytes; the limit is ${limit}`);
  // Not `for await`: leaving that loop early destroys the socket, and the client would see a reset
  // instead of the 413. Past the limit, chunks are dropped until the body ends.
  const chunks: Buffer[] = [];
  const size = await new Promise<number>((resolve, reject) => {
    let n = 0;
    const timer = setTimeout(() => reject(new ApiError(408, 'the request body did not arrive within 60 s')), 60_000);
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n <= limit) chunks.push(c);
    });
    req.once('end', () => {
      clearTimeout(timer);
      resolve(n);
    });
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  if (size > limit) throw new ApiError(413, `the request body exceeds the limit of ${limit} bytes`);
  let text: string;
  try {
    text = utf8.decode(Buffer.concat(chunks));
  } catch {
    throw new ApiError(400, 'the request body is not valid UTF-8', 'body');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, 'body');
  }
}

function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendError(res: ServerResponse, e: unknown): void {
  const a = toApiError(e);
  if (res.headersSent) {
    // Mid-stream: an SSE error event, then the end (as vLLM does).
    if (!res.writableEnded) {
      res.write(`data: ${errorBody(a.status, a.message, a.param)}\n\n`);
      res.end('data: [DONE]\n\n');
    }
    return;
  }
  sendJson(res, a.status, errorBody(a.status, a.message, a.param), a.headers);
}

function usage(g: GenerationRequest, r: Pick<EngineResult, 'tokens' | 'cachedTokens'>): Record<string, unknown> {
  return {
    prompt_tokens: g.prompt.length,
    total_tokens: g.prompt.length + r.tokens.length,
    completion_tokens: r.tokens.length,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  };
}

/** Cuts generated text at the first stop string (vLLM drops the stop string itself). */
function cutAtStop(text: string, stop: readonly string[]): string {
  let end = text.length;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

/** The request handler of the API (for a server that exists before the engine does). */
export type ApiHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** Applies the API's timeouts to a server. */
export function configureApiServer(server: Server): Server {
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // generations can stream for long; bodies are bounded by size instead
  server.keepAliveTimeout = 5_000;
  return server;
}

/** Creates (does not start) the API server. */
export function createApiServer(o: ApiServerOptions): Server {
  return configureApiServer(createServer(createApiHandler(o)));
}

/** Creates the API's request handler. */
export function createApiHandler(o: ApiServerOptions): ApiHandler {
  const { engine, registry } = o;
  const limit = o.maxBodyBytes ?? 2 * 1024 * 1024;
  const runtime = engine.runtime;
  const model = engine.servedModelName;

  async function generate(
    kind: 'completion' | 'chat',
    req: IncomingMessage,
    res: ServerResponse,
    rid: string,
  ): Promise<void> {
    const g = parseGenerationRequest(kind, await readBody(req, limit), runtime, model);
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableEnded) abort.abort();
    };
    res.on('close', onClose);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${rid}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
    let sent = '';
    const textOf = (tokens: readonly number[]): string => cutAtStop(runtime.detokenize(tokens), g.stop);
    const generated: number[] = [];
    // return_token_ids on a stream (vLLM's): each chunk carries the ids generated since the last
    // one (text held back still has its ids sent with the chunk that shows it), the first chunk
    // the prompt's ids.
    let unsentIds: number[] = [];
    let promptIdsSent = false;
    const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}): void => {
      if (g.returnTokenIds) {
        choice = { ...choice, token_ids: unsentIds };
        unsentIds = [];
      }
      const body = {
        id,
        object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
        created,
        model,
        choices: [choice],
        ...(g.returnTokenIds && !promptIdsSent ? { prompt_token_ids: g.prompt } : {}),
        ...extra,
      };
      promptIdsSent = true;
      res.write(`data: ${JSON.stringify(body)}\n\n`);
    };
    const timing: RequestTiming = {};
    const timingHeader = (): Record<string, string> => {
      const v = serverTimingHeader(timing);
      return v === undefined ? {} : { 'server-timing': v };
    };
    const onToken = g.stream
      ? (t: number): void => {
          if (!res.headersSent) {
            // Written at the first token: every engine stage before it is timed by now.
            res.writeHead(200, {
              'content-type': 'text/event-stream',
              'cache-control': 'no-cache',
              'x-request-id': rid,
              ...timingHeader(),
            });
            if (kind === 'chat')
              chunk({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
          }
          generated.push(t);
          unsentIds.push(t);
          let text = textOf(generated);
          // Hold back a trailing replacement character: a multi-byte character may be incomplete.
          if (text.endsWith('\ufffd')) text = text.slice(0, -1);
          if (text.length > sent.length && text.startsWith(sent)) {
            const delta = text.slice(sent.length);
            sent = text;
            chunk(
              kind === 'chat'
                ? { index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }
                : { index: 0, text: delta, logprobs: null, finish_reason: null, stop_reason: null },
            );
          }
        }
      : undefined;
    let result: EngineResult;
    try {
      result = await engine.run({
        requestId: rid,
        prompt: g.prompt,
        maxTokens: g.maxTokens,
        sampling: g.sampling,
        signal: abort.signal,
        ignoreEos: g.ignoreEos,
        ...(g.stop.length > 0
          ? { stopAfter: (t: readonly number[]) => g.stop.some((s) => runtime.detokenize(t).includes(s)) }
          : {}),
        ...(g.kvTransferParams === undefined ? {} : { kvTransferParams: g.kvTransferParams }),
        ...(onToken === undefined ? {} : { onToken }),
        timing,
      });
    } catch (e) {
      o.log?.(`${rid} ${kind} failed: ${(e as Error).message}`);
      throw e;
    } finally {
      res.off('close', onClose);
    }
    o.log?.(
      `${rid} ${kind} ${result.finishReason} prompt=${g.prompt.length} cached=${result.cachedTokens} completion=${result.tokens.length} ttft_ms=${result.ttftMs.toFixed(1)} kv=${result.kvSource}${result.kvTransferParams === undefined ? '' : ` held_blocks=${result.kvTransferParams.remote_block_ids.length}`}`,
    );
    if (result.finishReason === 'abort') {
      res.destroy();
      return;
    }
    const finish = result.finishReason;
    const text = textOf(result.tokens);
    if (g.stream) {
      if (!res.headersSent)
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          'x-request-id': rid,
          ...timingHeader(),
        });
      const rest = text.startsWith(sent) ? text.slice(sent.length) : '';
      chunk(
        kind === 'chat'
          ? {
              index: 0,
              delta: rest.length > 0 ? { content: rest } : {},
              logprobs: null,
              finish_reason: finish,
              stop_reason: null,
            }
          : { index: 0, text: rest, logprobs: null, finish_reason: finish, stop_reason: null },
        result.kvTransferParams === undefined ? {} : { kv_transfer_params: result.kvTransferParams },
      );
      if (g.includeUsage) {
        const body = {
          id,
          object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
          created,
          model,
          choices: [],
          usage: usage(g, result),
        };
        res.write(`data: ${JSON.stringify(body)}\n\n`);
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    const choice =
      kind === 'chat'
        ? {
            index: 0,
            message: { role: 'assistant', content: text, tool_calls: [] },
            logprobs: null,
            finish_reason: finish,
            stop_reason: null,
          }
        : { index: 0, text, logprobs: null, finish_reason: finish, stop_reason: null, prompt_logprobs: null };
    if (g.returnTokenIds) Object.assign(choice, { token_ids: result.tokens });
    const body = {
      id,
      object,
      created,
      model,
      choices: [choice],
      usage: usage(g, result),
      system_fingerprint: null,
      ...(g.returnTokenIds ? { prompt_token_ids: g.prompt } : {}),
      kv_transfer_params: result.kvTransferParams ?? null,
    };
    sendJson(res, 200, JSON.stringify(body), { 'x-request-id': rid, ...timingHeader() });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0]!;
    const header = req.headers['x-request-id'];
    const rid = typeof header === 'string' && /^[\x21-\x7e]{1,128}$/.test(header) ? header : randomUUID();
    res.setHeader('x-request-id', rid);
    const post = (): void => {
      if (req.method !== 'POST') throw new ApiError(405, `${url} takes POST, not ${req.method}`);
      const type = req.headers['content-type'];
      if (type !== undefined && !/^application\/json\b/i.test(type)) {
        throw new ApiError(415, `${url} takes application/json, not ${type}`);
      }
    };
    switch (url) {
      case '/v1/completions':
      case '/v1/chat/completions':
        post();
        if (engine.draining)
          throw new ApiError(503, 'the engine is shutting down; send the request to another worker', null, {
            'retry-after': '5',
          });
        return generate(url === '/v1/completions' ? 'completion' : 'chat', req, res, rid);
      case '/tokenize': {
        post();
        const tokens = parseTokenizeRequest(await readBody(req, limit), runtime, model);
        return sendJson(
          res,
          200,
          JSON.stringify({ count: tokens.length, max_model_len: runtime.maxModelLen, tokens, token_strs: null }),
        );
      }
      case '/detokenize': {
        post();
        const b = (await readBody(req, limit)) as { tokens?: unknown };
        if (!Array.isArray(b?.tokens) || !b.tokens.every((t) => Number.isSafeInteger(t) && (t as number) >= 0)) {
          throw new ApiError(400, 'tokens must be an array of token ids', 'tokens');
        }
        return sendJson(res, 200, JSON.stringify({ prompt: runtime.detokenize(b.tokens as number[]) }));
      }
      case '/v1/models':
        return sendJson(
          res,
          200,
          JSON.stringify({
            object: 'list',
            data: [
              {
                id: model,
                object: 'model',
                created: 0,
                owned_by: 'kvwire',
                root: model,
                parent: null,
                max_model_len: runtime.maxModelLen,
                permission: [],
              },
            ],
          }),
        );
      case '/health':
        if (engine.draining) return sendJson(res, 503, errorBody(503, 'draining', null), { 'retry-after': '5' });
        res.writeHead(200, { 'content-length': 0 });
        res.end();
        return;
      case '/metrics': {
        const text = await registry.metrics();
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(text);
        return;
      }
      default:
        throw new ApiError(404, `no route ${req.method} ${url}`);
    }
  }

  return (req, res) => {
    route(req, res).catch(async (e) => {
      if (!req.complete) {
        // A refused body may still be arriving. Read and drop it (bounded) before answering: a
        // client still uploading when the connection closes sees a reset, not our answer.
        res.setHeader('connection', 'close');
        await drain(req, 64 * 1024 * 1024, 10_000);
      }
      sendError(res, e);
    });
  };
}

/** Reads and drops the rest of a request body: at most `maxBytes`, for at most `ms`. */
function drain(req: IncomingMessage, maxBytes: number, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let dropped = 0;
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(done, ms);
    req.on('data', (c: Buffer) => {
      dropped += c.length;
      if (dropped > maxBytes) done(); // answer anyway; closing the connection resets the rest
    });
    req.once('end', done);
    req.once('close', done);
    req.resume();
  });
}
