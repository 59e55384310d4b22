/**
 * What the sidecar does with each request: the P/D flow on the two OpenAI routes (or decode-only
 * when no prefill target is named), and a plain relay to the decode worker for everything else.
 *
 * @packageDocumentation
 */
import type { Agent, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { endToEndHeaders, PREFILLER_HEADER, REQUEST_ID_HEADER, requestIdOf } from './headers.js';
import { BodyTooLarge, readBody, sendError } from './http-io.js';
import { ClientLink, type LegEndpoint } from './leg.js';
import type { RequestOutcome, SidecarMetrics, SidecarRoute } from './metrics.js';
import { runDecodeLeg, type DecodeOutcome } from './decode-leg.js';
import { runPrefillLeg } from './prefill-leg.js';
import type { ResolvedSidecarOptions } from './options.js';
import { chooseTarget, type CheckedTarget } from './target.js';
import {
  cachedTokensOf,
  decodeRequestBody,
  isJsonObject,
  KV_TRANSFER_PARAMS,
  PD_ROUTES,
  prefillRequestBody,
  withoutClientKvParams,
  type JsonObject,
  type OpenAiApi,
} from './nixlv2.js';

/** What the handlers share: options, metrics, the decode endpoint, the prefill pool. */
export interface SidecarContext {
  readonly options: ResolvedSidecarOptions;
  readonly metrics: SidecarMetrics;
  readonly decode: LegEndpoint;
  readonly prefillAgent: Agent;
  readonly prefillProtocol: 'http:' | 'https:';
  /** One line per notable event (refusals, failures, fallbacks). */
  readonly log: (line: string) => void;
}

/**
 * Headers the sidecar sets itself on P/D legs. `accept-encoding` goes too: the sidecar reads the
 * prefill's JSON and may rewrite the decode's usage, which it cannot do to a compressed body.
 */
const SET_ON_LEGS = new Set(['content-length', 'accept-encoding', REQUEST_ID_HEADER]);
/** Headers the sidecar sets on a decode-only request (the answer is relayed as it is, compressed or not). */
const SET_ON_DECODE_ONLY = new Set(['content-length', REQUEST_ID_HEADER]);

function decodeOutcomeToRequest(outcome: DecodeOutcome, fallback: boolean): RequestOutcome {
  switch (outcome) {
    case 'ok':
      return fallback ? 'fallback_ok' : 'ok';
    case 'error_status':
      return 'decode_error';
    case 'unreachable':
      return 'decode_unreachable';
    case 'too_large':
      return 'bad_request';
    case 'cancelled':
      return 'client_closed';
    default:
      return outcome;
  }
}

/** Per-request state the handlers pass along. */
interface Exchange {
  readonly ctx: SidecarContext;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** When the request arrived (performance.now()). */
  readonly arrived: number;
  /** Tells the legs when the client goes away before its answer is complete. */
  readonly client: ClientLink;
  /** The path (and query) the legs use. */
  readonly path: string;
}

function count(x: Exchange, route: SidecarRoute, outcome: RequestOutcome): void {
  x.ctx.metrics.requests.inc({ route, outcome });
}

/** What {@link toDecode} sends. */
interface DecodeRequest {
  readonly route: SidecarRoute;
  readonly headers: OutgoingHttpHeaders;
  /** Bytes, the client's request to stream through, or none. */
  readonly body: Buffer | IncomingMessage | undefined;
  /** The prefill's cached tokens, for the answer's usage (P/D only). */
  readonly prefillCachedTokens?: number | undefined;
  /** Set on the answer when the worker did not echo one. */
  readonly requestId?: string;
  /** Time spent in the prefill leg (not the sidecar's own). */
  readonly prefillSeconds?: number;
  /** A decode-only run after the prefill failed. */
  readonly fallback?: boolean;
  /** `Server-Timing` entries for the answer (the prefill leg's). */
  readonly serverTiming?: string;
}

/** Sends the request to the decode worker and relays the answer; counts the request. */
async function toDecode(x: Exchange, d: DecodeRequest): Promise<void> {
  const { ctx } = x;
  const { route, headers, body, prefillCachedTokens, requestId } = d;
  const prefillSeconds = d.prefillSeconds ?? 0;
  const sent = performance.now();
  ctx.metrics.overheadSeconds.observe({ route }, Math.max(0, (sent - x.arrived) / 1000 - prefillSeconds));
  const outcome = await runDecodeLeg({
    endpoint: ctx.decode,
    method: x.req.method ?? 'GET',
    path: x.path,
    headers,
    body,
    maxBodyBytes: ctx.options.maxBodyBytes,
    timeoutMs: ctx.options.decodeTimeoutMs,
    client: x.client,
    res: x.res,
    prefillCachedTokens,
    requestId,
    ...(d.serverTiming === undefined ? {} : { serverTiming: d.serverTiming }),
    onResponse: () => ctx.metrics.decodeFirstByteSeconds.observe({ route }, (performance.now() - sent) / 1000),
  });
  if (outcome === 'unreachable' || outcome === 'timeout' || outcome === 'broken') {
    ctx.log(
      `decode leg ${outcome} (${x.req.method} ${x.req.url}${requestId === undefined ? '' : `, x-request-id ${requestId}`})`,
    );
  }
  count(x, route, decodeOutcomeToRequest(outcome, d.fallback === true));
}

/**
 * True for a body a JSON API would parse: no content-type, `application/json` or
 * `application/*+json` (FastAPI's rule, which vLLM's routes follow).
 */
function isJsonBody(contentType: string | undefined): boolean {
  return contentType === undefined || /^\s*application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i.test(contentType);
}

/**
 * Any path or method but the two P/D routes: relayed to the decode worker. A JSON body is read
 * (bounded) so that `kv_transfer_params` a client put in it is removed, on every route: vLLM's
 * other endpoints read that field too. Other bodies (uploads) stream through unread.
 */
async function relayToDecode(x: Exchange): Promise<void> {
  const { req } = x;
  const length = req.headers['content-length'];
  const hasBody = length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || !isJsonBody(req.headers['content-type'])) {
    await toDecode(x, { route: 'passthrough', headers: endToEndHeaders(req.headers), body: hasBody ? req : undefined });
    return;
  }
  const raw = await readRouteBody(x, 'passthrough');
  if (raw === undefined) return;
  const body = withoutClientParams(x, raw, 'passthrough');
  if (body === undefined) return;
  const headers = endToEndHeaders(req.headers, SET_ON_DECODE_ONLY);
  headers['content-length'] = body.length;
  const id = req.headers[REQUEST_ID_HEADER];
  if (typeof id === 'string') headers[REQUEST_ID_HEADER] = id;
  await toDecode(x, { route: 'passthrough', headers, body });
}

