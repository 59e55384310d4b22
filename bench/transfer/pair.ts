/**
 * A connected initiator/target pair over one transport: the target (a child process for UCX,
 * in-process for loopback) registers its regions with access 'readwrite' and fills them with the
 * pattern; the initiator creates its agent, registers its own regions, connects, and finds the
 * target's regions by label.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { Agent } from '../../lib/transport/agent.js';
import type { Peer } from '../../lib/transport/peer.js';
import type { Region, RemoteRegion } from '../../lib/transport/region.js';
import type { AgentOptions } from '../../lib/transport/types.js';
import { ChildTargetLink, InProcessTargetLink } from './link.js';
import type { TargetLink } from './link.js';
import { BytePattern } from './pattern.js';
import { ucxTlsOf } from './plan.js';
import type { TransportJson } from './schema.js';
import { freeRegions } from './memory.js';
import type { BenchAgentExtras } from './memory.js';
import { benchRegion } from './target.js';
import type { TargetRegionSpec } from './target.js';

/** A connected pair. */
export interface BenchPair {
  readonly agent: Agent;
  readonly peer: Peer;
  readonly target: TargetLink;
  /** The initiator's regions, in the order given. */
  readonly local: readonly Region[];
  /** The target's regions, in the order given. */
  readonly remote: readonly RemoteRegion[];
  /** What the run learned about the transport. */
  readonly info: TransportJson;
  /** Closes both agents and ends the target process. Idempotent; never throws. */
  close(): Promise<void>;
}

/** Agent options for a transport name under an engine (`extra`: how device memory moves, engine tuning). */
export function agentOptions(
  engine: 'ucx' | 'loopback',
  transport: string,
  name: string,
  extra: BenchAgentExtras = {},
): AgentOptions {
  const auth = { secret: RUN_SECRET };
  return engine === 'loopback'
    ? { engine: 'loopback', name, auth }
    : { engine: 'ucx', transports: ucxTlsOf(transport), name, auth, ...extra };
}

/**
 * The secret the agents of one bench run authenticate each other with (the run starts all of them,
 * so it makes its own: KVWIRE_SECRET when set, else random). It reaches the target process over
 * the IPC channel with the agent options, never in argv.
 */
const RUN_SECRET = process.env.KVWIRE_SECRET || randomBytes(32).toString('hex');

/**
 * Starts a target, registers `remote` there and `local` here, and connects. On failure every
 * process and agent it started is closed again before the error propagates.
 */
export async function openPair(
  engine: 'ucx' | 'loopback',
  transport: string,
  remote: readonly TargetRegionSpec[],
  local: readonly TargetRegionSpec[],
  pattern: BytePattern,
  extra: BenchAgentExtras = {},
): Promise<BenchPair> {
  const target: TargetLink = engine === 'loopback' ? new InProcessTargetLink() : new ChildTargetLink();
  let agent: Agent | undefined;
  const regions: Region[] = [];
  try {
    const ready = await target.init(agentOptions(engine, transport, `kvwire-bench-target-${transport}`, extra), remote);
    agent = await Agent.create(agentOptions(engine, transport, `kvwire-bench-initiator-${transport}`, extra));
    for (const spec of local) regions.push(benchRegion(agent, spec, 'none', pattern));
    const peer = await agent.connect(ready.metadata, { timeoutMs: 15_000 });
    const remoteRegions = remote.map((r) => peer.region(r.label));
    const a = agent;
    let closed = false;
    return {
      agent: a,
      peer,
      target,
      local: regions,
      remote: remoteRegions,
      info: {
        name: transport,
        ucxTls: engine === 'loopback' ? null : ucxTlsOf(transport),
        category: peer.transport,
        lanes: peer.lanes,
        protocol: peer.protocol,
        cudaPath:
          local.some((s) => s.memory === 'cuda') || remote.some((s) => s.memory === 'cuda') ? peer.cudaPath : null,
        targetPid: ready.pid,
        regionBytes: remote.reduce((s, r) => s + r.bytes, 0),
        status: 'ok',
        error: null,
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await a.close().catch(() => {});
        await freeRegions(regions).catch(() => {});
        await target.close().catch(() => {});
      },
    };
  } catch (e) {
    await agent?.close().catch(() => {});
    await freeRegions(regions).catch(() => {});
    await target.close().catch(() => {});
    throw e;
  }
}

/** A transport entry for a pair that could not be opened. */
export function failedTransport(
  engine: 'ucx' | 'loopback',
  transport: string,
  regionBytes: number,
  error: string,
): TransportJson {
  return {
    name: transport,
    ucxTls: engine === 'loopback' ? null : ucxTlsOf(transport),
    category: null,
    lanes: null,
    protocol: null,
    cudaPath: null,
    targetPid: null,
    regionBytes,
    status: 'failed',
    error,
  };
}
