/**
 * The decode side of lease heartbeats (see `heartbeat.ts`): keeps the prefill leases of pending
 * pulls alive.
 *
 * Pulls (and engines, for requests still waiting in their queue) `track` the `kv_transfer_params`
 * they will read; every `intervalMs` the keeper sends one signed heartbeat per prefill side
 * channel naming every lease tracked there (split over several when there are many), at most one
 * in flight per prefill. A heartbeat that fails (prefill unreachable, refused, timed out) is
 * counted and retried at the next interval: the lease survives a few lost heartbeats. When an
 * answer says a lease is not held any more, the keeper tells whoever tracks it (`onLost`), so a
 * pull gives up before reading blocks that are gone.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { signRequest, verifyResponse } from './handshake-auth.js';
import {
  MAX_HEARTBEAT_BODY_BYTES,
  MAX_HEARTBEAT_LEASES,
  buildHeartbeat,
  heartbeatLeaseJson,
  parseHeartbeatAnswer,
  type HeartbeatLease,
} from './heartbeat.js';
import type { KvTransferParams } from './params.js';
import { HEARTBEAT_PATH } from './protocol.js';
import { postHandshake } from './side-channel-client.js';

/** How one heartbeat went, as the `result` label of `kvwire_pd_lease_heartbeats_sent_total` spells it. */
export type HeartbeatResult = 'ok' | 'unauthorized' | 'unreachable' | 'timeout' | 'refused' | 'bad_answer';

/** Event `'heartbeat'` of the decode coordinator: one heartbeat sent to a prefill. */
export interface HeartbeatSentEvent {
  /** The prefill engine (`remote_engine_id`). */
  readonly prefill: string;
  /** Its side channel, `host:port`. */
  readonly sideChannel: string;
  /** How it went. */
  readonly result: HeartbeatResult;
  /** Leases named. */
  readonly leases: number;
  /** Leases the answer says are not held any more (their pulls are given up). */
  readonly lost: number;
  /** The error, when it failed. */
  readonly error?: KvwireError;
}

/** Options of {@link LeaseKeeper}. */
export interface LeaseKeeperOptions {
  /** This decode engine's id. */
  readonly engineId: string;
  /** The shared secret's bytes. */
  readonly key: Buffer;
  /** Interval between heartbeats to one prefill. */
  readonly intervalMs: number;
  /** Called after every heartbeat. */
  readonly onResult: (e: HeartbeatSentEvent) => void;
  /** Called when the number of tracked leases changes. */
  readonly onTracked?: (n: number) => void;
}

interface Tracked {
  readonly lease: HeartbeatLease;
  readonly onLost: ((e: KvwireError) => void) | undefined;
}

interface Target {
  readonly prefill: string;
  readonly host: string;
  readonly port: number;
  readonly tracked: Map<number, Tracked>;
  busy: boolean;
}

function leaseKey(l: HeartbeatLease): string {
  return `${l.token}:${l.requestId}`;
}

/** Keeps the prefill leases of pending pulls alive with heartbeats. */
export class LeaseKeeper {
  readonly #o: LeaseKeeperOptions;
  readonly #targets = new Map<string, Target>();
  readonly #closing = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #next = 0;
  #count = 0;

  /** @param options - see {@link LeaseKeeperOptions}. */
  constructor(options: LeaseKeeperOptions) {
    this.#o = options;
  }

  /** Leases tracked now. */
  get tracked(): number {
    return this.#count;
  }

  /**
   * Keeps the lease of `params` alive until the returned function is called (idempotent).
   * `onLost` is called (at most once) when a heartbeat's answer says the prefill no longer holds it.
   */
  track(params: KvTransferParams, onLost?: (e: KvwireError) => void): () => void {
    if (this.#closing.signal.aborted) return () => {};
    const key = `${params.remote_engine_id}@${params.remote_host}:${params.remote_port}`;
    let t = this.#targets.get(key);
    if (t === undefined) {
      t = {
        prefill: params.remote_engine_id,
        host: params.remote_host,
        port: params.remote_port,
        tracked: new Map(),
        busy: false,
      };
      this.#targets.set(key, t);
    }
    const id = this.#next++;
    t.tracked.set(id, {
      lease: { requestId: params.remote_request_id, token: params.remote_lease_token },
      onLost,
    });
    this.#counted(1);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#tick(), this.#o.intervalMs);
      this.#timer.unref(); // heartbeats alone must not keep a process alive
    }
    const target = t;
    return () => {
      if (target.tracked.delete(id)) this.#counted(-1);
    };
  }

