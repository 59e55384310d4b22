/**
 * The Redis backend: the same index shared by many router replicas (see {@link INDEX_SCRIPT} for
 * the data layout). Client: ioredis 5, loaded only when this backend is chosen.
 *
 * **Redis Cluster** (`backend: 'redis-cluster'`, `nodes`; ioredis's Cluster client): a script may
 * only touch keys of one slot, so every key of an index carries the hash tag of its prefix (default
 * `{kvwire}:`; a prefix without `{...}` is refused) and each call names one of them (`P meta`) so
 * the client routes it to the master that owns the slot. One index lives on one master (its
 * replicas take over on failure); indexes with different prefixes spread over the masters.
 *
 * Every call has a deadline (`commandTimeoutMs`); a Redis that cannot be reached or stops answering
 * turns into `ERR_KVWIRE_BACKEND_UNAVAILABLE`, never a hang. Commands are not queued while
 * disconnected (they fail at once) and the client reconnects in the background.
 *
 * @packageDocumentation
 */
import type { Cluster, Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import type { BlockKeyList } from './hash.js';
import { INDEX_SCRIPT, LAYOUT_VERSION } from './redis-script.js';
import {
  TIER_BIT,
  tiersOf,
  type ApplyOutcome,
  type BackendLimits,
  type BackendStats,
  type Holder,
  type IndexBackend,
  type IndexOp,
  type PrefixRun,
} from './types.js';

/** How to reach Redis. */
export interface RedisBackendOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS). Default `redis://127.0.0.1:6379`. */
  readonly url?: string;
  /** Redis Cluster: some of its nodes (`redis://host:port` or `host:port`); the client finds the rest. */
  readonly nodes?: readonly string[];
  /**
   * Prefix of every Redis key; indexes with different prefixes are independent. Default `kvwire:`
   * (`{kvwire}:` on a cluster, where the prefix must hold a hash tag `{...}`).
   */
  readonly prefix?: string;
  /** Deadline to connect, in ms. Default 2,000. */
  readonly connectTimeoutMs?: number;
  /** Deadline of each command, in ms. Default 2,000. */
  readonly commandTimeoutMs?: number;
}

/** Settings of the index that every replica sharing a prefix must agree on. */
export interface SharedSettings extends BackendLimits {
  /** Tokens per block. */
  readonly blockSize: number;
  /** Hash seed, as a decimal string. */
  readonly hashSeed: string;
}

const COMPACT_CHUNK = 1000;

