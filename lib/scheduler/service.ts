/**
 * {@link SchedulingService}: what both front ends (the HTTP router and the Envoy endpoint picker)
 * run: the KV block index, the endpoints with their health and load, the engines' KV events (ZMQ),
 * the prompt tokenizer and the decision, wired together. A front end hands it a request body and
 * gets a decision.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { KvIndex, type KvIndexOptions } from '../kv-index/kv-index.js';
import { KvEventsSubscriber } from '../kv-index/zmq-subscriber.js';
import { defaultRegistry, type MetricsRegistry } from '../metrics.js';
import { checkEndpoints, type EndpointInput, type EndpointSpec } from './endpoint.js';
import { loadEndpointsFile, watchEndpointsFile, type EndpointsFileWatch } from './endpoints-file.js';
import { healthyFilter } from './filters/healthy.js';
import { servesModelFilter } from './filters/serves-model.js';
import { EndpointPool, type EndpointPoolOptions } from './pool.js';
import { parseInferenceBody, type InferenceRequest } from './request.js';
import { Scheduler, type Decision, type SchedulerOptions } from './scheduler.js';
import { PromptTokenizer } from './tokenizer.js';
import { loadOf, type Candidate } from './types.js';

/** Options of {@link SchedulingService.create}. */
export interface SchedulingServiceOptions {
  /** The endpoints (from flags). Either this or `endpointsFile`. */
  readonly endpoints?: readonly EndpointInput[];
  /** A JSON or YAML endpoints file, reloaded when it changes. */
  readonly endpointsFile?: string;
  /** An index to use (the caller closes it), or options to create one. Default: in memory. */
  readonly index?: KvIndex | KvIndexOptions;
  /** Health checks and load scraping. */
  readonly pool?: EndpointPoolOptions;
  /** Weights, P/D threshold, shedding. */
  readonly scheduler?: Omit<SchedulerOptions, 'index' | 'endpoints' | 'registry'>;
  /** Subscribe to the decode endpoints' ZMQ KV events. Default true. */
  readonly kvEvents?: boolean;
  /** Deadline of a replay request, in ms. Default 2,000. */
  readonly replayTimeoutMs?: number;
  /** Deadline of a `/tokenize` call, in ms. Default 2,000. */
  readonly tokenizeTimeoutMs?: number;
  /** Metrics registry. Default prom-client's global registry. */
  readonly registry?: MetricsRegistry;
  /** Where reload and subscription problems are reported. Default `console.error`. */
  readonly log?: (line: string) => void;
}

/** A request and where it goes. */
export interface Placement {
  /** What was read from the body. */
  readonly request: InferenceRequest;
  /** The decision. */
  readonly decision: Decision;
}

/** See the module documentation. */
export class SchedulingService {
  private watch: EndpointsFileWatch | undefined;
  private closed = false;

  private constructor(
    /** The KV block index. */
    readonly index: KvIndex,
    private readonly ownsIndex: boolean,
    /** The endpoints and their state. */
    readonly pool: EndpointPool,
    /** The decision. */
    readonly scheduler: Scheduler,
    /** Prompt tokens from the engines. */
    readonly tokenizer: PromptTokenizer,
    /** The engines' KV events, when subscribed. */
    readonly kvEvents: KvEventsSubscriber | undefined,
    /** The metrics registry. */
    readonly registry: MetricsRegistry,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Creates the index (unless given), the pool and the scheduler, subscribes to KV events, starts
   * health checks and scraping, and watches the endpoints file.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on bad endpoints or options;
   *   `ERR_KVWIRE_BACKEND_UNAVAILABLE` when a Redis index cannot be reached.
   */
  static async create(options: SchedulingServiceOptions): Promise<SchedulingService> {
    if ((options.endpoints === undefined) === (options.endpointsFile === undefined)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        'give the endpoints either as a list (--decode/--prefill) or as a file (--endpoints), not both and not neither',
        { field: 'endpoints' },
      );
    }
    const specs =
      options.endpointsFile !== undefined
        ? loadEndpointsFile(options.endpointsFile)
        : checkEndpoints(options.endpoints!);
    const registry = options.registry ?? defaultRegistry();
    const log = options.log ?? ((l: string) => console.error(l));
    const given = options.index instanceof KvIndex;
    const index = given
      ? (options.index as KvIndex)
      : await KvIndex.create({ registry, ...((options.index as KvIndexOptions | undefined) ?? {}) });
    try {
      const pool = new EndpointPool(specs, options.pool);
      const scheduler = new Scheduler({ ...(options.scheduler ?? {}), index, endpoints: pool, registry });
      const tokenizer = new PromptTokenizer({
        ...(options.tokenizeTimeoutMs !== undefined ? { timeoutMs: options.tokenizeTimeoutMs } : {}),
        onResult: (r) => scheduler.metrics.tokenize.inc({ result: r }),
      });
      const kvEvents =
        options.kvEvents === false
          ? undefined
          : new KvEventsSubscriber(index, {
              registry,
              ...(options.replayTimeoutMs !== undefined ? { replayTimeoutMs: options.replayTimeoutMs } : {}),
            });
      const svc = new SchedulingService(index, !given, pool, scheduler, tokenizer, kvEvents, registry, log);
      svc.wire(specs);
      if (options.endpointsFile !== undefined) {
        svc.watch = watchEndpointsFile(
          options.endpointsFile,
          (next) => {
            const { added, removed } = pool.setEndpoints(next);
            log(`endpoints file reloaded: ${next.length} endpoints (${added.length} added, ${removed.length} removed)`);
          },
          (e) => log(`endpoints file ignored, the endpoints in use stay: ${e.message}`),
        );
      }
      pool.start();
      return svc;
    } catch (e) {
      if (!given) await index.close();
      throw e;
    }
  }

