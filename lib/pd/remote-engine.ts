/**
 * A prefill engine as the decode side sees it after a handshake: its layouts, a read plan per
 * decode rank, and the connected peers (one per decode rank × prefill rank it reads from) with
 * their remote regions and lease table. And the cache of those, one per remote engine: a map of
 * promises, so concurrent pulls from a new engine share one handshake; an engine whose peer is
 * lost, or whose transfer failed, is dropped so the next pull handshakes again.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { planTensorParallelReads, type Addressing, type KvLayout, type TensorParallelReadPlan } from '../kv/index.js';
import type { Peer, RemoteRegion } from '../transport/index.js';
import type { KvCacheRank } from './cache.js';
import { prefillLayouts, type HandshakeAnswer } from './handshake.js';
import type { KvTransferParams } from './params.js';
import { LEASE_SLOT_BYTES } from './protocol.js';

/** One connected prefill rank, from one decode rank's agent. */
export interface RemotePeer {
  /** The prefill rank. */
  readonly prefillRank: number;
  /** The connection. */
  readonly peer: Peer;
  /** Its KV regions, in `layouts[prefillRank].regions(addressing)` order. */
  readonly regions: readonly RemoteRegion[];
  /** Its lease table. */
  readonly leaseTable: RemoteRegion;
}

/** What one decode rank reads, and from whom. */
export interface RankLink {
  /** Which prefill ranks and head slices this decode rank reads. */
  readonly plan: TensorParallelReadPlan;
  /** The prefill ranks it reads from, by rank. */
  readonly peers: ReadonlyMap<number, RemotePeer>;
}

/** A handshaken, connected prefill engine. */
export class RemoteEngine {
  /** The prefill engine's id. */
  readonly engineId: string;
  /** Its coordinator instance (changes when it restarts). */
  readonly instance: string;
  /** Cache key: engine id and side channel address. */
  readonly key: string;
  /** The prefill ranks' layouts. */
  readonly layouts: readonly KvLayout[];
  /** How the prefill registered its cache. */
  readonly addressing: Addressing;
  /** Lease table slots. */
  readonly leaseSlots: number;
  /** One per decode rank. */
  readonly links: readonly RankLink[];
  /** Where the lease fence read (and the done notification) goes: decode rank 0's first source. */
  readonly fence: RemotePeer;
  /** How long the handshake and connects took. */
  readonly handshakeMs: number;
  #usable = true;
  readonly #lostHandlers: (() => void)[] = [];

