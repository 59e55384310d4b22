/**
 * The initiator's line to its target: a forked child process (UCX: two processes, as in
 * production) or an in-process {@link BenchTarget} (loopback). Both answer the same requests.
 *
 * Every request has a deadline; a child that misses one, or exits, fails what is pending with a
 * clear error and is killed. Children run compiled code from `dist/`.
 *
 * @packageDocumentation
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { packageRoot } from '../../lib/native.js';
import type { AgentOptions } from '../../lib/transport/types.js';
import { trackChild } from './children.js';
import type { Mismatch, VerifyEntries } from './pattern.js';
import { BenchTarget } from './target.js';
import type { TargetRegionSpec, TargetReply, TargetRequest } from './target.js';

/** Distributes `Omit` over a union (each request variant without its `id`). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** What the initiator knows of its target once it is ready. */
export interface TargetReady {
  /** The target agent's metadata, to connect to. */
  readonly metadata: Uint8Array;
  /** The target's process id (the initiator's own for an in-process target). */
  readonly pid: number;
  /** The transports the target agent may use (UCX_TLS syntax). */
  readonly transports: string;
}

/** A target, wherever it runs. */
export abstract class TargetLink {
  #next = 1;

  /** Process id of the target. */
  abstract readonly pid: number;

  /** True for an in-process target. */
  abstract readonly inProcess: boolean;

  /** Sends one request; resolves with its reply. */
  protected abstract send(req: TargetRequest, timeoutMs: number): Promise<TargetReply>;

  /** Ends the target (gracefully when it can) and frees everything. Idempotent. */
  abstract close(): Promise<void>;

  async #call(req: WithoutId<TargetRequest>, timeoutMs: number): Promise<TargetReply> {
    const reply = await this.send({ ...req, id: this.#next++ } as TargetRequest, timeoutMs);
    if (reply.t === 'error')
      throw KvwireError.fromCode(reply.code ?? ErrorCode.TRANSPORT, `the bench target failed: ${reply.message}`);
    return reply;
  }

  /** Creates the target agent and its regions (filled with the pattern). */
  async init(agent: AgentOptions, regions: readonly TargetRegionSpec[]): Promise<TargetReady> {
    const bytes = regions.reduce((s, r) => s + r.bytes, 0);
    const r = await this.#call({ t: 'init', agent, regions }, 30_000 + bytes / 50_000); // fill at >= 50 MB/s
    if (r.t !== 'ready') throw new KvwireError(ErrorCode.TRANSPORT, `the bench target answered init with '${r.t}'`);
    return { metadata: r.metadata, pid: r.pid, transports: r.transports };
  }

  /** Poisons the destination ranges of a WRITE about to be checked. */
  async poison(entries: VerifyEntries): Promise<void> {
    await this.#call({ t: 'poison', entries }, 30_000 + entries.length * 10);
  }

  /** Verifies (and with `restore`, refills) the ranges a WRITE wrote; resolves with the first mismatch. */
  async verify(entries: VerifyEntries, restore: boolean): Promise<Mismatch | null> {
    const r = await this.#call({ t: 'verify', entries, restore }, 60_000 + entries.length * 10);
    if (r.t !== 'verified')
      throw new KvwireError(ErrorCode.TRANSPORT, `the bench target answered verify with '${r.t}'`);
    return r.mismatch;
  }

  /** The target process's CPU time (µs) and clock (ns). */
  async cpu(): Promise<{ userUs: number; systemUs: number; wallNs: number }> {
    const r = await this.#call({ t: 'cpu' }, 10_000);
    if (r.t !== 'cpu') throw new KvwireError(ErrorCode.TRANSPORT, `the bench target answered cpu with '${r.t}'`);
    return { userUs: r.userUs, systemUs: r.systemUs, wallNs: r.wallNs };
  }
}

/** The compiled target module children run. */
export function targetModulePath(): string {
  return join(packageRoot(), 'dist', 'bench', 'transfer', 'target-process.js');
}

interface Pending {
  resolve: (r: TargetReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A target in a forked child process. */
export class ChildTargetLink extends TargetLink {
  readonly pid: number;
  readonly inProcess = false;
  readonly #child: ReturnType<typeof fork>;
  readonly #pending = new Map<number, Pending>();
  #exited: string | undefined;

  /** Forks the target process. @throws KvwireError when dist/ has not been built. */
  constructor() {
    super();
    const path = targetModulePath();
    if (!existsSync(path)) {
      throw new KvwireError(
        ErrorCode.UNSUPPORTED,
        `the bench target module ${path} is missing; build kvwire first (npm run compile)`,
      );
    }
    // The child's stdout goes to our stderr: our stdout carries the table, JSON or CSV only.
    this.#child = trackChild(
      fork(path, [], { serialization: 'advanced', stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] }),
    );
    this.pid = this.#child.pid ?? -1;
    this.#child.on('message', (reply: TargetReply) => {
      const p = this.#pending.get(reply.id);
      if (p === undefined) return;
      this.#pending.delete(reply.id);
      clearTimeout(p.timer);
      p.resolve(reply);
    });
    this.#child.on('error', (e) => this.#fail(`the bench target process failed: ${e.message}`));
    this.#child.on('exit', (code, signal) =>
      this.#fail(`the bench target process ${this.pid} exited (${signal ?? `code ${code}`})`),
    );
  }

  #fail(why: string): void {
    this.#exited ??= why;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new KvwireError(ErrorCode.PEER_LOST, why));
    }
  }

  protected send(req: TargetRequest, timeoutMs: number): Promise<TargetReply> {
    if (this.#exited !== undefined) return Promise.reject(new KvwireError(ErrorCode.PEER_LOST, this.#exited));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(req.id);
        this.#child.kill('SIGKILL');
        reject(
          new KvwireError(
            ErrorCode.TIMEOUT,
            `the bench target did not answer '${req.t}' within ${Math.round(timeoutMs / 1000)} s; it was killed`,
          ),
        );
      }, timeoutMs);
      this.#pending.set(req.id, { resolve, reject, timer });
      this.#child.send(req, (e) => {
        if (e === null || e === undefined) return;
        const p = this.#pending.get(req.id);
        if (p === undefined) return;
        this.#pending.delete(req.id);
        clearTimeout(p.timer);
        reject(new KvwireError(ErrorCode.PEER_LOST, `could not reach the bench target: ${e.message}`));
      });
    });
  }

  async close(): Promise<void> {
    if (this.#exited === undefined && this.#child.connected) {
      const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
      try {
        await this.send({ t: 'close', id: 0 }, 10_000);
      } catch {
        // killed below
      }
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    } else if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill('SIGKILL');
    }
  }
}

/** A target in this process (the loopback engine reaches only agents of its own process). */
export class InProcessTargetLink extends TargetLink {
  readonly pid = process.pid;
  readonly inProcess = true;
  /** The target itself (tests reach its agent to plant faults). */
  readonly target = new BenchTarget();

  protected send(req: TargetRequest): Promise<TargetReply> {
    return this.target.handle(req);
  }

  async close(): Promise<void> {
    await this.target.close();
  }
}