/**
 * The body without client `kv_transfer_params` (see {@link withoutClientKvParams}); undefined after
 * answering 400 for a JSON body that cannot be parsed but may carry the field.
 */
function withoutClientParams(x: Exchange, raw: Buffer, route: SidecarRoute): Buffer | undefined {
  const checked = withoutClientKvParams(raw);
  if (checked.kind === 'unparseable') {
    sendError(x.res, 400, {
      message: 'the request body is not valid JSON',
      type: 'invalid_request_error',
      code: 'invalid_json',
    });
    count(x, route, 'bad_request');
    return undefined;
  }
  if (checked.kind === 'unchanged') return raw;
  x.ctx.metrics.clientParamsStripped.inc();
  return checked.body;
}

/** Reads the body of a P/D route; answers 413 or gives up on a gone client. */
async function readRouteBody(x: Exchange, route: SidecarRoute): Promise<Buffer | undefined> {
  try {
    return await readBody(x.req, x.ctx.options.maxBodyBytes);
  } catch (e) {
    if (e instanceof BodyTooLarge) {
      sendError(
        x.res,
        413,
        {
          message: `the request body is larger than ${e.limit} bytes`,
          type: 'invalid_request_error',
          code: 'body_too_large',
        },
        true,
      );
      count(x, route, 'bad_request');
    } else count(x, route, 'client_closed');
    return undefined;
  }
}

