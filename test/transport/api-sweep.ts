// A sweep of the public API of lib/transport and lib/pd with hostile arguments: every call must
// either succeed or fail with a KvwireError (thrown, or as a rejected promise), never a TypeError
// or a RangeError from deep inside. Exported so the reliability suite can run it too.
import { randomBytes } from 'node:crypto';
import { KvwireError } from '../../lib/errors.js';
import { TUNING_LIMITS } from '../../lib/transport/agent-options.js';
import { KvLayout } from '../../lib/kv/index.js';
import {
  DecodeCoordinator,
  PrefillCoordinator,
  decodeLeaseMessage,
  encodeLeaseMessage,
  parseKvTransferParams,
  registerKvCache,
} from '../../lib/pd/index.js';
import {
  Agent,
  cuda,
  decodeDeviceKey,
  decodeMetadata,
  encodeDeviceKey,
  encodeMetadata,
} from '../../lib/transport/index.js';

/** Values no argument of the API should choke on. */
export const HOSTILE: readonly unknown[] = [
  undefined,
  null,
  0,
  -1,
  Number.NaN,
  1.5,
  1e12,
  '',
  'x',
  true,
  {},
  [],
  [null],
  [{}],
  Symbol('s'),
  10n,
  () => {},
  { region: null },
  { signal: {} },
  { timeoutMs: 'x' },
  new Uint8Array(3),
  Object.create(null),
];

/** Quotes a hostile value in a failure line. */
export function show(v: unknown): string {
  if (typeof v === 'symbol') return 'Symbol()';
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return 'an object';
  }
}

/** Collects calls that failed with anything but a KvwireError, or did not settle. */
export class Sweep {
  readonly untyped: string[] = [];
  calls = 0;

  /** @param hangMs - how long one call may take before it counts as hung (generous: busy machines). */
  constructor(readonly hangMs = 10_000) {}

