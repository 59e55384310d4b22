// Drives a child process fixture over its IPC channel.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

const FIXTURES = new URL('../../dist/test/fixtures/', import.meta.url);

/** A forked fixture with typed request/response helpers. */
export class Child {
  readonly proc: ChildProcess;
  readonly #waiters: {
    match: (m: Record<string, unknown>) => boolean;
    resolve: (m: Record<string, unknown>) => void;
  }[] = [];
  readonly messages: Record<string, unknown>[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';

  constructor(fixture: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, execArgv: string[] = []) {
    this.proc = fork(new URL(fixture, FIXTURES), args, {
      env: { ...process.env, ...env },
      execArgv,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (process.env.DEBUG_CHILD) process.stderr.write(d); // DEBUG_CHILD=1: see what a child prints
    });
    this.proc.on('message', (m: Record<string, unknown>) => {
      this.messages.push(m);
      const i = this.#waiters.findIndex((w) => w.match(m));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  send(m: unknown): void {
    this.proc.send(m as never);
  }

  /** The next message of `type` (or one already received and not yet taken). */
  next(type: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const i = this.messages.findIndex((m) => m.type === type || m.type === 'error');
    if (i >= 0) {
      const m = this.messages.splice(i, 1)[0]!;
      return m.type === 'error' ? Promise.reject(new Error(`child: ${String(m.message)}`)) : Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no '${type}' from child within ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.#waiters.push({
        match: (m) => m.type === type || m.type === 'error',
        resolve: (m) => {
          clearTimeout(timer);
          const idx = this.messages.indexOf(m);
          if (idx >= 0) this.messages.splice(idx, 1);
          if (m.type === 'error') reject(new Error(`child: ${String(m.message)}`));
          else resolve(m);
        },
      });
    });
  }

  async request(m: Record<string, unknown>, type: string): Promise<Record<string, unknown>> {
    this.send(m);
    return this.next(type);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.proc.kill(signal);
  }
}
