/**
 * Starts a throwaway Redis Cluster of `masters` Debian `redis-server` processes on free loopback
 * ports (cluster-enabled, no persistence, their node files in a temporary folder), splits the
 * 16,384 slots between them (`CLUSTER ADDSLOTSRANGE`), joins them (`CLUSTER MEET`) and waits until
 * every node reports `cluster_state:ok`. For the Redis Cluster backend's tests and for
 * `kvwire bench-router`. Not part of the index's API.
 *
 * @packageDocumentation
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KvwireError } from '../lib/errors.js';
import { freePort } from './redis-server.js';

/** A running throwaway cluster. */
export interface RedisClusterHandle {
  /** `redis://127.0.0.1:<port>` of each master. */
  readonly nodes: string[];
  /** The master processes. */
  readonly children: ChildProcess[];
  /** Stops every node and removes the node files. */
  stop(): Promise<void>;
}

/** Options of {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /** Masters (each owns an equal share of the slots). Default 3. */
  readonly masters?: number;
  /** The executable. Default `redis-server` on the PATH. */
  readonly bin?: string;
  /** How long to wait for the cluster to be ready, in ms. Default 20,000. */
  readonly readyTimeoutMs?: number;
}

const SLOTS = 16_384;

function startNode(bin: string, dir: string, port: number, busPort: number): Promise<ChildProcess> {
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--cluster-port',
      String(busPort),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, `nodes-${port}.conf`),
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--cluster-node-timeout',
      '5000',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new KvwireError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `${bin} on port ${port} did not start within 10 s: ${log.slice(-400)}`,
        ),
      );
    }, 10_000);
    const onData = (b: Buffer): void => {
      log += b.toString();
      if (/Ready to accept connections/.test(log)) {
        clearTimeout(timer);
        resolve(child);
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
              `${bin} is not installed: the Redis Cluster tests and bench need it (Debian: apt-get install redis-server)`,
              {},
              { cause: e },
            )
          : e,
      );
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new KvwireError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `${bin} on port ${port} exited with code ${String(code)}: ${log.slice(-400)}`,
        ),
      );
    });
  });
}

/** See the module documentation. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = options.masters ?? 3;
  const bin = options.bin ?? 'redis-server';
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const buses: number[] = [];
  const { Redis } = await import('ioredis');
  const clients: InstanceType<typeof Redis>[] = [];
  const stop = async (): Promise<void> => {
    for (const c of clients) c.disconnect();
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const t = setTimeout(() => child.kill('SIGKILL'), 2_000);
            child.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const bus = await freePort();
      children.push(await startNode(bin, dir, port, bus));
      ports.push(port);
      buses.push(bus);
    }
    for (const port of ports)
      clients.push(new Redis({ host: '127.0.0.1', port, lazyConnect: false, maxRetriesPerRequest: 1 }));
    const share = Math.floor(SLOTS / masters);
    for (let i = 0; i < masters; i++) {
      const first = i * share;
      const last = i === masters - 1 ? SLOTS - 1 : first + share - 1;
      await clients[i]!.call('CLUSTER', 'ADDSLOTSRANGE', String(first), String(last));
    }
    // The bus ports are not port + 10,000 (those may be taken): MEET names them.
    for (let i = 1; i < masters; i++)
      await clients[i]!.call('CLUSTER', 'MEET', '127.0.0.1', String(ports[0]), String(buses[0]));
    const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
      if (infos.every((t) => /cluster_state:ok/.test(t) && new RegExp(`cluster_known_nodes:${masters}\\b`).test(t)))
        break;
      if (Date.now() > deadline) {
        throw new KvwireError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `the Redis Cluster of ${masters} masters did not reach cluster_state:ok: ${infos[0]?.split('\n').slice(0, 3).join(' ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const c of clients.splice(0)) c.disconnect();
    return { nodes: ports.map((p) => `redis://127.0.0.1:${p}`), children, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
