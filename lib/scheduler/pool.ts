/**
 * {@link EndpointPool}: the endpoints and what the scheduler knows about each, kept current.
 *
 * - **Health**: every `healthIntervalMs` a `GET /health` (through the sidecar for a decode endpoint
 *   that has one, so a dead sidecar ejects its worker too), with a deadline. `ejectAfter`
 *   consecutive failures eject an endpoint; `restoreAfter` consecutive successes bring it back. A
 *   connection the router could not make counts as a failure at once ({@link EndpointPool.failed}).
 * - **Load**: every `scrapeIntervalMs` a `GET /metrics` from the engine (vLLM's names); a sample is
 *   used while younger than `staleMs`. Load can also be reported ({@link EndpointPool.report}).
 * - **In flight**: requests this scheduler sent and that have not finished ({@link EndpointPool.begin}).
 *
 * Endpoints can be replaced at any time ({@link EndpointPool.setEndpoints}, e.g. when the endpoints
 * file changes); the state of endpoints that stay is kept.
 *
 * @packageDocumentation
 */
import { lookup } from 'node:dns/promises';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { destinationUrl, type EndpointSpec } from './endpoint.js';
import { scrapeLoad } from './load-scrape.js';
import type { Candidate, LoadSample } from './types.js';

/** Options of {@link EndpointPool}. */
export interface EndpointPoolOptions {
  /** Between health checks of an endpoint, in ms. Default 2,000. 0 turns health checks off. */
  readonly healthIntervalMs?: number;
  /** Deadline of one health check, in ms. Default 1,000. */
  readonly healthTimeoutMs?: number;
  /** Consecutive failed checks that eject an endpoint. Default 2. */
  readonly ejectAfter?: number;
  /** Consecutive good checks that bring an ejected endpoint back. Default 1. */
  readonly restoreAfter?: number;
  /** Between `/metrics` scrapes of an engine, in ms. Default 1,000. 0 turns scraping off. */
  readonly scrapeIntervalMs?: number;
  /** Deadline of one scrape, in ms. Default 1,000. */
  readonly scrapeTimeoutMs?: number;
  /** A load sample older than this is not used, in ms. Default 5,000. */
  readonly staleMs?: number;
}

/** What the pool says when things change. */
export interface EndpointPoolEvents {
  /** An endpoint was ejected (`healthy` false) or brought back. */
  health: [name: string, healthy: boolean, why: string];
  /** The endpoint set changed. */
  endpoints: [added: EndpointSpec[], removed: EndpointSpec[]];
}

interface State {
  spec: EndpointSpec;
  healthy: boolean;
  fails: number;
  oks: number;
  load: LoadSample | undefined;
  inflight: number;
  checking: boolean;
  scraping: boolean;
  nextCheck: number;
  nextScrape: number;
  lastError: string | undefined;
  address: string | undefined;
}