/** Where a URL points, with any password hidden, for error messages. */
function redacted(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** See the module documentation. */
export class RedisBackend implements IndexBackend {
  /** Always `'redis'`. */
  readonly kind: 'redis' | 'redis-cluster';
  private sha = '';
  private closed = false;

  private constructor(
    private readonly client: Redis | Cluster,
    private readonly url: string,
    private readonly prefix: string,
    private readonly limits: BackendLimits,
    cluster: boolean,
  ) {
    this.kind = cluster ? 'redis-cluster' : 'redis';
    // A cluster routes a script by its first key: name one key of the index's slot.
    this.keys = cluster ? [1, `${prefix}meta`] : [0];
  }

  private readonly keys: (string | number)[];

  /**
   * Connects, loads the script and checks that an index already under this prefix was made with
   * the same settings.
   *
   * @param cluster - Redis Cluster (`options.nodes`) rather than one server (`options.url`).
   * @throws KvwireError `ERR_KVWIRE_BACKEND_UNAVAILABLE` when Redis cannot be reached in time;
   *   `ERR_KVWIRE_INCOMPATIBLE` when the prefix holds an index with other settings;
   *   `ERR_KVWIRE_INVALID_ARGUMENT` on a cluster prefix without a hash tag or no nodes.
   */
  static async connect(
    options: RedisBackendOptions,
    cluster: boolean,
    settings: SharedSettings,
  ): Promise<RedisBackend> {
    const connectTimeout = options.connectTimeoutMs ?? 2_000;
    const commandTimeout = options.commandTimeoutMs ?? 2_000;
    const prefix = options.prefix ?? (cluster ? '{kvwire}:' : 'kvwire:');
    const ioredis = await import('ioredis');
    let lastError: unknown;
    let connecting = true;
    // No retries while connecting (an unreachable Redis is reported at once); afterwards,
    // reconnect in the background with a capped back-off.
    const retryStrategy = (times: number): number | null => (connecting ? null : Math.min(times * 100, 2_000));
    let client: Redis | Cluster;
    let url: string;
    if (cluster) {
      if (!/\{[^{}]+\}/.test(prefix)) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `redis.prefix '${prefix}' has no hash tag: on Redis Cluster every key of an index must share one slot; use a prefix like '{kvwire}:'`,
          { field: 'redis.prefix' },
        );
      }
      const nodes = options.nodes ?? [];
      if (nodes.length === 0) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          'redis.nodes is empty: name at least one node of the cluster, e.g. redis://10.0.0.5:7000',
          { field: 'redis.nodes' },
        );
      }
      url = nodes.join(',');
      const startup = nodes.map((n) => {
        const u = new URL(n.includes('://') ? n : `redis://${n}`);
        return { host: u.hostname, port: Number(u.port || 6379) };
      });
      const first = new URL(nodes[0]!.includes('://') ? nodes[0]! : `redis://${nodes[0]!}`);
      client = new ioredis.Cluster(startup, {
        lazyConnect: true,
        enableOfflineQueue: false,
        clusterRetryStrategy: retryStrategy,
        slotsRefreshTimeout: connectTimeout,
        redisOptions: {
          connectTimeout,
          commandTimeout,
          maxRetriesPerRequest: 0,
          ...(first.username !== '' ? { username: decodeURIComponent(first.username) } : {}),
          ...(first.password !== '' ? { password: decodeURIComponent(first.password) } : {}),
          ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
        },
      });
    } else {
      url = options.url ?? 'redis://127.0.0.1:6379';
      client = new ioredis.Redis(url, {
        lazyConnect: true,
        connectTimeout,
        commandTimeout,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy,
      });
    }
    client.on('error', (e: unknown) => {
      lastError = e;
    });
    const backend = new RedisBackend(client, url, prefix, settings, cluster);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no connection after ${connectTimeout} ms`)), connectTimeout);
        }),
      ]);
      connecting = false;
      // On a cluster the script is loaded on the slot's master by EVAL at the first NOSCRIPT.
      if (!cluster) backend.sha = String(await (client as Redis).script('LOAD', INDEX_SCRIPT));
      else backend.sha = createHash('sha1').update(INDEX_SCRIPT).digest('hex');
    } catch (e) {
      client.disconnect();
      throw new KvwireError(
        ErrorCode.BACKEND_UNAVAILABLE,
        `could not connect to Redis${cluster ? ' Cluster' : ''} at ${redacted(url)} (${describeError(lastError ?? e)}): start redis-server there, fix the ${cluster ? 'nodes' : 'url'}, or use backend: 'memory'`,
        { engineStatus: describeError(lastError ?? e) },
        { cause: e },
      );
    } finally {
      clearTimeout(timer);
    }
    const fields = [
      'version',
      LAYOUT_VERSION,
      'blockSize',
      String(settings.blockSize),
      'hashSeed',
      settings.hashSeed,
      'maxKeys',
      String(settings.maxKeys),
      'maxWorkersPerKey',
      String(settings.maxWorkersPerKey),
    ];
    // Whatever goes wrong from here on, the connection must not outlive the failed create.
    const clash = (await backend.call('init', fields, 'check the index settings').catch(async (e: unknown) => {
      await backend.close();
      throw e;
    })) as string[];
    if (clash.length > 0) {
      await backend.close();
      throw new KvwireError(
        ErrorCode.INCOMPATIBLE,
        `Redis prefix '${backend.prefix}' at ${redacted(url)} holds an index with ${clash[0]} ${clash[1]}, this one has ${clash[2]}: every replica sharing a prefix must use the same settings; use another prefix or the same ${clash[0]}`,
        { field: clash[0] },
      );
    }
    return backend;
  }

  /** Runs one command of the script; a missing script (Redis restarted) is loaded again. */
  private async call(cmd: string, args: readonly (string | number)[], what: string): Promise<unknown> {
    if (this.closed) throw new KvwireError(ErrorCode.CLOSED, `the index is closed: cannot ${what}`);
    try {
      try {
        return await (this.client.evalsha as (...a: unknown[]) => Promise<unknown>).call(
          this.client,
          this.sha,
          ...this.keys,
          cmd,
          this.prefix,
          ...args,
        );
      } catch (e) {
        if (!String((e as Error)?.message).startsWith('NOSCRIPT')) throw e;
        // Redis restarted, or (cluster) this slot's master has not seen the script: EVAL loads it there.
        return await (this.client.eval as (...a: unknown[]) => Promise<unknown>).call(
          this.client,
          INDEX_SCRIPT,
          ...this.keys,
          cmd,
          this.prefix,
          ...args,
        );
      }
    } catch (e) {
      if (e instanceof KvwireError) throw e;
      throw new KvwireError(
        ErrorCode.BACKEND_UNAVAILABLE,
        `Redis at ${redacted(this.url)} failed to ${what}: ${describeError(e)}. Check that redis-server is up and reachable (the client reconnects by itself), or use backend: 'memory'`,
        { engineStatus: describeError(e) },
        { cause: e },
      );
    }
  }

  async apply(worker: string, seq: number | undefined, force: boolean, ops: readonly IndexOp[]): Promise<ApplyOutcome> {
    const args: (string | number)[] = [
      worker,
      seq === undefined ? '' : seq,
      force ? '1' : '0',
      this.limits.maxKeys,
      this.limits.maxWorkersPerKey,
      ops.length,
    ];
    for (const op of ops) {
      if (op.type === 'cleared') {
        args.push('cleared', 0, 0);
      } else {
        const bits = op.type === 'stored' ? TIER_BIT[op.tier] : op.tier === undefined ? 3 : TIER_BIT[op.tier];
        args.push(op.type, bits, op.keys.length);
        for (const k of op.keys.hex) args.push(k);
      }
    }
    const r = (await this.call('apply', args, `apply events of worker '${worker}'`)) as [
      string,
      string,
      number,
      number,
      number,
    ];
    return {
      status: r[0] as ApplyOutcome['status'],
      lastSeq: r[1] === '' ? undefined : Number(r[1]),
      evictedKeys: Number(r[2]),
      evictedHolders: Number(r[3]),
      keys: Number(r[4]),
    };
  }

  async removeWorker(worker: string): Promise<void> {
    await this.call('removeWorker', [worker], `remove worker '${worker}'`);
  }

  async acquire(worker: string, keys: BlockKeyList): Promise<void> {
    await this.call('acquire', [worker, ...keys.hex], 'pin blocks');
  }

  async release(worker: string, keys: BlockKeyList): Promise<void> {
    await this.call('release', [worker, ...keys.hex], 'unpin blocks');
  }

  async prefixRuns(keys: BlockKeyList, workers: ReadonlySet<string> | undefined): Promise<PrefixRun[]> {
    const filter = workers === undefined ? [-1] : [workers.size, ...workers];
    const r = (await this.call('prefixRuns', [...filter, ...keys.hex], 'score a prompt')) as (string | number)[];
    const out: PrefixRun[] = [];
    for (let i = 0; i < r.length; i += 3)
      out.push({ worker: String(r[i]), gpu: Number(r[i + 1]), cpu: Number(r[i + 2]) });
    return out;
  }

  async holders(key: string): Promise<Holder[]> {
    const r = (await this.call('holders', [key], 'read the holders of a block')) as (string | number)[];
    const out: Holder[] = [];
    for (let i = 0; i < r.length; i += 2) out.push({ worker: String(r[i]), tiers: tiersOf(Number(r[i + 1])) });
    return out;
  }

  async stats(): Promise<BackendStats> {
    const r = (await this.call('stats', [], 'read the index size')) as number[];
    return { keys: Number(r[0]), workers: Number(r[1]), pinnedKeys: Number(r[2]) };
  }

  /** Sweeps in chunks of 1,000 keys, one script call each, so Redis is never blocked for long. */
  async compact(): Promise<number> {
    let deleted = 0,
      start = 0;
    for (;;) {
      const r = (await this.call('compact', [start, COMPACT_CHUNK], 'compact the index')) as number[];
      deleted += Number(r[0]);
      start = Number(r[1]);
      if (Number(r[2]) === 1) return deleted;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.quit(),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 1_000);
        }),
      ]);
    } catch {
      // Already disconnected: nothing to say goodbye to.
    } finally {
      clearTimeout(timer);
      this.client.disconnect();
    }
  }
}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code !== undefined && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}
