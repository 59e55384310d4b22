/**
 * A tensor-parallel rank's registered KV cache: the agent, the layout, and the regions holding
 * the layout's tensors (or its arena). Both coordinators take one per rank they drive.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { KvLayout, type Addressing } from '../kv/index.js';
import { Agent, type Access, type HostMemory, type Region } from '../transport/index.js';
import { formatCount } from '../util/format.js';

/** One rank's registered KV cache. */
export interface KvCacheRank {
  /** The agent that registered the cache (one per GPU or process). */
  readonly agent: Agent;
  /** The rank's layout; `layout.tp.rank` is this rank. */
  readonly layout: KvLayout;
  /** The registered regions, in `layout.regions(addressing)` order, labelled as the layout labels them. */
  readonly regions: readonly Region[];
  /** One region per tensor (`'tensor'`) or one arena (`'arena'`). */
  readonly addressing: Addressing;
}

/** Options of {@link registerKvCache}. */
export interface RegisterKvCacheOptions {
  /** `'tensor'` (default) or `'arena'`. */
  readonly addressing?: Addressing;
  /** Remote access: `'read'` on a prefill (decode reads it), `'none'` (default) on a decode. */
  readonly access?: Access;
  /** The memory to register, one buffer per region; when omitted, the engine allocates it (`agent.allocate`: shared memory same-host peers map; contents unspecified until written). */
  readonly memory?: readonly HostMemory[];
}

/**
 * Registers a KV cache for `layout` with `agent`: one region per tensor, or one arena, labelled
 * as the layout labels them (peers find them by label).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `memory` has the wrong number of
 *   buffers or one is smaller than its region; the agent's own errors otherwise.
 */
export function registerKvCache(agent: Agent, layout: KvLayout, options: RegisterKvCacheOptions = {}): KvCacheRank {
  if (!(agent instanceof Agent)) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `agent must be an Agent, not ${describeValue(agent)}`, {
      field: 'agent',
    });
  }
  if (!(layout instanceof KvLayout)) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `layout must be a KvLayout, not ${describeValue(layout)}`, {
      field: 'layout',
    });
  }
  if (options === null || typeof options !== 'object') {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `options must be an object, not ${describeValue(options)}`, {
      field: 'options',
    });
  }
  const addressing = options.addressing ?? 'tensor';
  const specs = layout.regions(addressing);
  const memory = options.memory;
  if (memory !== undefined && memory.length !== specs.length) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `memory has ${memory.length} buffers but the layout has ${specs.length} regions under '${addressing}' addressing`,
      { field: 'memory' },
    );
  }
  const regions: Region[] = [];
  try {
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i]!;
      const m = memory?.[i];
      if (m === undefined) {
        // No memory given: let the engine allocate it (shared memory that same-host peers map).
        regions.push(agent.allocate(spec.bytes, { access: options.access ?? 'none', label: spec.label }));
        continue;
      }
      if (m.byteLength < spec.bytes) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `memory[${i}] has ${formatCount(m.byteLength)} bytes but ${spec.label} needs ${formatCount(spec.bytes)}`,
          { field: 'memory', index: i },
        );
      }
      regions.push(agent.register(m, { access: options.access ?? 'none', label: spec.label }));
    }
  } catch (e) {
    for (const r of regions) r.deregister();
    throw e;
  }
  return Object.freeze({ agent, layout, regions: Object.freeze(regions), addressing });
}

/**
 * Checks that every rank's agent authenticates its peers (`AgentOptions.auth` or `KVWIRE_SECRET`):
 * a coordinator moves KV blocks only between agents of the deployment, unless the caller says
 * otherwise (`unauthenticatedAgents: true`: tests, or one host where every process is trusted).
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the first rank whose agent does not.
 */
export function checkRankAuth(ranks: readonly KvCacheRank[], allowUnauthenticated: unknown): void {
  if (allowUnauthenticated !== undefined && typeof allowUnauthenticated !== 'boolean') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `unauthenticatedAgents must be true or false, not ${describeValue(allowUnauthenticated)}`,
      { field: 'unauthenticatedAgents' },
    );
  }
  if (allowUnauthenticated === true) return;
  const r = ranks.findIndex((x) => !x.agent.authenticates);
  if (r >= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `ranks[${r}]'s agent does not authenticate its peers, so any process that reaches it could read or write its KV cache; ` +
        'create it with Agent.create({ auth: { secret } }) (the secret of the coordinator, or the KVWIRE_SECRET environment variable), ' +
        'or pass unauthenticatedAgents: true where every process that can reach it is trusted',
      { field: 'ranks', index: r },
    );
  }
}

/**
 * Checks that `ranks` are the ranks of one TP group in rank order, each with regions that match
 * its layout, registered with its agent, with `access` allowing what peers must do.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the rank and what is wrong.
 */
export function validateRanks(ranks: readonly KvCacheRank[], needRemoteRead: boolean): void {
  if (!Array.isArray(ranks) || ranks.length === 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'ranks must be a non-empty array of KvCacheRank, one per TP rank in rank order (see registerKvCache)',
      { field: 'ranks' },
    );
  }
  const first = ranks[0]!;
  for (let r = 0; r < ranks.length; r++) {
    const rank = ranks[r]!;
    const where = `ranks[${r}]`;
    if (
      rank === null ||
      typeof rank !== 'object' ||
      !(rank.agent instanceof Agent) ||
      !(rank.layout instanceof KvLayout)
    ) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${where} must be { agent, layout, regions, addressing } (see registerKvCache)`,
        { field: 'ranks', index: r },
      );
    }
    const { layout } = rank;
    if (layout.tp.size !== ranks.length || layout.tp.rank !== r) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${where} has the layout of rank ${layout.tp.rank} of ${layout.tp.size}, but ${ranks.length} rank(s) were given; pass one KvCacheRank per TP rank, in rank order`,
        { field: 'ranks', index: r },
      );
    }
    if (layout.numBlocks !== first.layout.numBlocks || rank.addressing !== first.addressing) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${where} differs from ranks[0] in block count or addressing; all ranks of an engine share one block table`,
        { field: 'ranks', index: r },
      );
    }
    if (rank.agent.closed) throw new KvwireError(ErrorCode.CLOSED, `${where}'s agent is closed`);
    const specs = layout.regions(rank.addressing);
    if (!Array.isArray(rank.regions) || rank.regions.length !== specs.length) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${where} has ${String(rank.regions?.length)} regions but its layout needs ${specs.length} under '${rank.addressing}' addressing`,
        { field: 'regions', index: r },
      );
    }
    for (let i = 0; i < specs.length; i++) {
      const region = rank.regions[i]!;
      const spec = specs[i]!;
      if (region.owner !== rank.agent || !region.registered) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${where}.regions[${i}] is not registered with ${where}'s agent`,
          { field: 'regions', index: i },
        );
      }
      if (region.length < spec.bytes) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${where}.regions[${i}] (${region}) is smaller than ${spec.label} (${formatCount(spec.bytes)} bytes)`,
          { field: 'regions', index: i },
        );
      }
      if (
        needRemoteRead &&
        (region.label !== spec.label || (region.access !== 'read' && region.access !== 'readwrite'))
      ) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${where}.regions[${i}] must be labelled '${spec.label}' and registered with access 'read' so decode workers can read it (it is ${region} with access '${region.access}')`,
          { field: 'regions', index: i },
        );
      }
    }
  }
}