function ms(v: unknown, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > 3_600_000) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${name} is ${describeValue(v)}: give a whole number from ${min} to 3,600,000`,
      { field: name },
    );
  }
  return v;
}

/** `ip:port` of a base URL's host (IPv6 in brackets), resolving a name (its first IPv4 address, else its first). */
async function resolveAddress(base: string): Promise<string> {
  const u = new URL(base);
  const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  let ip = host;
  if (isIP(host) === 0) {
    const all = await lookup(host, { all: true });
    ip = (all.find((a) => a.family === 4) ?? all[0]!).address;
  }
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function sameSpec(a: EndpointSpec, b: EndpointSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** See the module documentation. */
export class EndpointPool extends EventEmitter<EndpointPoolEvents> {
  private readonly states = new Map<string, State>();
  private readonly o: Required<EndpointPoolOptions>;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param specs - the endpoints (checked: see `checkEndpoints`).
   * @param options - intervals, deadlines and thresholds.
   */
  constructor(specs: readonly EndpointSpec[], options: EndpointPoolOptions = {}) {
    super();
    this.o = {
      healthIntervalMs: ms(options.healthIntervalMs, 'healthIntervalMs', 2_000, 0),
      healthTimeoutMs: ms(options.healthTimeoutMs, 'healthTimeoutMs', 1_000, 1),
      ejectAfter: ms(options.ejectAfter, 'ejectAfter', 2, 1),
      restoreAfter: ms(options.restoreAfter, 'restoreAfter', 1, 1),
      scrapeIntervalMs: ms(options.scrapeIntervalMs, 'scrapeIntervalMs', 1_000, 0),
      scrapeTimeoutMs: ms(options.scrapeTimeoutMs, 'scrapeTimeoutMs', 1_000, 1),
      staleMs: ms(options.staleMs, 'staleMs', 5_000, 1),
    };
    this.setEndpoints(specs);
  }

  /** Starts the health and scrape loops (a first round at once). */
  start(): void {
    if (this.timer !== undefined || this.closed) return;
    const tick = Math.max(50, Math.min(this.o.healthIntervalMs || Infinity, this.o.scrapeIntervalMs || Infinity, 500));
    this.timer = setInterval(() => this.tick(), tick);
    this.timer.unref();
    this.tick();
  }

  /** The endpoints now. */
  get specs(): EndpointSpec[] {
    return [...this.states.values()].map((s) => s.spec);
  }

  /** One endpoint by name. */
  get(name: string): EndpointSpec | undefined {
    return this.states.get(name)?.spec;
  }

  /**
   * Replaces the endpoint set. Endpoints whose spec is unchanged keep their state; changed ones
   * start afresh (healthy until checked). Emits `endpoints` with what was added and removed.
   */
  setEndpoints(specs: readonly EndpointSpec[]): { added: EndpointSpec[]; removed: EndpointSpec[] } {
    const next = new Map(specs.map((s) => [s.name, s]));
    const added: EndpointSpec[] = [];
    const removed: EndpointSpec[] = [];
    for (const [name, st] of this.states) {
      const n = next.get(name);
      if (n === undefined || !sameSpec(n, st.spec)) {
        removed.push(st.spec);
        this.states.delete(name);
      }
    }
    for (const spec of specs) {
      if (this.states.has(spec.name)) continue;
      added.push(spec);
      this.states.set(spec.name, {
        spec,
        healthy: true,
        fails: 0,
        oks: 0,
        load: undefined,
        inflight: 0,
        checking: false,
        scraping: false,
        nextCheck: 0,
        nextScrape: 0,
        lastError: undefined,
        address: undefined,
      });
    }
    if (added.length > 0 || removed.length > 0) this.emit('endpoints', added, removed);
    return { added, removed };
  }

  /** Every endpoint of `role` with its state now (stale load samples left out). */
  candidates(role: 'decode' | 'prefill'): Candidate[] {
    const now = Date.now();
    const out: Candidate[] = [];
    for (const s of this.states.values()) {
      if (s.spec.role !== role) continue;
      out.push({
        spec: s.spec,
        healthy: s.healthy,
        load: s.load !== undefined && now - s.load.at <= this.o.staleMs ? s.load : undefined,
        inflight: s.inflight,
        ...(s.address !== undefined ? { address: s.address } : {}),
      });
    }
    return out;
  }

  /** Whether `name` is serving (not ejected); undefined for an unknown name. */
  healthy(name: string): boolean | undefined {
    return this.states.get(name)?.healthy;
  }

  /** The last health or scrape error of `name`. */
  lastError(name: string): string | undefined {
    return this.states.get(name)?.lastError;
  }

  /**
   * Records a load sample reported for `name` (instead of, or between, scrapes).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for an unknown endpoint or bad numbers.
   */
  report(name: string, load: { waiting?: number; running?: number; kvUsage?: number }): void {
    const s = this.states.get(name);
    if (s === undefined)
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `no endpoint named ${describeValue(name)}: report load for a configured endpoint`,
        { field: 'name' },
      );
    const n = (v: unknown, f: string, max: number): number => {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max)
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${f} is ${describeValue(v)}: give a number from 0 to ${max}`,
          { field: f },
        );
      return v;
    };
    s.load = {
      waiting: n(load.waiting ?? 0, 'waiting', 1e9),
      running: n(load.running ?? 0, 'running', 1e9),
      ...(load.kvUsage !== undefined ? { kvUsage: n(load.kvUsage, 'kvUsage', 1) } : {}),
      at: Date.now(),
      source: 'reported',
    };
  }

  /** Counts a request sent to `name`; call the returned function once when it finishes. */
  begin(name: string): () => void {
    const s = this.states.get(name);
    if (s === undefined) return () => {};
    s.inflight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      s.inflight--;
    };
  }

  /** A request could not connect to `name`: count it as a failed health check now. */
  failed(name: string, why: string): void {
    const s = this.states.get(name);
    if (s !== undefined) this.checked(s, false, why);
  }

  /** Stops the loops. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const now = Date.now();
    for (const s of this.states.values()) {
      if (this.o.healthIntervalMs > 0 && !s.checking && now >= s.nextCheck) {
        s.checking = true;
        s.nextCheck = now + this.o.healthIntervalMs;
        void this.check(s);
      }
      if (this.o.scrapeIntervalMs > 0 && !s.scraping && now >= s.nextScrape) {
        s.scraping = true;
        s.nextScrape = now + this.o.scrapeIntervalMs;
        void this.scrape(s);
      }
    }
  }

  private async check(s: State): Promise<void> {
    const base = s.spec.role === 'decode' ? destinationUrl(s.spec) : s.spec.url;
    const url = `${base}/health`;
    try {
      s.address = await resolveAddress(base);
      const res = await fetch(url, { signal: AbortSignal.timeout(this.o.healthTimeoutMs) });
      await res.arrayBuffer();
      this.checked(s, res.status === 200, res.status === 200 ? 'ok' : `GET ${url} answered ${res.status}`);
    } catch (e) {
      this.checked(s, false, `GET ${url} failed: ${(e as Error).message}`);
    } finally {
      s.checking = false;
    }
  }

  private checked(s: State, ok: boolean, why: string): void {
    if (this.states.get(s.spec.name) !== s) return; // replaced meanwhile
    if (ok) {
      s.fails = 0;
      s.oks++;
      if (!s.healthy && s.oks >= this.o.restoreAfter) {
        s.healthy = true;
        this.emit('health', s.spec.name, true, why);
      }
    } else {
      s.oks = 0;
      s.fails++;
      s.lastError = why;
      if (s.healthy && s.fails >= this.o.ejectAfter) {
        s.healthy = false;
        this.emit('health', s.spec.name, false, why);
      }
    }
  }

  private async scrape(s: State): Promise<void> {
    try {
      const sample = await scrapeLoad(s.spec.url, this.o.scrapeTimeoutMs);
      if (
        this.states.get(s.spec.name) === s &&
        (s.load === undefined || s.load.source === 'scraped' || sample.at >= s.load.at)
      )
        s.load = sample;
    } catch (e) {
      s.lastError = (e as Error).message;
    } finally {
      s.scraping = false;
    }
  }
}
