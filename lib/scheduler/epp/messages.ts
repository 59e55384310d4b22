/**
 * The ext_proc messages as @grpc/proto-loader presents them (see `protos.ts` for the options), and
 * builders for the answers the endpoint picker sends. Field names are Envoy's (snake_case), except
 * inside `google.protobuf.Struct` (camelCase: `stringValue`, `structValue`, `listValue`).
 *
 * @packageDocumentation
 */

/** `envoy.config.core.v3.HeaderValue`. */
export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

/** `google.protobuf.Value` as proto-loader presents it. */
export interface StructValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: { values?: StructValue[] };
  kind?: string;
}

/** `google.protobuf.Struct`. */
export interface Struct {
  fields?: Record<string, StructValue>;
}

/** `ProcessingRequest`. */
export interface ProcessingRequest {
  request?:
    | 'request_headers'
    | 'response_headers'
    | 'request_body'
    | 'response_body'
    | 'request_trailers'
    | 'response_trailers';
  request_headers?: { headers?: { headers?: HeaderValue[] }; end_of_stream?: boolean };
  response_headers?: { headers?: { headers?: HeaderValue[] }; end_of_stream?: boolean };
  request_body?: { body?: Buffer; end_of_stream?: boolean };
  response_body?: { body?: Buffer; end_of_stream?: boolean };
  request_trailers?: { trailers?: { headers?: HeaderValue[] } };
  response_trailers?: { trailers?: { headers?: HeaderValue[] } };
  metadata_context?: { filter_metadata?: Record<string, Struct> };
  observability_mode?: boolean;
  protocol_config?: {
    request_body_mode?: string;
    response_body_mode?: string;
    send_body_without_waiting_for_header_response?: boolean;
  };
}

/** A header to set. */
export interface HeaderValueOption {
  header: HeaderValue;
  append_action: 'OVERWRITE_IF_EXISTS_OR_ADD';
}

/** `HeaderMutation`. */
export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

/** `CommonResponse`. */
export interface CommonResponse {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE';
  header_mutation?: HeaderMutation;
  body_mutation?: { streamed_response: { body: Buffer; end_of_stream: boolean } };
  clear_route_cache?: boolean;
}

/** `ProcessingResponse`. */
export interface ProcessingResponse {
  request_headers?: { response: CommonResponse };
  response_headers?: { response: CommonResponse };
  request_body?: { response: CommonResponse };
  response_body?: { response: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: { status: { code: string | number }; headers?: HeaderMutation; body?: Buffer; details?: string };
  dynamic_metadata?: Struct;
}

/** A header map as lower-case name → value (a value from `raw_value` when set, else `value`). */
export function readHeaders(list: readonly HeaderValue[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) {
    if (typeof h.key !== 'string') continue;
    const v = h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString('utf8') : (h.value ?? '');
    out[h.key.toLowerCase()] = v;
  }
  return out;
}

/** Headers to set, values in `raw_value` as Envoy reads them. */
export function setHeaders(h: Readonly<Record<string, string>>): HeaderValueOption[] {
  return Object.entries(h).map(([key, v]) => ({
    header: { key, raw_value: Buffer.from(v, 'utf8') },
    append_action: 'OVERWRITE_IF_EXISTS_OR_ADD',
  }));
}

/** `{ <namespace>: { <key>: <value> } }` as a Struct (dynamic metadata). */
export function namespacedStruct(namespace: string, key: string, value: string): Struct {
  return { fields: { [namespace]: { structValue: { fields: { [key]: { stringValue: value } } } } } };
}

/**
 * The subset hint Envoy sends in `metadata_context` (`<namespace>` / `x-gateway-destination-endpoint-subset`):
 * undefined when absent, else the set of `ip:port` (possibly empty).
 */
export function readSubset(req: ProcessingRequest, namespace: string, key: string): Set<string> | undefined {
  const ns = req.metadata_context?.filter_metadata?.[namespace];
  const v = ns?.fields?.[key];
  if (v === undefined) return undefined;
  const out = new Set<string>();
  for (const x of v.listValue?.values ?? []) if (typeof x.stringValue === 'string') out.add(x.stringValue);
  if (typeof v.stringValue === 'string')
    for (const s of v.stringValue.split(',')) if (s.trim() !== '') out.add(s.trim());
  return out;
}

/** An ImmediateResponse with OpenAI's error JSON. */
export function immediate(status: number, message: string, code: string): ProcessingResponse {
  const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  return {
    immediate_response: {
      status: { code: status },
      headers: { set_headers: setHeaders({ 'content-type': 'application/json' }) },
      body: Buffer.from(JSON.stringify({ error: { message, type, param: null, code } })),
      details: `kvwire_epp_${code}`,
    },
  };
}

/** Body responses carrying `body` back in chunks of at most 64 KiB (Envoy's recommendation). */
export function streamedBody(
  which: 'request_body' | 'response_body',
  body: Buffer,
  endOfStream: boolean,
): ProcessingResponse[] {
  const out: ProcessingResponse[] = [];
  const step = 64 * 1024;
  if (body.length === 0)
    return [{ [which]: { response: { body_mutation: { streamed_response: { body, end_of_stream: endOfStream } } } } }];
  for (let off = 0; off < body.length; off += step) {
    const last = off + step >= body.length;
    out.push({
      [which]: {
        response: {
          body_mutation: {
            streamed_response: { body: body.subarray(off, off + step), end_of_stream: last && endOfStream },
          },
        },
      },
    });
  }
  return out;
}