function legHeaders(req: IncomingMessage, requestId: string, length: number): OutgoingHttpHeaders {
  const headers = endToEndHeaders(req.headers, SET_ON_LEGS);
  headers[REQUEST_ID_HEADER] = requestId;
  headers['content-type'] = 'application/json';
  headers['content-length'] = length;
  return headers;
}

/** A P/D route without `x-prefiller-host-port`: decode-only, client kv_transfer_params removed. */
async function decodeOnly(x: Exchange, requestId: string): Promise<void> {
  const raw = await readRouteBody(x, 'decode_only');
  if (raw === undefined) return;
  const body = withoutClientParams(x, raw, 'decode_only');
  if (body === undefined) return;
  const headers = endToEndHeaders(x.req.headers, SET_ON_DECODE_ONLY);
  headers[REQUEST_ID_HEADER] = requestId;
  headers['content-length'] = body.length;
  await toDecode(x, { route: 'decode_only', headers, body, requestId });
}

function prefillEndpoint(ctx: SidecarContext, target: CheckedTarget): LegEndpoint {
  return {
    protocol: ctx.prefillProtocol,
    connectHost: target.address.text,
    port: target.port,
    hostHeader: target.hostHeader,
    servername: target.servername,
    agent: ctx.prefillAgent,
  };
}

