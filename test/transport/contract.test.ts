// The transport contract, run against both engines in one process: the loopback engine (the CI
// mock) and the UCX engine (two agents of one process still talk through UCX: shared memory or
// tcp). Both must behave the same at this contract: same results, same errors.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, KvwireError } from '../../lib/index.js';
import type { EngineKind, Peer, Region, TransferOptions } from '../../lib/index.js';
import { fill, expectCode, expectRejectCode } from './helpers.js';

const engines: { engine: EngineKind; transports?: string }[] = [
  { engine: 'loopback' },
  { engine: 'ucx', transports: 'tcp' },
  { engine: 'ucx', transports: 'sm' },
];

describe.each(engines)('transport contract: $engine $transports', ({ engine, transports }) => {
  let target: Agent;
  let initiator: Agent;
  let src: Buffer;
  let dst: Buffer;
  let remote: Region;
  let local: Region;
  let peer: Peer;

  beforeEach(async () => {
    target = await Agent.create({ name: 'target', engine, ...(transports ? { transports } : {}) });
    initiator = await Agent.create({ name: 'initiator', engine, ...(transports ? { transports } : {}) });
    src = fill(Buffer.alloc(1 << 20), 7);
    dst = Buffer.alloc(1 << 20);
    remote = target.register(src, { access: 'readwrite', label: 'kv' });
    target.register(Buffer.alloc(4096), { access: 'read', label: 'ro' });
    local = initiator.register(dst, { label: 'local' });
    peer = await initiator.connect(target.metadata());
  });

  afterEach(async () => {
    await initiator.close();
    await target.close();
  });

  it('connects and describes the peer', () => {
    expect(peer.name).toBe('target');
    expect(peer.state).toBe('connected');
    expect(peer.regions.map((r) => r.label).sort()).toEqual(['kv', 'ro']);
    expect(peer.region('kv').length).toBe(1 << 20);
    if (engine === 'ucx') expect(peer.transport).toBe(transports);
    else expect(peer.transport).toBe('loopback');
    expectCode(() => peer.region('nope'), ErrorCode.UNKNOWN_REGION);
  });

  it('READs many descriptors, every byte in place', async () => {
    const n = 100;
    const l = [];
    const r = [];
    for (let i = 0; i < n; i++) {
      const len = 1000 + i * 37;
      l.push({ region: local, offset: i * 9000, length: len });
      r.push({ region: peer.region('kv'), offset: (n - 1 - i) * 9500 + 3, length: len });
    }
    const t = initiator.read(peer, l, r);
    const stats = await t.done;
    await t.quiesced;
    expect(t.status).toBe('done');
    expect(stats.descriptors).toBe(n);
    expect(stats.bytes).toBe(l.reduce((s, d) => s + d.length, 0));
    for (let i = 0; i < n; i++) {
      expect(
        dst
          .subarray(l[i]!.offset, l[i]!.offset + l[i]!.length)
          .equals(src.subarray(r[i]!.offset, r[i]!.offset + r[i]!.length)),
      ).toBe(true);
    }
  });

  it('WRITEs many descriptors, every byte in place and nothing else touched', async () => {
    fill(dst, 99);
    const before = Buffer.from(src);
    const n = 64;
    const l = [];
    const r = [];
    for (let i = 0; i < n; i++) {
      l.push({ region: local, offset: i * 16384, length: 8192 });
      r.push({ region: peer.region('kv'), offset: i * 16384 + 100, length: 8192 });
    }
    await initiator.write(peer, l, r).done;
    const expected = Buffer.from(before);
    for (let i = 0; i < n; i++) dst.copy(expected, i * 16384 + 100, i * 16384, i * 16384 + 8192);
    expect(src.equals(expected)).toBe(true);
  });

  it('delivers a WRITE notification only after the bytes are in place', async () => {
    fill(dst, 3);
    const seen = new Promise<boolean>((resolve) => {
      target.once('notification', (n) => {
        expect(n.from).toBe('initiator');
        expect(n.message.toString()).toBe('written');
        resolve(src.subarray(0, 65536).equals(dst.subarray(0, 65536)));
      });
    });
    await initiator.write(
      peer,
      [{ region: local, offset: 0, length: 65536 }],
      [{ region: peer.region('kv'), offset: 0, length: 65536 }],
      { notify: 'written' },
    ).done;
    expect(await seen).toBe(true);
  });

  it('delivers a READ notification to the target after the bytes landed here', async () => {
    const seen = target
      .waitForNotification('read-done', { timeoutMs: 10_000 })
      .then(() => dst.subarray(0, 300000).equals(src.subarray(0, 300000)));
    await initiator.read(
      peer,
      [{ region: local, offset: 0, length: 300000 }],
      [{ region: peer.region('kv'), offset: 0, length: 300000 }],
      { notify: 'read-done' },
    ).done;
    expect(await seen).toBe(true);
  });

  it('sends notifications alone, in order, to listeners and iterators', async () => {
    const it = target.notifications();
    for (let i = 0; i < 20; i++) await peer.notify(`n${i}`);
    const got: string[] = [];
    for await (const n of it) {
      got.push(n.message.toString());
      if (got.length === 20) break;
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `n${i}`));
  });

  it('coalesces contiguous descriptors and accepts columns', async () => {
    const n = 32;
    const cols = {
      regions: [local],
      region: new Uint32Array(n),
      offset: Float64Array.from({ length: n }, (_, i) => i * 4096),
      length: new Float64Array(n).fill(4096),
    };
    const rcols = {
      ...cols,
      regions: [peer.region('kv')],
      offset: Float64Array.from({ length: n }, (_, i) => 4096 * 8 + i * 4096),
    };
    const t = initiator.read(peer, cols, rcols);
    expect(t.postedDescriptors).toBe(1);
    expect(t.descriptors).toBe(n);
    await t.done;
    expect(dst.subarray(0, n * 4096).equals(src.subarray(4096 * 8, 4096 * 8 + n * 4096))).toBe(true);
  });

  it('names the first descriptor that uses a bad entry of a columns region table', () => {
    const n = 8;
    const cols = {
      regions: [local, remote], // entry 1 is the target's region, first used by descriptor 5
      region: Uint32Array.from({ length: n }, (_, i) => (i >= 5 ? 1 : 0)),
      offset: Float64Array.from({ length: n }, (_, i) => i * 4096),
      length: new Float64Array(n).fill(4096),
    };
    const rcols = { ...cols, regions: [peer.region('kv')], region: new Uint32Array(n) };
    const e = expectCode(
      () => initiator.read(peer, cols, rcols),
      ErrorCode.INVALID_ARGUMENT,
      /descriptor 5: the local region is not a Region of this agent/,
    );
    expect(e.details.index).toBe(5);
  });

  it('posts prepared lists by index, many times', async () => {
    const l = Array.from({ length: 16 }, (_, i) => ({ region: local, offset: i * 65536, length: 65536 }));
    const r = Array.from({ length: 16 }, (_, i) => ({
      region: peer.region('kv'),
      offset: (15 - i) * 65536,
      length: 65536,
    }));
    const p = initiator.prepare(peer, l, r);
    expect(p.length).toBe(16);
    for (const idx of [[0, 1, 2], [15], [3, 9, 4]]) {
      dst.fill(0);
      await p.read(idx).done;
      for (const i of idx)
        expect(dst.subarray(i * 65536, (i + 1) * 65536).equals(src.subarray((15 - i) * 65536, (16 - i) * 65536))).toBe(
          true,
        );
    }
    await p.read().done;
    expectCode(() => p.read([16]), ErrorCode.OUT_OF_BOUNDS);
    expectCode(() => p.read([1.5]), ErrorCode.OUT_OF_BOUNDS);
  });

  it('checks one options object again after it changed (posts with one object are checked once)', async () => {
    const p = initiator.prepare(
      peer,
      [
        { region: local, offset: 0, length: 4096 },
        { region: local, offset: 4096, length: 4096 },
      ],
      [
        { region: peer.region('kv'), offset: 0, length: 4096 },
        { region: peer.region('kv'), offset: 4096, length: 4096 },
      ],
    );
    const opts: { timeoutMs?: unknown; coalesce?: unknown; notify?: unknown } = { timeoutMs: 5000, coalesce: false };
    expect((await p.read(undefined, opts as TransferOptions).done).postedDescriptors).toBe(2);
    expect((await p.read(undefined, opts as TransferOptions).done).postedDescriptors).toBe(2);
    opts.coalesce = true;
    expect((await p.read(undefined, opts as TransferOptions).done).postedDescriptors).toBe(1);
    opts.timeoutMs = -1;
    expectCode(() => p.read(undefined, opts as TransferOptions), ErrorCode.INVALID_ARGUMENT);
    opts.timeoutMs = 5000;
    await p.read(undefined, opts as TransferOptions).done;
    opts.coalesce = 'yes';
    expectCode(() => p.read(undefined, opts as TransferOptions), ErrorCode.INVALID_ARGUMENT);
    opts.coalesce = false;
    await p.read(undefined, opts as TransferOptions).done;
    opts.notify = 42;
    expectCode(() => p.read(undefined, opts as TransferOptions), ErrorCode.INVALID_ARGUMENT);
    // And no options at all: the defaults (coalesced, the agent's deadline).
    expect((await p.read().done).postedDescriptors).toBe(1);
  });

  it('posts subsets of changing sizes back to back, coalesced or not, each with its own bytes', async () => {
    // The rows of each post share one array (lib/transport/descriptors.ts RowScratch): a post must
    // never see the rows of the one before it, whatever their counts.
    const l = Array.from({ length: 8 }, (_, i) => ({ region: local, offset: i * 4096, length: 4096 }));
    const r = Array.from({ length: 8 }, (_, i) => ({
      region: peer.region('kv'),
      offset: (i + 3) * 4096,
      length: 4096,
    }));
    const p = initiator.prepare(peer, l, r);
    const cases: [number[], boolean][] = [
      [[0, 1, 2, 3, 4, 5, 6, 7], true], // one coalesced row
      [[5], false],
      [[7, 2, 3], true], // two rows
      [[1, 0], false],
      [[6, 7], true],
    ];
    for (const [idx, coalesce] of cases) {
      dst.fill(0);
      const t = p.read(idx, { coalesce });
      const stats = await t.done;
      expect(t.stats).toBe(stats);
      await t.quiesced;
      expect(stats.descriptors).toBe(idx.length);
      for (let i = 0; i < 8; i++) {
        const got = dst.subarray(i * 4096, (i + 1) * 4096);
        const want = idx.includes(i) ? src.subarray((i + 3) * 4096, (i + 4) * 4096) : Buffer.alloc(4096);
        expect(got.equals(want)).toBe(true);
      }
    }
  });

  it('never lets a failure nobody awaited reach the process; done still rejects when asked later', async () => {
    const t = initiator.read(
      peer,
      [{ region: local, offset: 0, length: 65536 }],
      [{ region: peer.region('kv'), offset: 0, length: 65536 }],
    );
    // Completed inside read() over shared memory; elsewhere still pending, so cancel it untouched.
    if (t.status === 'pending') {
      t.cancel('test');
      expect(t.status).toBe('cancelled');
      await new Promise((r) => setTimeout(r, 20)); // an unhandled rejection would surface here
      await expect(t.done).rejects.toMatchObject({ code: ErrorCode.CANCELLED });
      expect(t.stats).toBeUndefined();
      await t.quiesced;
    } else {
      expect(t.stats).toBeDefined();
    }
  });

  it('refuses bad descriptors before posting anything', () => {
    const kv = peer.region('kv');
    expectCode(
      () =>
        initiator.read(
          peer,
          [{ region: local, offset: (1 << 20) - 10, length: 20 }],
          [{ region: kv, offset: 0, length: 20 }],
        ),
      ErrorCode.OUT_OF_BOUNDS,
      /descriptor 0 reaches byte 1,048,586 of local region 'local'/,
    );
    expectCode(
      () =>
        initiator.read(peer, [{ region: local, offset: 0, length: 20 }], [{ region: kv, offset: 1 << 20, length: 20 }]),
      ErrorCode.OUT_OF_BOUNDS,
      /region 'kv'/,
    );
    expectCode(
      () =>
        initiator.write(
          peer,
          [{ region: local, offset: 0, length: 20 }],
          [{ region: peer.region('ro'), offset: 0, length: 20 }],
        ),
      ErrorCode.ACCESS_DENIED,
      /allows read access/,
    );
    expectCode(() => initiator.read(peer, [{ region: local, offset: 0, length: 20 }], []), ErrorCode.INVALID_ARGUMENT);
    expectCode(
      () => initiator.read(peer, [{ region: local, offset: -1, length: 20 }], [{ region: kv, offset: 0, length: 20 }]),
      ErrorCode.INVALID_ARGUMENT,
    );
    expectCode(
      () => initiator.read(peer, [{ region: local, offset: 0, length: 0 }], [{ region: kv, offset: 0, length: 0 }]),
      ErrorCode.INVALID_ARGUMENT,
    );
    expectCode(
      () => initiator.read(peer, [{ region: local, offset: 0, length: 10 }], [{ region: kv, offset: 0, length: 12 }]),
      ErrorCode.INVALID_ARGUMENT,
      /differs/,
    );
    expectCode(
      () => initiator.read(peer, [{ region: remote, offset: 0, length: 10 }], [{ region: kv, offset: 0, length: 10 }]),
      ErrorCode.INVALID_ARGUMENT,
      /not a Region of this agent/,
    );
    expectCode(
      () =>
        initiator.read(peer, [{ region: local, offset: 0, length: 10 }], [{ region: kv, offset: 0, length: 10 }], {
          notify: Buffer.alloc((1 << 20) + 1),
        }),
      ErrorCode.INVALID_ARGUMENT,
    );
    expectCode(
      () =>
        initiator.read(peer, [{ region: local, offset: 0, length: 10 }], [{ region: kv, offset: 0, length: 10 }], {
          timeoutMs: -5,
        }),
      ErrorCode.INVALID_ARGUMENT,
    );
  });

  it('refuses a deregistered local region, and a region still in use', async () => {
    const extra = initiator.register(Buffer.alloc(1 << 20), { label: 'extra' });
    const t = initiator.read(
      peer,
      [{ region: extra, offset: 0, length: 1 << 20 }],
      [{ region: peer.region('kv'), offset: 0, length: 1 << 20 }],
    );
    if (t.pending) {
      try {
        extra.deregister();
      } catch (e) {
        expect((e as KvwireError).code).toBe(ErrorCode.REGION_BUSY);
      }
    }
    await t.done;
    extra.deregister();
    await extra.released;
    expect(extra.registered).toBe(false);
    expectCode(
      () =>
        initiator.read(
          peer,
          [{ region: extra, offset: 0, length: 10 }],
          [{ region: peer.region('kv'), offset: 0, length: 10 }],
        ),
      ErrorCode.DEREGISTERED,
    );
  });

  it('fails transfers to a region the target deregistered', async () => {
    const kv = peer.region('kv');
    remote.deregister();
    await new Promise((r) => setTimeout(r, 100)); // the revocation travels to the initiator
    let code: string | undefined;
    try {
      await initiator.write(
        peer,
        [{ region: local, offset: 0, length: 4096 }],
        [{ region: kv, offset: 0, length: 4096 }],
      ).done;
    } catch (e) {
      code = (e as KvwireError).code;
    }
    expect(code).toBe(ErrorCode.DEREGISTERED);
    expect(kv.revoked).toBe(true);
  });

  it('refuses bad metadata with ERR_KVWIRE_BAD_METADATA', async () => {
    const md = target.metadata();
    await expectRejectCode(
      initiator.connect(md.subarray(0, md.length - 1)),
      ErrorCode.BAD_METADATA,
      /truncated|declared size/,
    );
    const flipped = Buffer.from(md);
    flipped[md.length - 3] ^= 0x40;
    await expectRejectCode(initiator.connect(flipped), ErrorCode.BAD_METADATA, /checksum/);
    await expectRejectCode(initiator.connect(Buffer.from('not metadata at all, just bytes')), ErrorCode.BAD_METADATA);
    await expectRejectCode(initiator.connect('text' as unknown as Uint8Array), ErrorCode.BAD_METADATA);
    const other = await Agent.create({
      engine: engine === 'loopback' ? 'ucx' : 'loopback',
      ...(transports ? { transports } : {}),
    });
    await expectRejectCode(initiator.connect(other.metadata()), ErrorCode.BAD_METADATA, /engine/);
    await other.close();
  });

  it('cancels a transfer, and an aborted signal cancels it too', async () => {
    initiator.faults?.set({ delayMs: 200 });
    // 4 MiB: above the inline budget (tuning.inlineBytes, 1 MiB), so over sm it is still pending
    // when read() returns (the engine thread moves it) and can be cancelled.
    const lr = initiator.register(Buffer.alloc(4 << 20), { label: 'big-local' });
    target.register(Buffer.alloc(4 << 20), { label: 'big-remote', access: 'readwrite' });
    const p2 = await initiator.connect(target.metadata());
    const big = { region: lr, offset: 0, length: 4 << 20 };
    const kv = { region: p2.region('big-remote'), offset: 0, length: 4 << 20 };
    const t = initiator.read(p2, [big], [kv]);
    t.cancel();
    await expectRejectCode(t.done, ErrorCode.CANCELLED);
    expect(t.status).toBe('cancelled');
    await t.quiesced; // the engine reports when nothing of it runs any more
    const ac = new AbortController();
    const t2 = initiator.read(p2, [big], [kv], { signal: ac.signal });
    ac.abort();
    await expectRejectCode(t2.done, ErrorCode.CANCELLED);
    initiator.faults?.clear();
    await initiator.read(p2, [big], [kv]).done; // still usable
  });

  it('times out at the deadline with ERR_KVWIRE_TIMEOUT', async () => {
    if (engine === 'loopback') initiator.faults!.set({ stall: true });
    // UCX: 64 MiB in 1 ms cannot make it over any transport here.
    const big = Buffer.alloc(64 << 20);
    const lr = initiator.register(big, { label: 'big' });
    const tr = target.register(Buffer.alloc(64 << 20), { label: 'bigr', access: 'readwrite' });
    void tr;
    const p2 = await initiator.connect(target.metadata());
    const len = engine === 'loopback' ? 4096 : 64 << 20;
    const t = initiator.read(
      p2,
      [{ region: lr, offset: 0, length: len }],
      [{ region: p2.region('bigr'), offset: 0, length: len }],
      { timeoutMs: 1 },
    );
    await expectRejectCode(t.done, ErrorCode.TIMEOUT, /within 1 ms/);
    initiator.faults?.clear();
  });

  it('fails transfers in flight with ERR_KVWIRE_CLOSED when the agent closes', async () => {
    initiator.faults?.set({ delayMs: 500 });
    const t = initiator.read(
      peer,
      [{ region: local, offset: 0, length: 1 << 20 }],
      [{ region: peer.region('kv'), offset: 0, length: 1 << 20 }],
    );
    await initiator.close();
    if (t.status !== 'done') await expectRejectCode(t.done, ErrorCode.CLOSED);
    expect(initiator.closed).toBe(true);
    expectCode(() => initiator.register(Buffer.alloc(10)), ErrorCode.CLOSED);
    await expectRejectCode(initiator.connect(target.metadata()), ErrorCode.CLOSED);
  });

  it('closes asynchronously: refuses calls at once, settles every transfer before it resolves, once', async () => {
    initiator.faults?.set({ delayMs: 500 });
    const part = (1 << 20) / 8;
    const transfers = Array.from({ length: 8 }, (_, i) =>
      (i % 2 ? initiator.write : initiator.read).call(
        initiator,
        peer,
        [{ region: local, offset: i * part, length: part }],
        [{ region: peer.region('kv'), offset: i * part, length: part }],
      ),
    );
    let emitted = 0;
    initiator.on('close', () => emitted++);
    const closing = initiator.close();
    expect(initiator.close()).toBe(closing); // a second call: the same promise
    expect(initiator.closed).toBe(true);
    expectCode(() => initiator.register(Buffer.alloc(10)), ErrorCode.CLOSED);
    expectCode(
      () =>
        initiator.read(
          peer,
          [{ region: local, offset: 0, length: 10 }],
          [{ region: peer.region('kv'), offset: 0, length: 10 }],
        ),
      ErrorCode.CLOSED,
    );
    expect(emitted).toBe(0); // 'close' only once the engine has stopped
    await closing;
    expect(emitted).toBe(1);
    for (const t of transfers) {
      expect(t.status).not.toBe('pending'); // settled before close() resolved
      if (t.status !== 'done') await expectRejectCode(t.done, ErrorCode.CLOSED);
    }
    await initiator.close(); // and after it resolved
    expect(emitted).toBe(1);
  });

  it('rejects a connect in progress with ERR_KVWIRE_CLOSED when the agent closes', async () => {
    const other = await Agent.create({ name: 'other', engine, ...(transports ? { transports } : {}) });
    try {
      const connecting = initiator.connect(other.metadata());
      const closing = initiator.close();
      await expectRejectCode(connecting, ErrorCode.CLOSED);
      await closing;
    } finally {
      await other.close();
    }
  });

  it('tells the initiator when the target closes', async () => {
    const lost = new Promise<KvwireError>((resolve) => initiator.once('peer-lost', (_p, e) => resolve(e)));
    await target.close();
    const e = await lost;
    expect(e.code).toBe(ErrorCode.PEER_LOST);
    expect(peer.state).toBe('lost');
    expectCode(
      () =>
        initiator.read(
          peer,
          [{ region: local, offset: 0, length: 10 }],
          [{ region: peer.region('kv'), offset: 0, length: 10 }],
        ),
      ErrorCode.PEER_LOST,
    );
  });

  it('validates registration', () => {
    expectCode(() => target.register(Buffer.alloc(0)), ErrorCode.INVALID_ARGUMENT, /empty/);
    expectCode(() => target.register(Buffer.alloc(8), { access: 'rw' as never }), ErrorCode.INVALID_ARGUMENT);
    expectCode(
      () => target.register(Buffer.alloc(8), { label: 'kv' }),
      ErrorCode.INVALID_ARGUMENT,
      /already registered/,
    );
    expectCode(() => target.register('nope' as never), ErrorCode.INVALID_ARGUMENT);
    const r = target.register(new Float32Array(new ArrayBuffer(64), 16, 4), { label: 'view' });
    expect(r.length).toBe(16);
  });
});

describe('UCX engine tuning', () => {
  it.each([-1, 1.5, Number.NaN, '64K'])('refuses tuning.batchBelow %s with ERR_KVWIRE_INVALID_ARGUMENT', async (v) => {
    await expect(Agent.create({ engine: 'ucx', tuning: { batchBelow: v as number } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      message: expect.stringMatching(/tuning\.batchBelow must be an integer from 0 to 33,554,432/),
    });
  });
});
