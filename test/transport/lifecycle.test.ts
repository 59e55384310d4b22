// Lifetimes: agents in worker threads (per-environment state), a worker terminated with transfers
// in flight, agents dropped without close() and collected.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../lib/index.js';
import { fillPattern } from '../fixtures/pattern.js';
import { Child } from './child.js';

const WORKER = new URL('../../dist/test/fixtures/worker-agent.js', import.meta.url);
const SIZE = 4 << 20;

describe('region release', () => {
  it.each(['ucx', 'loopback'])(
    'keeps the process alive until a deregistered region is released (%s)',
    async (engine) => {
      const c = new Child('release-exit.js', [engine]);
      expect((await c.next('released')).type).toBe('released');
      const { code } = await c.exited;
      expect(code).toBe(0);
    },
  );
});

describe.each(['tcp', 'sm'])('agent lifetimes over %s', (tls) => {
  it('runs an agent in a worker thread that moves bytes to the main thread', async () => {
    const main = await Agent.create({ name: 'main-thread', transports: tls });
    const src = fillPattern(Buffer.alloc(SIZE), 5);
    main.register(src, { access: 'readwrite', label: 'kv' });
    const w = new Worker(WORKER, {
      workerData: { metadata: main.metadata(), transports: tls, size: SIZE, mode: 'finish' },
    });
    const msg = await new Promise<{ sum: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    let sum = 0;
    for (const b of src) sum = (sum + b) % 65521;
    expect(msg.sum).toBe(sum);
    expect(await new Promise((r) => w.once('exit', r))).toBe(0);
    await main.close();
  });

  it('survives terminating a worker thread whose agent has transfers in flight', async () => {
    const main = await Agent.create({ name: 'main-thread', transports: tls });
    main.register(Buffer.alloc(SIZE), { access: 'readwrite', label: 'kv' });
    for (let round = 0; round < 8; round++) {
      const w = new Worker(WORKER, {
        workerData: { metadata: main.metadata(), transports: tls, size: SIZE, mode: 'busy' },
      });
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      await new Promise((r) => setTimeout(r, 50));
      await w.terminate();
    }
    // The main thread's agent still works after its peers vanished.
    const other = await Agent.create({ name: 'after', transports: tls });
    const dst = other.register(Buffer.alloc(4096), { label: 'dst' });
    const peer = await other.connect(main.metadata());
    await other.read(
      peer,
      [{ region: dst, offset: 0, length: 4096 }],
      [{ region: peer.region('kv'), offset: 0, length: 4096 }],
    ).done;
    await other.close();
    await main.close();
  });

  it('frees agents dropped without close() when they are collected, and exits cleanly', async () => {
    const c = new Child('gc-agent.js', [tls], {}, ['--expose-gc']);
    await c.next('gc-done');
    const { code, signal } = await c.exited;
    expect(c.stderr).not.toMatch(/Segmentation|Assertion|terminate called/);
    expect(signal).toBeNull();
    expect(code).toBe(0);
  });
});