function parseObject(raw: Buffer): JsonObject | undefined {
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    return isJsonObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The P/D flow: check the target, prefill, then decode with the prefill's parameters. */
async function prefillThenDecode(x: Exchange, api: OpenAiApi, requestId: string, targetList: string): Promise<void> {
  const { ctx } = x;
  const { options, metrics } = ctx;
  // The target is checked before the body is read and before any connection is made.
  const target = await chooseTarget(targetList, {
    allowlist: options.allowlist,
    resolve: options.resolve,
    resolveTimeoutMs: options.resolveTimeoutMs,
    sampling: options.prefillerSampling,
    random: options.random,
  });
  if (!target.ok) {
    metrics.ssrfRefusals.inc({ reason: target.reason });
    ctx.log(
      `refused prefill target (${target.reason}): ${target.message}; client ${x.req.socket.remoteAddress ?? '?'}, x-request-id ${requestId}`,
    );
    sendError(
      x.res,
      403,
      {
        message: `prefill target refused: ${target.message}`,
        type: 'permission_error',
        code: 'prefill_target_refused',
        param: PREFILLER_HEADER,
        reason: target.reason,
      },
      true,
    );
    count(x, 'pd', 'refused');
    return;
  }
  const raw = await readRouteBody(x, 'pd');
  if (raw === undefined) return;
  const original = parseObject(raw);
  if (original === undefined) {
    sendError(x.res, 400, {
      message: 'the request body must be a JSON object',
      type: 'invalid_request_error',
      code: 'invalid_json',
    });
    count(x, 'pd', 'bad_request');
    return;
  }
  const prefillBody = Buffer.from(JSON.stringify(prefillRequestBody(original, api)));
  const started = performance.now();
  const result = await runPrefillLeg({
    endpoint: prefillEndpoint(ctx, target),
    path: x.path,
    headers: legHeaders(x.req, requestId, prefillBody.length),
    body: prefillBody,
    timeoutMs: options.prefillTimeoutMs,
    maxRetries: options.prefillMaxRetries,
    backoffMs: options.prefillRetryBackoffMs,
    client: x.client,
    onRetry: (why) => metrics.prefillRetries.inc({ reason: why }),
  });
  const prefillSeconds = (performance.now() - started) / 1000;
  // The client learns where the time went (W3C Server-Timing): the whole prefill leg, retries
  // included, then the prefill worker's own entries or why the request ran decode-only.
  const legTiming = `sidecar-prefill;dur=${Number((prefillSeconds * 1000).toFixed(2))}`;
  metrics.prefillSeconds.observe({ outcome: result.kind === 'failed' ? result.reason : result.kind }, prefillSeconds);

  switch (result.kind) {
    case 'cancelled':
      count(x, 'pd', 'client_closed');
      return;
    case 'rejected': {
      // The prefill's 4xx is the client's answer (a bad request is bad on both workers).
      const headers = endToEndHeaders(result.headers);
      headers['content-length'] = result.body.length;
      if (headers[REQUEST_ID_HEADER] === undefined) headers[REQUEST_ID_HEADER] = requestId;
      x.res.writeHead(result.status, headers);
      x.res.end(result.body);
      count(x, 'pd', 'prefill_rejected');
      return;
    }
    case 'failed': {
      ctx.log(`prefill leg failed (${result.reason}): ${result.message}; x-request-id ${requestId}`);
      if (options.onPrefillFailure === 'fail') {
        sendError(x.res, result.reason === 'timeout' ? 504 : 502, {
          message: result.message,
          type: 'api_error',
          code: `prefill_${result.reason}`,
        });
        count(x, 'pd', 'prefill_failed');
        return;
      }
      metrics.fallbacks.inc({ reason: result.reason });
      // Decode-only: the client's request as sent, minus any kv_transfer_params of its own.
      const { [KV_TRANSFER_PARAMS]: _dropped, ...rest } = original;
      const body = Buffer.from(JSON.stringify(rest));
      await toDecode(x, {
        route: 'decode_only',
        headers: legHeaders(x.req, requestId, body.length),
        body,
        requestId,
        prefillSeconds,
        fallback: true,
        serverTiming: `${legTiming}, sidecar-fallback;desc="${result.reason}"`,
      });
      return;
    }
    case 'ok': {
      const body = Buffer.from(JSON.stringify(decodeRequestBody(original, result.kvTransferParams)));
      await toDecode(x, {
        route: 'pd',
        headers: legHeaders(x.req, requestId, body.length),
        body,
        prefillCachedTokens: cachedTokensOf(result.response),
        requestId,
        prefillSeconds,
        serverTiming: result.serverTiming === undefined ? legTiming : `${legTiming}, ${result.serverTiming}`,
      });
      return;
    }
  }
}

/** The sidecar's request handler (minus its own metrics path). */
export function handle(ctx: SidecarContext, req: IncomingMessage, res: ServerResponse): void {
  const arrived = performance.now();
  const url = req.url ?? '/';
  const route = req.method === 'POST' ? pdRouteOf(url) : undefined;
  const x: Exchange = { ctx, req, res, arrived, client: new ClientLink(res), path: route?.path ?? url };
  const work = route === undefined ? relayToDecode(x) : pdRoute(x, route.api);
  work.catch((e: unknown) => {
    // A bug, not a request error: answer 500 rather than leave the client hanging.
    ctx.log(`internal error: ${(e as Error)?.stack ?? String(e)}`);
    sendError(res, 500, { message: 'internal error in the sidecar', type: 'api_error', code: 'internal_error' });
  });
}

/** A P/D route: decode-only without a target, the nixlv2 flow with one. */
function pdRoute(x: Exchange, api: OpenAiApi): Promise<void> {
  const requestId = requestIdOf(x.req.headers);
  // Node joins repeated header lines with ', ' (a list, as RFC 9110 allows proxies to do).
  const given = x.req.headers[PREFILLER_HEADER];
  const targets = Array.isArray(given) ? given.join(',') : given;
  return targets === undefined ? decodeOnly(x, requestId) : prefillThenDecode(x, api, requestId, targets);
}

/**
 * The P/D route a request path names, and the canonical path to forward. Servers that route on
 * the percent-decoded path (uvicorn, so vLLM) or ignore a trailing slash would serve
 * `/v1/%63ompletions` and `/v1/completions/` as completions; so they are P/D routes here too, and
 * never slip past the flow (and its kv_transfer_params rules) as a plain relay.
 */
export function pdRouteOf(url: string): { api: OpenAiApi; path: string } | undefined {
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  if (path.includes('%')) {
    try {
      path = decodeURIComponent(path);
    } catch {
      return undefined;
    }
  }
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  const api = PD_ROUTES.get(path);
  return api === undefined ? undefined : { api, path: q < 0 ? path : path + url.slice(q) };
}
