/**
 * One ext_proc stream (one HTTP request through Envoy) as the endpoint picker handles it, in
 * FULL_DUPLEX_STREAMED body mode (the Gateway API Inference Extension's endpoint picker protocol):
 *
 * 1. `request_headers`: kept; not answered yet (the choice needs the body). A request without a
 *    body (`end_of_stream`) goes to the least loaded healthy decode endpoint at once.
 * 2. `request_body` chunks: buffered up to a limit (413 beyond). At `end_of_stream` (or at
 *    `request_trailers`): decide, then answer the headers with `x-gateway-destination-endpoint:
 *    ip:port` (+ `x-prefiller-host-port` when disaggregating, + the explanation when asked), the same
 *    destination in dynamic metadata (`envoy.lb` / `x-gateway-destination-endpoint`) and
 *    `clear_route_cache`, then stream the body back as `streamed_response` chunks, the only body
 *    answer Envoy accepts in this mode.
 * 3. Response headers get `x-session-token`; response body chunks stream straight back.
 *
 * A request the picker cannot place gets an ImmediateResponse: 400 (no or bad prompt), 404 (no
 * endpoint serves the model), 413, 429 (shedding), 503 (no healthy endpoint, or none in Envoy's
 * subset hint). A stream cut mid-request releases what it held.
 *
 * @packageDocumentation
 */
import { hostPort } from '../endpoint.js';
import { addressOf } from '../types.js';
import { EXPLAIN_HEADER } from '../explain.js';
import { INFERENCE_PATHS } from '../request.js';
import { EXPLAIN_REQUEST_HEADER, PREFILLER_HEADER } from '../headers.js';
import { statusOf } from '../scheduler.js';
import { SESSION_HEADER, sessionToken } from '../scorers/session-affinity.js';
import type { SchedulingService } from '../service.js';
import { subsetFilter } from '../filters/subset-hint.js';
import {
  immediate,
  namespacedStruct,
  readHeaders,
  readSubset,
  setHeaders,
  streamedBody,
  type ProcessingRequest,
  type ProcessingResponse,
} from './messages.js';

/** How the picker names things on the wire (the protocol's defaults). */
export interface EppWireNames {
  /** The destination header and metadata key. Default `x-gateway-destination-endpoint`. */
  readonly destinationKey: string;
  /** The dynamic metadata namespace of the destination. Default `envoy.lb`. */
  readonly metadataNamespace: string;
  /** The filter metadata namespace of the subset hint. Default `envoy.lb.subset_hint`. */
  readonly subsetNamespace: string;
  /** The subset hint key. Default `x-gateway-destination-endpoint-subset`. */
  readonly subsetKey: string;
}

/** The protocol's default names. */
export const EPP_WIRE_NAMES: EppWireNames = Object.freeze({
  destinationKey: 'x-gateway-destination-endpoint',
  metadataNamespace: 'envoy.lb',
  subsetNamespace: 'envoy.lb.subset_hint',
  subsetKey: 'x-gateway-destination-endpoint-subset',
});

/** Options of {@link EppStream}. */
export interface EppStreamOptions {
  readonly names: EppWireNames;
  readonly maxBodyBytes: number;
  readonly explain: 'on-request' | 'always' | 'never';
}

/** See the module documentation. */
export class EppStream {
  private headers: Record<string, string> = {};
  private subset: Set<string> | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private placed = false;
  private endpointName: string | undefined;
  private release: (() => void) | undefined;
  private finished = false;

  constructor(
    private readonly service: SchedulingService,
    private readonly o: EppStreamOptions,
  ) {}

  /** The answers to one message, in order (none in observability mode). */
  async onMessage(req: ProcessingRequest): Promise<ProcessingResponse[]> {
    const out = await this.handle(req);
    return req.observability_mode === true ? [] : out;
  }