  /** Use {@link connectRemoteEngine}. */
  constructor(key: string, answer: HandshakeAnswer, layouts: KvLayout[], links: RankLink[], handshakeMs: number) {
    this.key = key;
    this.engineId = answer.engineId;
    this.instance = answer.instance;
    this.layouts = layouts;
    this.addressing = answer.cache.addressing;
    this.leaseSlots = answer.leaseTable.slots;
    this.links = links;
    this.fence = links[0]!.peers.get(links[0]!.plan.sources[0]!.prefillRank)!;
    this.handshakeMs = handshakeMs;
    for (const link of links) {
      for (const rp of link.peers.values()) rp.peer.once('lost', () => this.#lose());
    }
  }

  /** False once a peer was lost or the engine was dropped. */
  get usable(): boolean {
    if (!this.#usable) return false;
    for (const link of this.links) {
      for (const rp of link.peers.values()) if (rp.peer.state !== 'connected') return false;
    }
    return true;
  }

  /** Calls `f` once when the engine becomes unusable. */
  onLost(f: () => void): void {
    if (!this.#usable) f();
    else this.#lostHandlers.push(f);
  }

  #lose(): void {
    if (!this.#usable) return;
    this.#usable = false;
    for (const f of this.#lostHandlers.splice(0)) f();
  }

  /** Drops the engine: disconnects its peers (transfers to them fail with `ERR_KVWIRE_CLOSED`). */
  disconnect(): void {
    this.#lose();
    for (const link of this.links) {
      for (const rp of link.peers.values()) rp.peer.disconnect();
    }
  }
}

/** The cache key of the engine `params` point at. */
export function remoteEngineKey(params: KvTransferParams): string {
  return `${params.remote_engine_id}@${params.remote_host}:${params.remote_port}`;
}

function badRegion(where: string, what: string): KvwireError {
  return new KvwireError(
    ErrorCode.BAD_METADATA,
    `prefill ${where} ${what}; its metadata does not match the layout it advertised`,
  );
}

function mapPeer(peer: Peer, prefillRank: number, layout: KvLayout, answer: HandshakeAnswer): RemotePeer {
  const where = `rank ${prefillRank} ('${peer.name}')`;
  const regions = layout.regions(answer.cache.addressing).map((spec) => {
    let r: RemoteRegion;
    try {
      r = peer.region(spec.label);
    } catch {
      throw badRegion(where, `exports no region '${spec.label}'`);
    }
    if (r.length < spec.bytes || (r.access !== 'read' && r.access !== 'readwrite'))
      throw badRegion(where, `exports ${r} with access '${r.access}'`);
    return r;
  });
  let leaseTable: RemoteRegion;
  try {
    leaseTable = peer.region(answer.leaseTable.label);
  } catch {
    throw badRegion(where, `exports no lease table '${answer.leaseTable.label}'`);
  }
  if (leaseTable.length < answer.leaseTable.slots * LEASE_SLOT_BYTES)
    throw badRegion(where, `exports a lease table of ${leaseTable.length} bytes`);
  return { prefillRank, peer, regions, leaseTable };
}

/**
 * Plans the reads of every decode rank against the prefill engine of `answer` and connects each
 * decode rank's agent to the prefill ranks it reads from.
 *
 * @throws KvwireError `ERR_KVWIRE_INCOMPATIBLE` when the TP sizes cannot be combined,
 *   `ERR_KVWIRE_BAD_METADATA` for metadata that does not match the advertised layout, the
 *   agents' connect errors (`ERR_KVWIRE_PEER_UNREACHABLE`, `ERR_KVWIRE_TIMEOUT`, ...).
 */
export async function connectRemoteEngine(
  key: string,
  ranks: readonly KvCacheRank[],
  answer: HandshakeAnswer,
  startedAt: number,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<RemoteEngine> {
  const layouts = prefillLayouts(answer);
  const plans = ranks.map((r) => planTensorParallelReads(r.layout, layouts));
  const wanted: { decodeRank: number; prefillRank: number }[] = [];
  plans.forEach((plan, decodeRank) => {
    for (const p of new Set(plan.sources.map((s) => s.prefillRank))) wanted.push({ decodeRank, prefillRank: p });
  });
  const settled = await Promise.allSettled(
    wanted.map(({ decodeRank, prefillRank }) =>
      ranks[decodeRank]!.agent.connect(Buffer.from(answer.ranks[prefillRank]!.metadata, 'base64'), {
        timeoutMs: options.timeoutMs,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      }),
    ),
  );
  const peers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  try {
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const links: RankLink[] = plans.map((plan) => ({ plan, peers: new Map<number, RemotePeer>() }));
    wanted.forEach(({ decodeRank, prefillRank }, i) => {
      const peer = (settled[i] as PromiseFulfilledResult<Peer>).value;
      (links[decodeRank]!.peers as Map<number, RemotePeer>).set(
        prefillRank,
        mapPeer(peer, prefillRank, layouts[prefillRank]!, answer),
      );
    });
    return new RemoteEngine(key, answer, layouts, links, performance.now() - startedAt);
  } catch (e) {
    for (const p of peers) p.disconnect();
    throw e;
  }
}

interface CacheEntry {
  promise: Promise<RemoteEngine>;
  engine: RemoteEngine | undefined;
}

/** Remote engines by key: one handshake per engine, shared by concurrent pulls, redone after a loss. */
export class RemoteEngineCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #connect: (params: KvTransferParams, key: string) => Promise<RemoteEngine>;

  /** @param connect - handshakes and connects (called once per key until invalidated). */
  constructor(connect: (params: KvTransferParams, key: string) => Promise<RemoteEngine>) {
    this.#connect = connect;
  }

  /** Engines cached (connected or connecting). */
  get size(): number {
    return this.#entries.size;
  }

  /** The engine `params` point at: cached, or handshaken now. */
  get(params: KvTransferParams): Promise<RemoteEngine> {
    const key = remoteEngineKey(params);
    const e = this.#entries.get(key);
    if (e !== undefined && (e.engine === undefined || e.engine.usable)) return e.promise;
    if (e?.engine !== undefined) this.invalidate(e.engine);
    const entry: CacheEntry = { promise: this.#connect(params, key), engine: undefined };
    this.#entries.set(key, entry);
    entry.promise.then(
      (engine) => {
        if (this.#entries.get(key) !== entry) {
          engine.disconnect(); // invalidated (or cleared) while connecting
          return;
        }
        entry.engine = engine;
        engine.onLost(() => this.invalidate(engine));
      },
      () => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      },
    );
    return entry.promise;
  }

  /** Drops `engine` (if still cached) and disconnects it; the next pull handshakes again. */
  invalidate(engine: RemoteEngine): void {
    const e = this.#entries.get(engine.key);
    if (e !== undefined && e.engine === engine) this.#entries.delete(engine.key);
    engine.disconnect();
  }

  /** Drops every engine. */
  clear(): void {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const e of entries) e.engine?.disconnect();
  }
}
