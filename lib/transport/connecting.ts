/**
 * Connecting to a peer, from its metadata to a usable {@link Peer}: the metadata's checks, the
 * handshake (the target's grant decides what the metadata may name), and the connects in progress.
 *
 * A connect's deadline is the engine's (it fails the connect with `ERR_KVWIRE_PEER_UNREACHABLE`);
 * the backstop here settles it only if the engine could not (lib/transport/deadline.ts).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { AuthKey } from './auth.js';
import { forcedCudaPathProblem } from './cuda-options.js';
import { CONNECT_BACKSTOP_GRACE_MS, armDeadline } from './deadline.js';
import type { Engine, EngineConnection } from './engine.js';
import { checkGrant, decodeGrant } from './grant.js';
import type { KeepAlive } from './keep-alive.js';
import { decodeMetadata, verifyMetadata } from './metadata.js';
import type { AgentDescription } from './metadata.js';
import type { Peer } from './peer.js';
import type { CudaPath, EngineKind } from './types.js';

/**
 * Checks metadata before any of it reaches the transport: the signature first, over the raw bytes
 * (metadata that is not this deployment's is refused before it is parsed), then its content.
 */
export function checkPeerMetadata(
  metadata: Uint8Array,
  keys: readonly AuthKey[],
  engine: EngineKind,
): AgentDescription {
  verifyMetadata(metadata, keys);
  const d = decodeMetadata(metadata);
  if (d.engine !== engine) {
    throw new KvwireError(
      ErrorCode.BAD_METADATA,
      `bad metadata: it comes from a '${d.engine}' agent but this agent uses the '${engine}' engine; both sides must use the same engine`,
    );
  }
  return d;
}

/** Refuses a forced `cudaPath` that the peer `d` describes cannot use (UCX engine only). */
export function checkForcedCudaPath(engine: EngineKind, cudaPath: 'auto' | CudaPath, d: AgentDescription): void {
  const problem = engine === 'ucx' ? forcedCudaPathProblem(cudaPath, d) : undefined;
  if (problem !== undefined) throw new KvwireError(ErrorCode.UNSUPPORTED, problem);
}

/** True when the transports string lets UCX use shared memory. */
function allowsSharedMemory(tls: string): boolean {
  const parts = tls.split(',').map((s) => s.trim());
  if (parts.some((p) => p.startsWith('^'))) return !parts.some((p) => /\^?(sm|shm|posix|sysv|cma)$/.test(p));
  return parts.some((p) => ['all', 'sm', 'shm', 'posix', 'sysv', 'cma', 'knem', 'xpmem'].includes(p));
}

/**
 * The warning for a same-host peer reached over tcp although shared memory was allowed (a slow
 * path nobody asked for: usually the two processes cannot share memory), or undefined.
 */
export function transportFallbackWarning(
  peer: Peer,
  conn: EngineConnection,
  engine: EngineKind,
  transports: string,
): string | undefined {
  if (conn.transport !== 'tcp' || !peer.sameHost || engine !== 'ucx' || !allowsSharedMemory(transports)) {
    return undefined;
  }
  return (
    `kvwire: peer '${peer.name}' is on this host but is reached over tcp (${conn.lanes}), not shared memory ` +
    `(transports: ${transports}); check that both processes can share memory (same IPC namespace, /dev/shm), or set transports to 'tcp' to silence this`
  );
}

interface PendingConnect {
  /** The metadata's description; after the handshake, with the regions the grant confirmed. */
  d: AgentDescription;
  /** Regions of the metadata the target deregistered since (they are marked revoked). */
  revoked: readonly number[];
  resolve: (p: Peer) => void;
  reject: (e: KvwireError) => void;
  /** Disarms the deadline and the abort listener, and releases the process. */
  cleanup: () => void;
}

/** Makes the Peer of a finished connect (the agent registers it). */
export type PeerFactory = (
  peerId: number,
  d: AgentDescription,
  revoked: readonly number[],
  conn: EngineConnection,
) => Peer;

/** The connects of one agent in progress, by peer id. @internal */
export class PendingConnects {
  readonly #engine: Pick<Engine, 'connect' | 'attach' | 'disconnect'>;
  readonly #keepAlive: KeepAlive;
  readonly #protocol: 'auto' | 'rma' | 'am';
  readonly #closed: () => boolean;
  readonly #makePeer: PeerFactory;
  readonly #pending = new Map<number, PendingConnect>();

