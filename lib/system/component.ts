/**
 * One kvwire component (`kvwire engine`, `kvwire sidecar`, `kvwire router`) as a child process:
 * started with the package's own CLI, ready when it prints its `kvwire-<command>-ready {json}`
 * line, stopped with SIGTERM (the components drain and exit 0) and SIGKILL after a grace period.
 *
 * Hazards guarded: a component that dies before it is ready rejects the start with the tail of
 * its stderr (the component's own message, e.g. a taken port), never a hang; children run in
 * their own process group, so a terminal's Ctrl-C reaches only the demo, which stops them in order
 * and waits for each; stderr is kept as a bounded tail (a chatty child cannot grow the demo's memory).
 *
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, KvwireError } from '../errors.js';

/** The kvwire commands the system starts. */
export type ComponentCommand = 'engine' | 'sidecar' | 'router';

/** How to start one component. */
export interface ComponentSpec {
  /** Name in logs, the summary and the report (`prefill-0`, `sidecar-1`, `router`). */
  readonly name: string;
  /** The kvwire command. */
  readonly command: ComponentCommand;
  /** Its flags. */
  readonly args: readonly string[];
  /** Environment added to the demo's own. */
  readonly env?: Readonly<Record<string, string>>;
}

/** How a component process ended. */
export interface ComponentExit {
  /** Exit code, or null when a signal ended it. */
  readonly code: number | null;
  /** The signal, or null. */
  readonly signal: NodeJS.Signals | null;
}

const STDERR_TAIL_BYTES = 16 * 1024;

/** The kvwire package folder (holds package.json named kvwire), found from this module upward. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'kvwire') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    dir = dirname(dir);
  }
  throw new KvwireError(ErrorCode.UNSUPPORTED, 'cannot find the kvwire package folder (package.json) above lib/system');
}

/** A running component. */
export class Component {
  /** Name. */
  readonly name: string;
  /** Its command. */
  readonly command: ComponentCommand;
  /** The ready line's JSON object. */
  readonly ready: Readonly<Record<string, unknown>>;
  /** Process id. */
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ComponentExit>;
  readonly #child: ChildProcess;
  readonly #stderr: { text: string };
  #exit: ComponentExit | undefined;

  private constructor(
    spec: ComponentSpec,
    child: ChildProcess,
    ready: Record<string, unknown>,
    stderr: { text: string },
    exited: Promise<ComponentExit>,
  ) {
    this.name = spec.name;
    this.command = spec.command;
    this.ready = ready;
    this.pid = child.pid!;
    this.#child = child;
    this.#stderr = stderr;
    this.exited = exited.then((e) => (this.#exit = e));
  }

  /**
   * Spawns the component and resolves when it has printed its ready line.
   *
   * @throws KvwireError `TIMEOUT` (no ready line within `timeoutMs`; the child is killed),
   *   `PEER_LOST` (it exited first: the message carries its exit code and stderr tail),
   *   `CANCELLED` (`signal` aborted; the child is killed).
   */
  static async start(
    spec: ComponentSpec,
    o: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {},
  ): Promise<Component> {
    const root = packageRoot();
    const child = spawn(process.execPath, [join(root, 'bin', 'kvwire.js'), spec.command, ...spec.args], {
      cwd: root,
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a terminal's Ctrl-C goes to the demo alone, which stops the
      // components in order (router first, engines last) instead of all at once.
      detached: true,
    });
    const stderr = { text: '' };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      stderr.text = (stderr.text + s).slice(-STDERR_TAIL_BYTES);
    });
    const exited = new Promise<ComponentExit>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const prefix = `kvwire-${spec.command}-ready `;
    const timeoutMs = o.timeoutMs ?? 120_000;
    try {
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let settled = false;
        const settle = (f: () => void): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          o.signal?.removeEventListener('abort', onAbort);
          f();
        };
        let out = '';
        child.stdout!.setEncoding('utf8');
        child.stdout!.on('data', (s: string) => {
          out += s;
          for (const line of out.split('\n').slice(0, -1)) {
            if (!line.startsWith(prefix)) continue;
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(line.slice(prefix.length)) as Record<string, unknown>;
            } catch {
              settle(() =>
                reject(
                  new KvwireError(ErrorCode.TRANSPORT, `${spec.name} printed a ready line that is not JSON: ${line}`),
                ),
              );
              return;
            }
            settle(() => resolve(parsed));
            return;
          }
          if (out.length > 64 * 1024) out = out.slice(-1024);
        });
        const timer = setTimeout(
          () =>
            settle(() =>
              reject(
                new KvwireError(
                  ErrorCode.TIMEOUT,
                  `${spec.name} (kvwire ${spec.command}) did not become ready within ${timeoutMs / 1000} s; its stderr ends with:\n${tail(stderr.text)}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const onAbort = (): void =>
          settle(() => reject(new KvwireError(ErrorCode.CANCELLED, `starting ${spec.name} was cancelled`)));
        o.signal?.addEventListener('abort', onAbort, { once: true });
        if (o.signal?.aborted === true) onAbort();
        void exited.then((e) => {
          // Give the stderr pipe a moment to deliver the child's last words.
          setTimeout(
            () =>
              settle(() =>
                reject(
                  new KvwireError(
                    ErrorCode.PEER_LOST,
                    `${spec.name} (kvwire ${spec.command}) exited before it was ready (${describeExit(e)}); its stderr ends with:\n${tail(stderr.text)}`,
                    { exitCode: e.code, stderr: stderr.text },
                  ),
                ),
              ),
            50,
          );
        });
      });
      child.stdout!.removeAllListeners('data');
      child.stdout!.resume(); // later stdout is not ours to keep; never let the pipe fill
      return new Component(spec, child, ready, stderr, exited);
    } catch (e) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      throw e;
    }
  }

  /** The component's HTTP base URL (from its ready line). */
  get url(): string {
    return String(this.ready['url']);
  }

  /** True until the process exited. */
  get alive(): boolean {
    return this.#exit === undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** How it ended, once it has. */
  get exit(): ComponentExit | undefined {
    return this.#exit;
  }

  /** The last 16 KiB it wrote to stderr. */
  stderr(): string {
    return this.#stderr.text;
  }

  /** Sends a signal (no-op once it exited). */
  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.#child.kill(signal);
  }

  /**
   * SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves with how it ended.
   */
  async stop(graceMs = 15_000): Promise<ComponentExit> {
    if (!this.alive) return this.exited;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `exit code 2` / `killed by SIGKILL`. */
export function describeExit(e: ComponentExit): string {
  return e.signal !== null ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

function tail(text: string): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(-12).join('\n') || '(nothing)';
}
