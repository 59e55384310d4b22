// Lifetimes: agents in worker threads (per-environment state), a worker terminated with transfers
// in flight, agents dropped without close() (never collected; closed at exit).
import { tcpZeroCopyOff } from './tcp-zero-copy-off.js';
import { readdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Agent, ErrorCode } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from './child.js';
import { expectCode, threadsNamed } from './helpers.js';

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

describe('engine threads', () => {
  it("names each agent's engine thread kvwire-engine (top -H, perf, gdb) and ends it at close()", async () => {
    const before = threadsNamed('kvwire-engine').length;
    const agents = [
      await Agent.create({ engine: 'ucx', name: 'named-1' }),
      await Agent.create({ engine: 'ucx', name: 'named-2' }),
    ];
    expect(threadsNamed('kvwire-engine').length).toBe(before + 2);
    for (const a of agents) await a.close();
    expect(threadsNamed('kvwire-engine').length).toBe(before);
  });
});

describe.each(['tcp', 'sm'])('agent lifetimes over %s', (tls) => {
  tcpZeroCopyOff(tls);
  // Under load (a 2-core machine at load 10, several agents' engine threads spinning) a worker
  // thread starts, compiles and connects slowly: this once hit the default 60 s test timeout.
  // Every step inside the worker has its own deadline (a typed failure arrives as 'error'), the
  // exit is awaited from the start (it can come right after the message), and the test allows
  // far more than the steps' deadlines.
  it('runs an agent in a worker thread that moves bytes to the main thread', { timeout: 240_000 }, async () => {
    const main = await Agent.create({ name: 'main-thread', transports: tls });
    try {
      const src = fillPattern(Buffer.alloc(SIZE), 5);
      main.register(src, { access: 'readwrite', label: 'kv' });
      const w = new Worker(WORKER, {
        workerData: { metadata: main.metadata(), transports: tls, size: SIZE, mode: 'finish', timeoutMs: 60_000 },
      });
      const exited = new Promise<number>((r) => w.once('exit', r));
      const msg = await new Promise<{ sum: number }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      let sum = 0;
      for (const b of src) sum = (sum + b) % 65521;
      expect(msg.sum).toBe(sum);
      expect(await exited).toBe(0);
    } finally {
      await main.close();
    }
  });

  it('survives terminating a worker thread whose agent has transfers in flight, or is closing', async () => {
    const main = await Agent.create({ name: 'main-thread', transports: tls });
    main.register(Buffer.alloc(SIZE), { access: 'readwrite', label: 'kv' });
    for (let round = 0; round < 8; round++) {
      const mode = round % 2 === 0 ? 'busy' : 'closing';
      const w = new Worker(WORKER, {
        workerData: { metadata: main.metadata(), transports: tls, size: SIZE, mode },
      });
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      if (mode === 'busy') await new Promise((r) => setTimeout(r, 50)); // 'closing': at once, mid-close
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

  it('never collects agents dropped without close() (close() is required); at exit they are closed and the process exits cleanly', async () => {
    await expectDroppedAgentsKeptUntilExit(tls);
  });
});

// What Agent's TSDoc, the README and docs/transport.md promise: an agent is freed by close(), or
// at exit by the environment's cleanup hook, never by the garbage collector. If this starts
// failing because agents ARE collected, the docs must say so (and the destructor then closes them).
async function expectDroppedAgentsKeptUntilExit(which: string): Promise<void> {
  const c = new Child('gc-agent.js', [which], {}, ['--expose-gc']);
  const report = await c.next('gc-done');
  expect(report.controlCollected).toBe(true); // collections ran and finalizers were delivered
  expect(report.agentsCollected).toBe(0);
  const { code, signal } = await c.exited;
  expect(c.stderr).not.toMatch(/Segmentation|Assertion|terminate called/);
  expect(signal).toBeNull();
  expect(code).toBe(0);
}

describe('agent lifetimes on the loopback engine', () => {
  it('never collects agents dropped without close() (close() is required); the process exits cleanly', async () => {
    await expectDroppedAgentsKeptUntilExit('loopback');
  });
});

// Registered memory must outlive anything JavaScript does to the ArrayBuffer it came in: a
// transfer list used to move the backing store to a clone that was collected and freed, and a
// peer's READ then crashed the target (SIGSEGV) or returned someone else's bytes.
describe.each(['tcp', 'sm'])('registered ArrayBuffer whose owner tries to detach it, over %s', (tls) => {
  tcpZeroCopyOff(tls);
  it('stays registered, whole and readable by a peer: the transfer copies instead of detaching', async () => {
    const size = 8 << 20;
    const c = new Child('transport-target.js', [], {}, ['--expose-gc']);
    const agent = await Agent.create({ name: 'reader', transports: tls });
    try {
      const m = await c.request(
        {
          cmd: 'init',
          engineOpts: { name: 'detach-target', transports: tls },
          regions: [{ label: 'ab', size, access: 'read', seed: 77, arrayBuffer: true }],
        },
        'metadata',
      );
      const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
      const detached = await c.request({ cmd: 'detach', label: 'ab' }, 'detached');
      expect(detached.byteLength).toBe(size); // never detached
      const dst = agent.register(Buffer.alloc(size), { label: 'dst' });
      for (let round = 0; round < 3; round++) {
        dst.bytes.fill(0);
        await agent.read(
          peer,
          [{ region: dst, offset: 0, length: size }],
          [{ region: peer.region('ab'), offset: 0, length: size }],
        ).done;
        expect(sha256(dst.bytes)).toBe(sha256(fillPattern(Buffer.alloc(size), 77)));
      }
      expect((await c.request({ cmd: 'hash', label: 'ab' }, 'hash')).sha).toBe(sha256(dst.bytes));
    } finally {
      await agent.close();
      c.kill();
      const { signal } = await c.exited;
      expect(c.stderr).not.toMatch(/Segmentation|Assertion|terminate called/);
      expect(signal).toBe('SIGKILL'); // killed by us, not by a fault
    }
  });

  it('refuses local transfers from memory detached under it by a path kvwire cannot block', async () => {
    const agent = await Agent.create({ name: 'local', transports: tls });
    const other = await Agent.create({ name: 'other', transports: tls });
    try {
      other.register(Buffer.alloc(4096), { access: 'readwrite', label: 'kv' });
      const peer = await agent.connect(other.metadata());
      const ab = new ArrayBuffer(4096);
      const region = agent.register(ab, { label: 'src' });
      // What another addon's napi_detach_arraybuffer would do (V8's own detach ignores the mark).
      setFlagsFromString('--allow-natives-syntax');
      new Function('ab', '%ArrayBufferDetach(ab)')(ab);
      expect(ab.byteLength).toBe(0);
      expectCode(
        () =>
          agent.write(
            peer,
            [{ region, offset: 0, length: 4096 }],
            [{ region: peer.region('kv'), offset: 0, length: 4096 }],
          ),
        ErrorCode.DEREGISTERED,
        /was detached/,
      );
    } finally {
      await agent.close();
      await other.close();
    }
  });
});

// UCX 1.13 frees an endpoint its peer connected to only when it is closed by force: a disconnect
// that closed it by flushing kept it, and its socket, until the agent closed (74 -> 574 fds after
// 500 cycles). Disconnects now say goodbye both ways and then close by force.
describe.each(['tcp', 'sm'])('connect and disconnect cycles over %s', (tls) => {
  tcpZeroCopyOff(tls);
  it('leave the descriptor count flat on both sides (500 cycles)', { timeout: 300_000 }, async () => {
    const c = new Child('transport-target.js');
    const agent = await Agent.create({ name: 'cycler', transports: tls });
    try {
      const m = await c.request(
        {
          cmd: 'init',
          engineOpts: { name: 'cycled', transports: tls },
          regions: [{ label: 'kv', size: 1 << 16, access: 'read', seed: 3 }],
        },
        'metadata',
      );
      const md = Uint8Array.from(m.metadata as number[]);
      const dst = agent.register(Buffer.alloc(4096), { label: 'dst' });
      const cycle = async () => {
        const peer = await agent.connect(md);
        await agent.read(
          peer,
          [{ region: dst, offset: 0, length: 4096 }],
          [{ region: peer.region('kv'), offset: 0, length: 4096 }],
        ).done;
        peer.disconnect();
      };
      const fds = () => readdirSync('/proc/self/fd').length;
      const settle = async () => {
        // The goodbyes and closes finish on the engine threads a little after disconnect() returns.
        for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 20));
      };
      for (let i = 0; i < 5; i++) await cycle(); // warm-up: sockets and pools UCX keeps for good
      await settle();
      const before = { here: fds(), there: (await c.request({ cmd: 'fds' }, 'fds')).count as number };
      for (let i = 0; i < 500; i++) await cycle();
      await settle();
      const after = { here: fds(), there: (await c.request({ cmd: 'fds' }, 'fds')).count as number };
      // A descriptor or two of slack for timers and the like, not one per cycle.
      expect(after.here - before.here, `${before.here} -> ${after.here}`).toBeLessThanOrEqual(2);
      expect(after.there - before.there, `${before.there} -> ${after.there}`).toBeLessThanOrEqual(2);
    } finally {
      await agent.close();
      c.kill();
      await c.exited;
    }
  });
});

// Both ends closing at once (every process of a deployment stopped together): the target's engine
// handled the initiator's goodbye after it had retired its own endpoints and sent on a null
// endpoint (SIGSEGV in ucp_am_send_nbx, seen when P/D engines were stopped together).
describe.each(['tcp', 'sm'])('both ends closing at once over %s', (tls) => {
  tcpZeroCopyOff(tls);
  it('exits cleanly, whichever goodbye arrives first (12 rounds)', { timeout: 300_000 }, async () => {
    for (let round = 0; round < 12; round++) {
      const c = new Child('transport-target.js');
      const agent = await Agent.create({ name: 'closer', transports: tls });
      const m = await c.request(
        {
          cmd: 'init',
          engineOpts: { name: 'closed', transports: tls },
          regions: [{ label: 'kv', size: 1 << 20, access: 'read', seed: 4 }],
        },
        'metadata',
      );
      const peers = [];
      for (let i = 0; i < 4; i++) peers.push(await agent.connect(Uint8Array.from(m.metadata as number[])));
      const dst = agent.register(Buffer.alloc(1 << 20), { label: 'dst' });
      const reads = peers.map((p) =>
        agent.read(
          p,
          [{ region: dst, offset: 0, length: 1 << 20 }],
          [{ region: p.region('kv'), offset: 0, length: 1 << 20 }],
        ),
      );
      // Stagger the two closes a little differently every round.
      c.send({ cmd: 'exit' });
      await new Promise((r) => setTimeout(r, round % 4));
      await agent.close();
      await Promise.allSettled(reads.map((r) => r.done));
      const { code, signal } = await c.exited;
      expect({ round, code, signal, stderr: c.stderr.slice(-2000) }).toMatchObject({ round, code: 0, signal: null });
    }
  });
});