  private async handle(req: ProcessingRequest): Promise<ProcessingResponse[]> {
    this.subset ??= readSubset(req, this.o.names.subsetNamespace, this.o.names.subsetKey);
    switch (req.request) {
      case 'request_headers':
        this.headers = readHeaders(req.request_headers?.headers?.headers);
        if (req.request_headers?.end_of_stream === true) return this.place(Buffer.alloc(0), false);
        return [];
      case 'request_body': {
        if (this.placed) return [];
        const b = req.request_body?.body ?? Buffer.alloc(0);
        this.size += b.length;
        if (this.size > this.o.maxBodyBytes) {
          this.placed = true;
          return [
            immediate(
              413,
              `the request body is over the endpoint picker's limit of ${this.o.maxBodyBytes} bytes`,
              'body_too_large',
            ),
          ];
        }
        this.chunks.push(b);
        if (req.request_body?.end_of_stream === true) return this.place(Buffer.concat(this.chunks), true);
        return [];
      }
      case 'request_trailers': {
        const out = this.placed ? [] : await this.place(Buffer.concat(this.chunks), false);
        return [...out, { request_trailers: {} }];
      }
      case 'response_headers': {
        const set: Record<string, string> = {};
        if (this.endpointName !== undefined) set[SESSION_HEADER] = sessionToken(this.endpointName);
        if (req.response_headers?.end_of_stream === true) this.finish();
        return [{ response_headers: { response: { header_mutation: { set_headers: setHeaders(set) } } } }];
      }
      case 'response_body': {
        const eos = req.response_body?.end_of_stream === true;
        if (eos) this.finish();
        return streamedBody('response_body', req.response_body?.body ?? Buffer.alloc(0), eos);
      }
      case 'response_trailers':
        this.finish();
        return [{ response_trailers: {} }];
      default:
        return [];
    }
  }

  private async place(body: Buffer, bodyEnds: boolean): Promise<ProcessingResponse[]> {
    this.placed = true;
    const path = (this.headers[':path'] ?? '/').split('?')[0]!;
    const set: Record<string, string> = {};
    const remove = [PREFILLER_HEADER, EXPLAIN_REQUEST_HEADER];
    let endpoint: string;
    let name: string;
    if (INFERENCE_PATHS.has(path) && (this.headers[':method'] ?? 'POST') === 'POST') {
      try {
        const { decision: d } = await this.service.place(
          path,
          body,
          this.headers,
          this.subset !== undefined ? { subset: this.subset } : {},
        );
        endpoint = d.destination;
        name = d.decode.name;
        if (d.prefill !== undefined) set[PREFILLER_HEADER] = hostPort(d.prefill.url);
        const ex = this.o.explain;
        if (ex === 'always' || (ex === 'on-request' && this.headers[EXPLAIN_REQUEST_HEADER] === '1'))
          set[EXPLAIN_HEADER] = d.explanation;
      } catch (e) {
        const status = statusOf(e);
        return [
          immediate(
            status >= 500 && status !== 503 ? 500 : status,
            (e as Error).message,
            status === 404
              ? 'model_not_found'
              : status === 429
                ? 'shedding'
                : status === 503
                  ? 'no_endpoint'
                  : 'bad_request',
          ),
        ];
      }
    } else {
      const c = subsetFilter(this.service.decodeCandidates(), this.subset)[0];
      if (c === undefined)
        return [
          immediate(
            503,
            'no healthy decode endpoint (in the subset hint) can take this request: retry later',
            'no_endpoint',
          ),
        ];
      endpoint = addressOf(c);
      name = c.spec.name;
    }
    this.endpointName = name;
    this.release = this.service.pool.begin(name);
    set[this.o.names.destinationKey] = endpoint;
    if (body.length > 0 || bodyEnds) set['content-length'] = String(body.length);
    const headersAnswer: ProcessingResponse = {
      request_headers: {
        response: {
          header_mutation: { set_headers: setHeaders(set), remove_headers: remove.filter((h) => set[h] === undefined) },
          clear_route_cache: true,
        },
      },
      dynamic_metadata: namespacedStruct(this.o.names.metadataNamespace, this.o.names.destinationKey, endpoint),
    };
    if (!bodyEnds && body.length === 0 && this.chunks.length === 0) return [headersAnswer];
    return [headersAnswer, ...streamedBody('request_body', body, bodyEnds)];
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.release?.();
  }

  /** The stream ended (normally, cut, or cancelled): release what it held. */
  close(): void {
    this.finish();
  }
}