  /** Runs `f`, awaiting what it returns; records it when it throws or rejects untyped, or hangs. */
  async probe(name: string, f: () => unknown): Promise<void> {
    this.calls++;
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = f();
      if (r instanceof Promise) {
        const hung = new Promise<'hung'>((resolve) => {
          timer = setTimeout(() => resolve('hung'), this.hangMs);
        });
        if ((await Promise.race([r, hung])) === 'hung')
          this.untyped.push(`${name}: did not settle within ${this.hangMs} ms`);
      }
    } catch (e) {
      if (!(e instanceof KvwireError)) {
        this.untyped.push(`${name}: ${(e as Error)?.constructor?.name ?? typeof e}: ${(e as Error)?.message}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

const AGENT_KEYS = ['name', 'engine', 'transports', 'defaultTimeoutMs', 'protocol', 'keepAlive', 'cuda', 'tuning'];
const TUNING_KEYS = Object.keys(TUNING_LIMITS); // every documented tuning value

/** Agent.create with every option hostile in turn. */
export async function sweepAgentCreate(s: Sweep, engine: 'ucx' | 'loopback'): Promise<void> {
  for (const v of HOSTILE) {
    await s.probe(`Agent.create(${show(v)})`, async () => (await Agent.create(v as never)).close());
    for (const k of AGENT_KEYS) {
      await s.probe(`Agent.create({ ${k}: ${show(v)} })`, async () =>
        (await Agent.create({ engine, [k]: v } as never)).close(),
      );
    }
    for (const k of TUNING_KEYS) {
      await s.probe(`Agent.create({ tuning: { ${k}: ${show(v)} } })`, async () =>
        (await Agent.create({ engine, tuning: { [k]: v } } as never)).close(),
      );
    }
    for (const k of ['path', 'stagingChunkBytes', 'stagingBuffers']) {
      await s.probe(`Agent.create({ cuda: { ${k}: ${show(v)} } })`, async () =>
        (await Agent.create({ engine, cuda: { [k]: v } } as never)).close(),
      );
    }
  }
}

/** Every method of a connected pair of agents, and the free functions of lib/transport. */
export async function sweepTransport(s: Sweep, engine: 'ucx' | 'loopback'): Promise<void> {
  const a = await Agent.create({ engine, name: 'sweep-a' });
  const b = await Agent.create({ engine, name: 'sweep-b' });
  try {
    b.register(Buffer.alloc(4096), { access: 'readwrite', label: 'kv' });
    const ra = a.register(Buffer.alloc(4096), { label: 'dst' });
    const peer = await a.connect(b.metadata());
    const kv = peer.region('kv');
    const local = [{ region: ra, offset: 0, length: 16 }];
    const remote = [{ region: kv, offset: 0, length: 16 }];
    const column = (regions: unknown) => ({
      regions,
      region: new Uint32Array(1),
      offset: new Float64Array(1),
      length: new Float64Array([16]),
    });
    for (const v of HOSTILE) {
      const x = show(v);
      await s.probe(`register(${x})`, () => a.register(v as never));
      await s.probe(`register(buffer, ${x})`, () => a.register(Buffer.alloc(8), v as never));
      await s.probe(`register(buffer, { access: ${x} })`, () => a.register(Buffer.alloc(8), { access: v } as never));
      await s.probe(`register(buffer, { label: ${x} })`, () => a.register(Buffer.alloc(8), { label: v } as never));
      if (v !== 1e12) await s.probe(`allocate(${x})`, () => a.allocate(v as never));
      await s.probe(`allocate(8, ${x})`, () => a.allocate(8, v as never));
      await s.probe(`deregister(${x})`, () => a.deregister(v as never));
      await s.probe(`connect(${x})`, () => a.connect(v as never));
      await s.probe(`connect(metadata, ${x})`, () => a.connect(b.metadata(), v as never));
      await s.probe(`connect(metadata, { timeoutMs: ${x} })`, () =>
        a.connect(b.metadata(), { timeoutMs: v } as never).then((p) => p.disconnect()),
      );
      await s.probe(`connect(metadata, { signal: ${x} })`, () =>
        a.connect(b.metadata(), { signal: v } as never).then((p) => p.disconnect()),
      );
      for (const op of ['read', 'write'] as const) {
        await s.probe(`${op}(${x}, local, remote)`, () => a[op](v as never, local, remote));
        await s.probe(`${op}(peer, ${x}, ${x})`, () => a[op](peer, v as never, v as never));
        await s.probe(`${op}(peer, ${x}, remote)`, () => a[op](peer, v as never, remote));
        await s.probe(`${op}(peer, [${x}], [${x}])`, () => a[op](peer, [v] as never, [v] as never));
        await s.probe(`${op}(peer, local, remote, ${x})`, () => a[op](peer, local, remote, v as never).done);
        for (const k of ['notify', 'timeoutMs', 'signal', 'coalesce']) {
          await s.probe(
            `${op}(peer, local, remote, { ${k}: ${x} })`,
            () => a[op](peer, local, remote, { [k]: v } as never).done,
          );
        }
        await s.probe(`${op}(peer, [{ region, offset: ${x} }])`, () =>
          a[op](peer, [{ region: ra, offset: v, length: 16 }] as never, remote),
        );
        await s.probe(`${op}(peer, [{ region, length: ${x} }])`, () =>
          a[op](peer, [{ region: ra, offset: 0, length: v }] as never, [{ region: kv, offset: 0, length: v }] as never),
        );
        await s.probe(`${op}(peer, columns with regions ${x})`, () =>
          a[op](peer, column(v) as never, column([kv]) as never),
        );
        await s.probe(`${op}(peer, columns with count ${x})`, () =>
          a[op](peer, { ...column([ra]), count: v } as never, column([kv]) as never),
        );
      }
      await s.probe(`prepare(peer, ${x}, ${x})`, () => a.prepare(peer, v as never, v as never));
      const prepared = a.prepare(peer, local, remote);
      await s.probe(`prepared.read(${x})`, () => prepared.read(v as never).done);
      await s.probe(`prepared.read([${x}])`, () => prepared.read([v] as never).done);
      await s.probe(`prepared.read(undefined, ${x})`, () => prepared.read(undefined, v as never).done);
      await s.probe(`prepared.post(${x})`, () => prepared.post(v as never).done);
      await s.probe(`notifications(${x})`, () => a.notifications(v as never).return?.());
      await s.probe(`waitForNotification(${x}, { timeoutMs: 1 })`, () =>
        a.waitForNotification(v as never, { timeoutMs: 1 }),
      );
      await s.probe(`waitForNotification('never', ${x})`, () =>
        Promise.race([a.waitForNotification('never', v as never), new Promise((r) => setTimeout(r, 2))]),
      );
      await s.probe(`peer.region(${x})`, () => peer.region(v as never));
      await s.probe(`peer.notify(${x})`, () => peer.notify(v as never));
      await s.probe(`decodeMetadata(${x})`, () => decodeMetadata(v));
      await s.probe(`encodeMetadata(${x})`, () => encodeMetadata(v as never));
      await s.probe(`decodeDeviceKey(${x})`, () => decodeDeviceKey(v as never));
      await s.probe(`encodeDeviceKey(${x})`, () => encodeDeviceKey(v as never));
      await s.probe(`cuda.alloc(${x}, 4096)`, () => cuda.alloc(v as never, 4096));
      await s.probe(`cuda.alloc(0, ${x})`, () => cuda.alloc(0, v as never));
    }
    const t = a.read(peer, local, remote);
    for (const v of HOSTILE) await s.probe(`transfer.cancel(${show(v)})`, () => t.cancel(v as never));
    await t.done.catch(() => {});
    // A predicate that throws fails its own wait (typed), and notifications still arrive.
    const back = await b.connect(a.metadata());
    await s.probe('waitForNotification(throwing predicate)', () =>
      Promise.all([
        a.waitForNotification(() => {
          throw Object.create(null);
        }),
        back.notify('n'),
      ]),
    );
    await s.probe('waitForNotification after a throwing predicate', () =>
      Promise.all([a.waitForNotification('m', { timeoutMs: 5000 }), back.notify('m')]),
    );
  } finally {
    await s.probe('close()', () => a.close());
    await s.probe('close()', () => b.close());
  }
}

/** The coordinators of lib/pd and their free functions. */
export async function sweepPd(s: Sweep): Promise<void> {
  const layout = new KvLayout({
    model: { attention: 'mha', layers: 1, kvHeads: 1, headDim: 8, dtype: 'bf16' },
    numBlocks: 8,
    blockTokens: 16,
  });
  const secret = randomBytes(32).toString('hex');
  const pa = await Agent.create({ engine: 'loopback', name: 'sweep-prefill', auth: { secret } });
  const da = await Agent.create({ engine: 'loopback', name: 'sweep-decode', auth: { secret } });
  const prefill = await PrefillCoordinator.create({
    engineId: 'sweep-prefill',
    ranks: [registerKvCache(pa, layout, { access: 'read' })],
    secret,
  });
  const decode = await DecodeCoordinator.create({
    engineId: 'sweep-decode',
    ranks: [registerKvCache(da, layout)],
    secret,
  });
  try {
    for (const v of HOSTILE) {
      const x = show(v);
      await s.probe(`registerKvCache(agent, ${x})`, () => registerKvCache(pa, v as never));
      await s.probe(`registerKvCache(${x}, layout)`, () => registerKvCache(v as never, layout));
      await s.probe(`PrefillCoordinator.create(${x})`, () => PrefillCoordinator.create(v as never));
      await s.probe(`DecodeCoordinator.create(${x})`, () => DecodeCoordinator.create(v as never));
      await s.probe(`prefill.hold(${x})`, () => prefill.hold(v as never));
      for (const k of ['requestId', 'blockIds', 'leaseMs', 'signal']) {
        await s.probe(`prefill.hold({ ${k}: ${x} })`, () =>
          prefill.hold({ requestId: `r-${s.calls}`, blockIds: [1], [k]: v } as never),
        );
      }
      await s.probe(`prefill.release(${x})`, () => prefill.release(v as never));
      await s.probe(`decode.pull(${x})`, () => decode.pull(v as never));
      for (const k of [
        'requestId',
        'kvTransferParams',
        'cachedPrefixBlocks',
        'localBlockIds',
        'policy',
        'signal',
        'timeoutMs',
      ]) {
        await s.probe(`decode.pull({ ${k}: ${x} })`, () =>
          decode.pull({ requestId: 'p', kvTransferParams: {}, localBlockIds: [], [k]: v } as never),
        );
      }
      await s.probe(`parseKvTransferParams(${x})`, () => parseKvTransferParams(v));
      await s.probe(`decodeLeaseMessage(${x})`, () => decodeLeaseMessage(v as never));
      await s.probe(`encodeLeaseMessage(${x})`, () => encodeLeaseMessage(v as never));
    }
  } finally {
    await s.probe('decode.close()', () => decode.close());
    await s.probe('prefill.close()', () => prefill.close());
    await pa.close();
    await da.close();
  }
}