  constructor(
    engine: Pick<Engine, 'connect' | 'attach' | 'disconnect'>,
    keepAlive: KeepAlive,
    protocol: 'auto' | 'rma' | 'am',
    closed: () => boolean,
    makePeer: PeerFactory,
  ) {
    this.#engine = engine;
    this.#keepAlive = keepAlive;
    this.#protocol = protocol;
    this.#closed = closed;
    this.#makePeer = makePeer;
  }

  /** Starts connecting to `d` as peer `peerId`; resolves once the peer answered the handshake. */
  start(peerId: number, d: AgentDescription, timeoutMs: number, signal: AbortSignal | undefined): Promise<Peer> {
    return new Promise<Peer>((resolve, reject) => {
      const fail = (e: KvwireError) => {
        if (this.#pending.get(peerId) !== entry) return;
        this.#pending.delete(peerId);
        entry.cleanup();
        if (!this.#closed()) this.#engine.disconnect(peerId);
        reject(e);
      };
      const disarm = armDeadline({
        afterMs: timeoutMs + CONNECT_BACKSTOP_GRACE_MS,
        onTimeout: () =>
          fail(new KvwireError(ErrorCode.PEER_UNREACHABLE, `no answer from '${d.name}' within ${timeoutMs} ms`)),
        signal,
        onAbort: () => fail(new KvwireError(ErrorCode.CANCELLED, 'connect was aborted')),
        holdsProcess: false,
      });
      const entry: PendingConnect = {
        d,
        revoked: [],
        resolve,
        reject: fail,
        cleanup: () => {
          disarm();
          this.#keepAlive.adjust(-1);
        },
      };
      this.#pending.set(peerId, entry);
      this.#keepAlive.adjust(1);
      try {
        this.#engine.connect(peerId, d, timeoutMs);
      } catch (e) {
        fail(e instanceof KvwireError ? e : KvwireError.fromCode(ErrorCode.TRANSPORT, String(e)));
      }
    });
  }

  /**
   * The target answered the handshake with its grant: its own region table decides what the
   * metadata may name (forged or stale metadata fails here), and carries whatever one-sided access
   * it granted. Then the engine attaches the checked regions.
   */
  handshaked(peerId: number, grantBytes: Uint8Array, oneSided: boolean): void {
    const entry = this.#pending.get(peerId);
    if (entry === undefined) {
      if (!this.#closed()) this.#engine.disconnect(peerId); // gave up already
      return;
    }
    try {
      const checked = checkGrant(entry.d, decodeGrant(grantBytes, entry.d.name));
      if (this.#protocol === 'rma' && !oneSided) {
        throw new KvwireError(
          ErrorCode.UNSUPPORTED,
          `protocol 'rma' was asked for, but '${entry.d.name}' does not grant this agent one-sided access ` +
            "(a target grants it only to same-host peers of the same user over shared memory, and only with directAccess 'same-host'); " +
            "use protocol 'auto' or 'am'",
        );
      }
      entry.d = { ...entry.d, regions: checked.regions };
      entry.revoked = checked.revoked;
      this.#engine.attach(peerId, entry.d);
    } catch (e) {
      entry.reject(e instanceof KvwireError ? e : KvwireError.fromCode(ErrorCode.TRANSPORT, String(e)));
    }
  }

  /** The connection is usable, or connecting failed: the connect's promise settles. */
  connected(peerId: number, error: KvwireError | undefined, conn: EngineConnection | undefined): void {
    const entry = this.#pending.get(peerId);
    if (entry === undefined) {
      if (error === undefined && !this.#closed()) this.#engine.disconnect(peerId); // gave up already
      return;
    }
    if (error !== undefined || conn === undefined) {
      entry.reject(error ?? new KvwireError(ErrorCode.PEER_UNREACHABLE, 'connect failed'));
      return;
    }
    this.#pending.delete(peerId);
    entry.cleanup();
    entry.resolve(this.#makePeer(peerId, entry.d, entry.revoked, conn));
  }

  /** Fails every connect in progress (the agent is closing). */
  rejectAll(error: KvwireError): void {
    for (const c of [...this.#pending.values()]) c.reject(error);
  }
}
