/**
 * The target side of the bench: an agent that registers regions (access 'readwrite'), fills them
 * with the deterministic pattern, hands out its metadata, and on request poisons and verifies
 * ranges of its memory (for `--check` of WRITEs) and reports its own CPU time (for `--idle`).
 *
 * The same {@link BenchTarget} serves two ways: in a child process (`target-process.ts`, over the
 * IPC channel: the production shape, two processes) and in-process for the loopback engine, whose
 * agents reach only agents of the same process.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { Agent } from '../../lib/transport/agent.js';
import type { Region } from '../../lib/transport/region.js';
import type { AgentOptions } from '../../lib/transport/types.js';
import { createRegion, freeRegions, poisonIn, verifyIn } from './memory.js';
import type { BenchMemory } from './memory.js';
import { BytePattern } from './pattern.js';
import type { Mismatch, VerifyEntries } from './pattern.js';

/** A region the target registers. */
export interface TargetRegionSpec {
  /** Label peers find it by. */
  readonly label: string;
  /** Size in bytes. */
  readonly bytes: number;
  /** Pattern salt it is filled with. */
  readonly salt: number;
  /** 'allocate' (default): memory the engine allocates (`agent.allocate`); 'register': a Buffer; 'cuda': device memory. */
  readonly memory?: BenchMemory;
}

/** Creates one bench region of `spec` with `agent`, filled with its pattern. */
export function benchRegion(
  agent: Agent,
  spec: TargetRegionSpec,
  access: 'readwrite' | 'none',
  pattern: BytePattern,
): Region {
  return createRegion(agent, spec.memory ?? 'allocate', spec.bytes, spec.label, access, pattern, spec.salt);
}

/** Requests the initiator sends the target. Every request carries an `id` its reply echoes. */
export type TargetRequest =
  | {
      readonly t: 'init';
      readonly id: number;
      readonly agent: AgentOptions;
      readonly regions: readonly TargetRegionSpec[];
    }
  | { readonly t: 'poison'; readonly id: number; readonly entries: VerifyEntries }
  | { readonly t: 'verify'; readonly id: number; readonly entries: VerifyEntries; readonly restore: boolean }
  | { readonly t: 'cpu'; readonly id: number }
  | { readonly t: 'close'; readonly id: number };

/** Replies of the target. */
export type TargetReply =
  | {
      readonly t: 'ready';
      readonly id: number;
      readonly metadata: Uint8Array;
      readonly pid: number;
      readonly transports: string;
    }
  | { readonly t: 'done'; readonly id: number }
  | { readonly t: 'verified'; readonly id: number; readonly mismatch: Mismatch | null }
  | {
      readonly t: 'cpu';
      readonly id: number;
      readonly userUs: number;
      readonly systemUs: number;
      readonly wallNs: number;
    }
  | { readonly t: 'error'; readonly id: number; readonly message: string; readonly code: string | null };

/** A target agent and its regions. */
export class BenchTarget {
  #agent: Agent | undefined;
  #regions: Region[] = [];
  #salts: number[] = [];
  readonly #pattern = new BytePattern();

  /** The agent, once initialized (in-process use: tests plant loopback faults through it). */
  get agent(): Agent | undefined {
    return this.#agent;
  }

  /** Answers one request; never throws (failures become `error` replies). */
  async handle(req: TargetRequest): Promise<TargetReply> {
    try {
      return await this.#handle(req);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      return { t: 'error', id: req.id, message: (e as Error).message, code: typeof code === 'string' ? code : null };
    }
  }

  async #handle(req: TargetRequest): Promise<TargetReply> {
    switch (req.t) {
      case 'init': {
        if (this.#agent !== undefined)
          throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'the bench target is initialized already');
        const agent = await Agent.create({ ...req.agent, keepAlive: true });
        this.#agent = agent;
        for (const spec of req.regions) {
          this.#regions.push(benchRegion(agent, spec, 'readwrite', this.#pattern));
          this.#salts.push(spec.salt);
        }
        return { t: 'ready', id: req.id, metadata: agent.metadata(), pid: process.pid, transports: agent.transports };
      }
      case 'poison':
        poisonIn(this.#pattern, this.#live(), req.entries);
        return { t: 'done', id: req.id };
      case 'verify': {
        const m = verifyIn(this.#pattern, this.#live(), req.entries, req.restore ? this.#salts : undefined);
        return { t: 'verified', id: req.id, mismatch: m ?? null };
      }
      case 'cpu': {
        const u = process.cpuUsage();
        return { t: 'cpu', id: req.id, userUs: u.user, systemUs: u.system, wallNs: Number(process.hrtime.bigint()) };
      }
      case 'close':
        await this.close();
        return { t: 'done', id: req.id };
    }
  }

  #live(): Region[] {
    if (this.#agent === undefined)
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'the bench target is not initialized');
    return this.#regions;
  }

  /** Closes the agent and frees its device memory (idempotent). */
  async close(): Promise<void> {
    const agent = this.#agent;
    const regions = this.#regions;
    this.#regions = [];
    if (agent !== undefined && !agent.closed) await agent.close();
    await freeRegions(regions);
  }
}
