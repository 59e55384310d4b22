/**
 * One HTTP request to a worker (a "leg"), with the deadline and cancellation every leg has.
 *
 * @packageDocumentation
 */
import http, { type ServerResponse } from 'node:http';
import https from 'node:https';

/** Where a leg goes. */
export interface LegEndpoint {
  /** `http:` or `https:`. */
  readonly protocol: 'http:' | 'https:';
  /** What to connect to: for prefill targets, the IP address that passed the allowlist check. */
  readonly connectHost: string;
  /** TCP port. */
  readonly port: number;
  /** The `Host` header (the name the client or config used, with port). */
  readonly hostHeader: string;
  /** TLS server name for SNI and the certificate check (names only; IPs are checked as IPs). */
  readonly servername: string | undefined;
  /** Connection pool. */
  readonly agent: http.Agent;
}

/**
 * Starts a request; the caller writes the body, listens for 'response' and 'error', and destroys
 * the request to cancel it (deadline passed, client gone).
 */
export function startLeg(
  endpoint: LegEndpoint,
  method: string,
  path: string,
  headers: http.OutgoingHttpHeaders,
): http.ClientRequest {
  const options: https.RequestOptions = {
    host: endpoint.connectHost,
    port: endpoint.port,
    method,
    path,
    headers: { ...headers, host: endpoint.hostHeader },
    agent: endpoint.agent,
  };
  if (endpoint.protocol === 'https:' && endpoint.servername !== undefined) options.servername = endpoint.servername;
  return endpoint.protocol === 'https:' ? https.request(options) : http.request(options);
}

/**
 * The client side of an exchange: tells the legs when the client went away, so they cancel their
 * worker requests (a worker must not keep computing for nobody).
 *
 * Plain callbacks rather than an AbortController per request and per leg: on the hot path those
 * (signal, listeners, the http client's own abort wiring) cost more than the rest of the
 * sidecar's bookkeeping.
 */
export class ClientLink {
  /** True once the client closed its connection before its answer was complete. */
  gone = false;
  private readonly handlers: (() => void)[] = [];

  constructor(res: ServerResponse) {
    res.once('close', () => {
      if (res.writableFinished) return;
      this.gone = true;
      for (const h of this.handlers.splice(0)) h();
    });
  }

  /** Calls `handler` when the client goes away (at once if it has); returns the undo. */
  onGone(handler: () => void): () => void {
    if (this.gone) {
      handler();
      return () => {};
    }
    this.handlers.push(handler);
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }
}

/** A leg's deadline: calls `expire` once `ms` pass without {@link Deadline.refresh}. */
export class Deadline {
  /** True once the deadline passed. */
  expired = false;
  private readonly timer: NodeJS.Timeout;
  private disposed = false;

  constructor(
    /** The deadline in ms. */
    readonly ms: number,
    expire: () => void,
  ) {
    this.timer = setTimeout(() => {
      this.expired = true;
      expire();
    }, ms);
  }

  /** Pushes the deadline `ms` from now (progress on a stream). */
  refresh(): void {
    if (!this.disposed && !this.expired) this.timer.refresh();
  }

  /** Stops the timer. */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