  private wire(initial: readonly EndpointSpec[]): void {
    const { pool, scheduler } = this;
    const subscribe = (s: EndpointSpec): void => {
      if (this.kvEvents === undefined || s.role !== 'decode' || s.kvEvents === undefined) return;
      try {
        this.kvEvents.add({
          worker: s.name,
          pod: s.pod,
          endpoint: s.kvEvents,
          ...(s.kvReplay !== undefined ? { replay: s.kvReplay } : {}),
        });
      } catch (e) {
        this.log(`KV events of ${s.name}: ${(e as Error).message}`);
      }
    };
    // A topic naming another pod drops every message of that stream: say so once per endpoint, with
    // the pod the engine uses (the usual cause: the endpoint's pod not given, so it defaults to its name).
    const misnamed = new Set<string>();
    this.kvEvents?.on('batch', (worker, _seq, outcome) => {
      if (outcome !== 'unknown_pod' || misnamed.has(worker)) return;
      misnamed.add(worker);
      this.log(
        `KV events of ${worker} are dropped: ${this.kvEvents?.stats(worker)?.lastError ?? 'their topic names another pod'}; give the endpoint the engine's pod name (--pod, or pod: in the endpoints file)`,
      );
    });
    for (const s of initial) {
      subscribe(s);
      scheduler.metrics.healthy.set({ endpoint: s.name, role: s.role }, 1);
    }
    pool.on('health', (name, healthy, why) => {
      const s = pool.get(name);
      if (s !== undefined) scheduler.metrics.healthy.set({ endpoint: name, role: s.role }, healthy ? 1 : 0);
      this.log(`${name} ${healthy ? 'is back' : 'ejected'}: ${why}`);
    });
    pool.on('endpoints', (added, removed) => {
      void (async () => {
        for (const s of removed) {
          scheduler.metrics.healthy.remove({ endpoint: s.name, role: s.role });
          const stays = pool.get(s.name) !== undefined; // changed, not removed: keep its blocks
          await this.kvEvents?.remove(s.name, false);
          if (!stays && s.role === 'decode')
            await this.index
              .removeWorker(s.name)
              .catch((e: unknown) => this.log(`forgetting ${s.name}: ${(e as Error).message}`));
        }
        for (const s of added) {
          subscribe(s);
          scheduler.metrics.healthy.set({ endpoint: s.name, role: s.role }, 1);
        }
      })();
    });
  }

  /** Healthy decode endpoints serving `model` (all of them when `model` is undefined), least loaded first. */
  decodeCandidates(model?: string): Candidate[] {
    const all = healthyFilter(this.pool.candidates('decode'));
    return (model === undefined ? all : servesModelFilter(all, model)).sort((a, b) => loadOf(a) - loadOf(b));
  }

  /**
   * Reads a request body, tokenizes its prompt with an engine's tokenizer, and decides.
   *
   * @param headers - request headers, lower-case names.
   * @throws KvwireError with `details.status` (400 no or bad prompt, 404 unknown model, 429 shedding, 503 nothing healthy).
   */
  async place(
    path: string,
    body: Buffer,
    headers: Readonly<Record<string, string | undefined>>,
    extra: { subset?: ReadonlySet<string>; exclude?: ReadonlySet<string> } = {},
  ): Promise<Placement> {
    if (this.closed) throw new KvwireError(ErrorCode.CLOSED, 'the scheduler is closed', { status: 503 });
    const request = parseInferenceBody(path, body);
    let tokens: Uint32Array | undefined;
    let tokensError: string | undefined;
    try {
      tokens = await this.tokenizer.tokenize(
        this.decodeCandidates(request.model).map((c) => c.spec.url),
        request.model,
        request.input,
      );
    } catch (e) {
      tokensError = (e as Error).message;
    }
    const decision = await this.scheduler.schedule({
      model: request.model,
      ...(tokens !== undefined ? { tokens } : {}),
      ...(tokensError !== undefined ? { tokensError } : {}),
      headers,
      ...extra,
    });
    return { request, decision };
  }

  /** Stops everything it started (and closes the index it created). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch?.close();
    this.pool.close();
    await this.kvEvents?.close();
    if (this.ownsIndex) await this.index.close();
  }
}
