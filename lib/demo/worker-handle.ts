/**
 * The parent's side of a demo worker: forks it, sends requests with sequence numbers and a
 * deadline each, and fails every pending request (with the child's last stderr lines) if the
 * child exits.
 *
 * @packageDocumentation
 */
import { fork, type ChildProcess } from 'node:child_process';
import { ErrorCode, KvwireError } from '../errors.js';
import type { FromWorker, ToWorker } from './worker.js';

type Op = ToWorker['op'];
type Payload<O extends Op> = Omit<Extract<ToWorker, { op: O }>, 'op' | 'seq'>;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A forked demo worker. */
export class WorkerHandle {
  /** For messages: 'prefill' or 'decode'. */
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  readonly #exited: Promise<number | null>;
  #stderr = '';
  #seq = 0;
  #gone: Error | undefined;

  /** Forks `entry` (a module that calls `serveDemoWorker()`). */
  constructor(name: string, entry: URL) {
    this.name = name;
    this.#child = fork(entry, [], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    this.#child.stderr!.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString()).slice(-4000);
    });
    this.#child.on('message', (m: FromWorker) => {
      const p = this.#pending.get(m.seq);
      if (p === undefined) return;
      this.#pending.delete(m.seq);
      clearTimeout(p.timer);
      if (m.op === 'result') p.resolve(m.value);
      else p.reject(KvwireError.fromCode(m.code, `${this.name} worker: ${m.message}`));
    });
    this.#exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        this.#gone = new KvwireError(
          ErrorCode.PEER_LOST,
          `the ${this.name} worker exited (${signal ?? `code ${code}`})${this.#stderr ? `; its last output:\n${this.#stderr.trim()}` : ''}`,
        );
        for (const p of this.#pending.values()) {
          clearTimeout(p.timer);
          p.reject(this.#gone);
        }
        this.#pending.clear();
        resolve(code);
      });
    });
  }

  /** Sends `op` and resolves with the worker's answer; rejects on its error, its exit, or after `timeoutMs`. */
  call<O extends Op, R = unknown>(op: O, payload: Payload<O>, timeoutMs = 60_000): Promise<R> {
    if (this.#gone !== undefined) return Promise.reject(this.#gone);
    const seq = ++this.#seq;
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        reject(
          new KvwireError(ErrorCode.TIMEOUT, `the ${this.name} worker did not answer '${op}' within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.#child.send({ op, seq, ...payload } as ToWorker);
    });
  }

  /** Kills the worker process at once (SIGKILL): simulates a crash. */
  kill(): void {
    this.#child.kill('SIGKILL');
  }

  /** Asks the worker to close and waits for it to exit (killing it after `timeoutMs`). */
  async close(timeoutMs = 10_000): Promise<number | null> {
    if (this.#gone === undefined) await this.call('close', {}, timeoutMs).catch(() => {});
    const kill = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
    const code = await this.#exited;
    clearTimeout(kill);
    return code;
  }
}
