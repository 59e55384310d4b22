/**
 * A gRPC client that plays Envoy's ext_proc filter in FULL_DUPLEX_STREAMED mode against the
 * endpoint picker, over kvwire's protos. Test helper.
 */
import { credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import type { ProcessingRequest, ProcessingResponse, Struct } from '../../lib/scheduler/epp/messages.js';
import { eppServices } from '../../lib/scheduler/epp/protos.js';

export interface Exchange {
  readonly call: ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  /** Sends a message. */
  send(m: ProcessingRequest): void;
  /** The next `n` answers (rejects after `ms`). */
  next(n?: number, ms?: number): Promise<ProcessingResponse[]>;
  /** Half-closes and waits for the server to end the stream. */
  finish(): Promise<void>;
}

type Client = InstanceType<ReturnType<typeof eppServices>['ExternalProcessor']>;

export function envoyClient(address: string): Client {
  const { ExternalProcessor } = eppServices();
  return new ExternalProcessor(address, credentials.createInsecure());
}

export function healthClient(address: string): InstanceType<ReturnType<typeof eppServices>['Health']> {
  const { Health } = eppServices();
  return new Health(address, credentials.createInsecure());
}

export function exchange(client: Client): Exchange {
  const call = (
    client as unknown as { Process(): ClientDuplexStream<ProcessingRequest, ProcessingResponse> }
  ).Process();
  const queue: ProcessingResponse[] = [];
  const waiters: (() => void)[] = [];
  let ended = false;
  let error: Error | undefined;
  call.on('data', (m: ProcessingResponse) => {
    queue.push(m);
    waiters.splice(0).forEach((w) => w());
  });
  call.on('end', () => {
    ended = true;
    waiters.splice(0).forEach((w) => w());
  });
  call.on('error', (e: Error) => {
    error = e;
    waiters.splice(0).forEach((w) => w());
  });
  return {
    call,
    send: (m) => call.write(m),
    async next(n = 1, ms = 15_000) {
      const end = Date.now() + ms;
      while (queue.length < n) {
        if (error !== undefined) throw error;
        if (ended) throw new Error(`the stream ended after ${queue.length} of ${n} answers`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${n} answers (got ${queue.length})`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
      return queue.splice(0, n);
    },
    async finish() {
      call.end();
      while (!ended && error === undefined) await new Promise((r) => setTimeout(r, 10));
    },
  };
}

/** Request headers as Envoy sends them (values in raw_value, pseudo-headers included). */
export function headersMessage(
  h: Record<string, string>,
  endOfStream = false,
  metadata?: Record<string, Struct>,
): ProcessingRequest {
  return {
    request_headers: {
      headers: { headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
      end_of_stream: endOfStream,
    },
    ...(metadata !== undefined ? { metadata_context: { filter_metadata: metadata } } : {}),
  };
}

export function bodyMessage(body: Buffer | string, endOfStream: boolean): ProcessingRequest {
  return { request_body: { body: Buffer.from(body), end_of_stream: endOfStream } };
}

/** The headers an answer sets, as name → value. */
export function setHeadersOf(r: ProcessingResponse | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const m = r?.request_headers?.response.header_mutation ?? r?.response_headers?.response.header_mutation;
  for (const o of m?.set_headers ?? [])
    out[o.header.key!] = Buffer.from(o.header.raw_value ?? '').toString() || (o.header.value ?? '');
  return out;
}

/** The subset hint as Envoy puts it in filter metadata. */
export function subsetMetadata(list: string[]): Record<string, Struct> {
  return {
    'envoy.lb.subset_hint': {
      fields: {
        'x-gateway-destination-endpoint-subset': { listValue: { values: list.map((s) => ({ stringValue: s })) } },
      },
    },
  };
}
