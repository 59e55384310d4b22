/**
 * Starts a throwaway `redis-server` (no persistence, loopback only, a free port) for the Redis
 * backend's tests and for `kvwire bench-index`. Not part of the index's API.
 *
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { ErrorCode, KvwireError } from '../lib/errors.js';

/** A running throwaway Redis. */
export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** The process. */
  readonly child: ChildProcess;
  /** Stops it (SIGKILL after 2 s if it does not exit on SIGTERM). */
  stop(): Promise<void>;
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** The executable. Default `redis-server` on the PATH. */
  readonly bin?: string;
  /** How long to wait for "Ready to accept connections", in ms. Default 10,000. */
  readonly readyTimeoutMs?: number;
}

/** A TCP port nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Spawns `redis-server --port <free> --bind 127.0.0.1 --save '' --appendonly no` and waits until it
 * accepts connections.
 *
 * @throws KvwireError `ERR_KVWIRE_UNSUPPORTED` when `redis-server` is not installed;
 *   `ERR_KVWIRE_BACKEND_UNAVAILABLE` when it does not start.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const bin = options.bin ?? 'redis-server';
  const port = await freePort();
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new KvwireError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `${bin} did not report "Ready to accept connections" within ${options.readyTimeoutMs ?? 10_000} ms; its output: ${log.slice(-500)}`,
        ),
      );
    }, options.readyTimeoutMs ?? 10_000);
    const onData = (b: Buffer): void => {
      log += b.toString();
      if (/Ready to accept connections/.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        e.code === 'ENOENT'
          ? new KvwireError(
              ErrorCode.UNSUPPORTED,
              `${bin} is not installed (not found on PATH): the Redis backend's tests and bench need a real server; install it (Debian/Ubuntu: apt-get install redis-server)`,
              {},
              { cause: e },
            )
          : new KvwireError(ErrorCode.BACKEND_UNAVAILABLE, `could not start ${bin}: ${e.message}`, {}, { cause: e }),
      );
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new KvwireError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `${bin} exited with code ${String(code)} before accepting connections; its output: ${log.slice(-500)}`,
        ),
      );
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    child,
    async stop(): Promise<void> {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
