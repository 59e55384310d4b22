// Bad arguments anywhere in the public API are KvwireErrors with a stable code, never TypeErrors;
// options out of their documented range are refused, never clamped or ignored.
import { totalmem } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, ErrorCode } from '../../lib/index.js';
import type { Peer, Region } from '../../lib/index.js';
import { Sweep, sweepAgentCreate, sweepPd, sweepTransport } from './api-sweep.js';
import { expectCode, expectRejectCode } from './helpers.js';

describe.each(['loopback', 'ucx'] as const)('arguments of the %s engine', (engine) => {
  let a: Agent | undefined;
  let b: Agent | undefined;
  afterEach(async () => {
    await a?.close();
    await b?.close();
    a = b = undefined;
  });

  async function connected(): Promise<{ peer: Peer; local: Region }> {
    a = await Agent.create({ engine, name: 'args-a' });
    b = await Agent.create({ engine, name: 'args-b' });
    b.register(Buffer.alloc(4096), { access: 'readwrite', label: 'kv' });
    const local = a.register(Buffer.alloc(4096), { label: 'dst' });
    return { peer: await a.connect(b.metadata()), local };
  }

  it('refuses null descriptor lists, null descriptors, descriptors without a region and a fake signal', async () => {
    const { peer, local } = await connected();
    const remote = [{ region: peer.region('kv'), offset: 0, length: 8 }];
    const INVALID = ErrorCode.INVALID_ARGUMENT;
    expectCode(() => a!.read(peer, null as never, null as never), INVALID, /local descriptors must be/);
    expectCode(() => a!.read(peer, [null] as never, [null] as never), INVALID, /local descriptor 0 must be an object/);
    expectCode(
      () => a!.write(peer, [{ offset: 0, length: 8 }] as never, remote),
      INVALID,
      /not a Region of this agent/,
    );
    expectCode(
      () => a!.read(peer, [{ region: local, offset: 0, length: 8 }], [{ offset: 0, length: 8 }] as never),
      INVALID,
      /not a region of peer/,
    );
    expectCode(
      () => a!.read(peer, [{ region: local, offset: 0, length: 8 }], remote, { signal: {} as never }),
      INVALID,
      /signal must be an AbortSignal, not an object/,
    );
    expectCode(() => a!.read(peer, [{ region: local, offset: 0, length: 8 }], remote, null as never), INVALID);
    await expectRejectCode(a!.connect(b!.metadata(), { signal: {} as never }), INVALID, /signal/);
    await expectRejectCode(a!.waitForNotification(42 as never), INVALID, /match must be/);
    expectCode(() => a!.notifications({ signal: 'x' } as never), INVALID, /signal/);
    // The agent still closes cleanly after all of that.
    await a!.close();
  });

  it.each([
    [
      'tuning.batchBytes beyond 32 MiB',
      { tuning: { batchBytes: 1e12 } },
      /tuning.batchBytes must be an integer from 1 to 33,554,432/,
    ],
    ['a protocol that does not exist', { protocol: 'bogus' }, /protocol must be 'auto', 'rma' or 'am', not "bogus"/],
    [
      'an unknown tuning key',
      { tuning: { windowBytes: 1 } },
      /tuning.windowBytes must be one of the known tuning keys/,
    ],
    ['tuning.windowOps 0', { tuning: { windowOps: 0 } }, /tuning.windowOps must be an integer from 1/],
    ['keepAlive given as a string', { keepAlive: 'yes' }, /keepAlive must be true or false/],
    ['transports as an object', { transports: {} }, /transports must be transport names/],
    ['transports with shell text', { transports: 'tcp;reboot' }, /transports must be transport names/],
    ['an unknown cuda key', { cuda: { chunk: 1 } }, /cuda.chunk must be one of the known cuda keys/],
    ['an empty name', { name: '' }, /name must be a non-empty string/],
    ['options that are not an object', 'tcp', /options must be an options object/],
    ['null options', null, /options must be an options object/],
  ])('Agent.create refuses %s', async (_, options, message) => {
    const given = options !== null && typeof options === 'object' ? { engine, ...options } : options;
    await expectRejectCode(
      Agent.create(given as never).then((x) => x.close()),
      ErrorCode.INVALID_ARGUMENT,
      message,
    );
  });

  it('refuses to allocate more than the machine has, before the engine tries', async () => {
    a = await Agent.create({ engine, name: 'args-alloc' });
    expectCode(() => a!.allocate(totalmem() + 4096), ErrorCode.CAPACITY, /this machine has/);
    expect(a.regions).toHaveLength(0);
  });

  it('answers every hostile argument of every method with a KvwireError', { timeout: 600_000 }, async () => {
    const s = new Sweep();
    await sweepAgentCreate(s, engine);
    await sweepTransport(s, engine);
    expect(s.untyped, s.untyped.join('\n')).toEqual([]);
    expect(s.calls).toBeGreaterThan(1500);
  });
});

describe('arguments of lib/pd', () => {
  it('answers every hostile argument of the coordinators with a KvwireError', async () => {
    const s = new Sweep();
    await sweepPd(s);
    expect(s.untyped, s.untyped.join('\n')).toEqual([]);
    expect(s.calls).toBeGreaterThan(400);
  });
});