  #counted(d: number): void {
    this.#count += d;
    this.#o.onTracked?.(this.#count);
  }

  #tick(): void {
    for (const [key, t] of this.#targets) {
      if (t.tracked.size === 0 && !t.busy) {
        this.#targets.delete(key);
        continue;
      }
      if (t.busy || t.tracked.size === 0) continue;
      t.busy = true;
      void this.#beat(t).finally(() => {
        t.busy = false;
      });
    }
    if (this.#targets.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Sends the heartbeats of one prefill: every distinct lease tracked there, in as few requests as fit. */
  async #beat(t: Target): Promise<void> {
    const distinct = new Map<string, HeartbeatLease>();
    for (const e of t.tracked.values()) distinct.set(leaseKey(e.lease), e.lease);
    let chunk: HeartbeatLease[] = [];
    let bytes = 0;
    const chunks: HeartbeatLease[][] = [chunk];
    for (const l of distinct.values()) {
      const n = Buffer.byteLength(heartbeatLeaseJson(l)) + 1;
      if (chunk.length > 0 && (bytes + n > MAX_HEARTBEAT_BODY_BYTES || chunk.length === MAX_HEARTBEAT_LEASES)) {
        chunk = [];
        bytes = 0;
        chunks.push(chunk);
      }
      chunk.push(l);
      bytes += n;
    }
    for (const c of chunks) {
      if (this.#closing.signal.aborted) return;
      await this.#send(t, c);
    }
  }

  async #send(t: Target, leases: HeartbeatLease[]): Promise<void> {
    const sideChannel = `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
    const report = (result: HeartbeatResult, lost: number, error?: KvwireError) =>
      this.#o.onResult({
        prefill: t.prefill,
        sideChannel,
        result,
        leases: leases.length,
        lost,
        ...(error === undefined ? {} : { error }),
      });
    const { body, nonce } = buildHeartbeat(this.#o.engineId, t.prefill, leases);
    let expiresInMs: readonly (number | null)[];
    try {
      const reply = await postHandshake({
        host: t.host,
        port: t.port,
        path: HEARTBEAT_PATH,
        what: 'lease heartbeat',
        body,
        signature: signRequest(this.#o.key, body, 'heartbeat'),
        // A heartbeat that takes longer than the interval is as good as lost; the next one retries.
        timeoutMs: Math.max(1000, this.#o.intervalMs),
        signal: this.#closing.signal,
      });
      if (reply.status === 401) {
        report(
          'unauthorized',
          0,
          new KvwireError(
            ErrorCode.UNAUTHORIZED,
            `the prefill side channel at ${sideChannel} refused a lease heartbeat (401): the shared secret differs, or the clocks differ by more than the allowed skew`,
          ),
        );
        return;
      }
      if (reply.status !== 200) {
        report(
          'refused',
          0,
          new KvwireError(
            ErrorCode.PEER_UNREACHABLE,
            `the prefill side channel at ${sideChannel} answered a lease heartbeat with HTTP ${reply.status}${reply.status === 404 ? ' (a kvwire prefill without heartbeats: its leases only last their base duration)' : ''}`,
            { engineStatus: String(reply.status) },
          ),
        );
        return;
      }
      if (!verifyResponse(this.#o.key, nonce, reply.body, reply.signature, 'heartbeat')) {
        report(
          'unauthorized',
          0,
          new KvwireError(
            ErrorCode.UNAUTHORIZED,
            `the heartbeat answer from ${sideChannel} is not signed with the shared secret for this request; it is ignored`,
          ),
        );
        return;
      }
      expiresInMs = parseHeartbeatAnswer(reply.body, leases.length).expiresInMs;
    } catch (e) {
      const err =
        e instanceof KvwireError
          ? e
          : new KvwireError(ErrorCode.TRANSPORT, `lease heartbeat to ${sideChannel}: ${String(e)}`);
      if (err.code === ErrorCode.CANCELLED) return; // closing
      const result: HeartbeatResult =
        err.code === ErrorCode.TIMEOUT
          ? 'timeout'
          : err.code === ErrorCode.BAD_METADATA
            ? 'bad_answer'
            : err.code === ErrorCode.PEER_UNREACHABLE
              ? 'unreachable'
              : 'refused';
      report(result, 0, err);
      return;
    }
    const gone = new Set<string>();
    for (let i = 0; i < leases.length; i++) if (expiresInMs[i] === null) gone.add(leaseKey(leases[i]!));
    let lost = 0;
    if (gone.size > 0) {
      for (const [id, e] of t.tracked) {
        if (!gone.has(leaseKey(e.lease))) continue;
        t.tracked.delete(id);
        this.#counted(-1);
        lost++;
        e.onLost?.(
          new KvwireError(
            ErrorCode.LEASE_EXPIRED,
            `prefill '${t.prefill}' no longer holds the blocks of request '${e.lease.requestId}' (a lease heartbeat found the lease ended there: it expired, was cancelled, or the prefill restarted); prefill the request again`,
            { field: 'remote_request_id' },
          ),
        );
      }
    }
    report('ok', lost);
  }

  /** Stops every heartbeat (one in flight is aborted). Idempotent. */
  close(): void {
    this.#closing.abort();
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const t of this.#targets.values()) t.tracked.clear();
    this.#targets.clear();
    if (this.#count !== 0) this.#counted(-this.#count);
  }
}
