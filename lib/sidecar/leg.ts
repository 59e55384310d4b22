/**
 * One HTTP request to a worker (a "leg"), with the deadline and cancellation every leg has.
 *
 * @packageDocumentation
 */
import http from 'node:http';
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

/** Starts a request; the caller writes the body and listens for 'response' and 'error'. */
export function startLeg(
  endpoint: LegEndpoint,
  method: string,
  path: string,
  headers: http.OutgoingHttpHeaders,
  signal: AbortSignal,
): http.ClientRequest {
  const options: https.RequestOptions = {
    host: endpoint.connectHost,
    port: endpoint.port,
    method,
    path,
    headers: { ...headers, host: endpoint.hostHeader },
    agent: endpoint.agent,
    signal,
  };
  if (endpoint.protocol === 'https:' && endpoint.servername !== undefined) options.servername = endpoint.servername;
  return endpoint.protocol === 'https:' ? https.request(options) : http.request(options);
}

/**
 * An AbortController for one leg that aborts when the client goes away (`parent`) or when the
 * deadline passes; `timedOut` tells the two apart. `dispose()` clears the timer and the listener.
 */
export class LegDeadline {
  /** Aborts the leg's requests. */
  readonly controller = new AbortController();
  /** True once the deadline (not the client) aborted the leg. */
  timedOut = false;
  private readonly timer: NodeJS.Timeout;
  private disposed = false;
  private readonly onParentAbort = (): void => this.controller.abort(this.parent.reason);

  constructor(
    private readonly parent: AbortSignal,
    /** The deadline in ms. */
    readonly ms: number,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new Error(`deadline of ${ms} ms passed`));
    }, ms);
    if (parent.aborted) this.controller.abort(parent.reason);
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  /** The leg's signal. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Pushes the deadline `ms` from now (progress on a stream). */
  refresh(): void {
    if (!this.disposed && !this.controller.signal.aborted) this.timer.refresh();
  }

  /** Stops the timer and detaches from the parent signal. */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
    this.parent.removeEventListener('abort', this.onParentAbort);
  }
}
