// The engine's own checks of a posted transfer (native/engine/submit.cc, UcxEngine::Submit), below
// lib/transport's: the addon is callable on its own, and a region can go between the library's
// checks and the post. Reached by calling the native engine's post() with descriptors the library
// would have refused; every refusal is a KvwireError with its code and a message naming the
// descriptor, and nothing moves. A valid post through the same call still works afterwards.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Agent, ErrorCode } from '../../lib/index.js';
import { loadNative } from '../../lib/native.js';
import { NativeEngine } from '../../lib/transport/native-engine.js';
import { expectCode } from './helpers.js';

const native = loadNative();

describe.runIf(native?.hasUcx === true)('the native engine refuses what its own checks refuse', () => {
  const agents: Agent[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const a of agents.splice(0)) await a.close();
  });

  /** Two connected agents, and the initiator's raw engine post() (found through a valid READ). */
  async function rawPost() {
    const a = await Agent.create({ engine: 'ucx', name: 'submit-a' });
    const b = await Agent.create({ engine: 'ucx', name: 'submit-b' });
    agents.push(a, b);
    b.register(Buffer.alloc(8192, 0x5a), { access: 'readwrite', label: 'kv' });
    b.register(Buffer.alloc(4096), { access: 'read', label: 'ro' });
    const mine = Buffer.alloc(8192);
    const local = a.register(mine, { label: 'dst' });
    const peer = await a.connect(b.metadata());
    const spy = vi.spyOn(NativeEngine.prototype, 'post');
    const kv = peer.region('kv');
    await a.read(peer, [{ region: local, offset: 4096, length: 64 }], [{ region: kv, offset: 0, length: 64 }]).done;
    expect(spy).toHaveBeenCalledTimes(1);
    const engine = spy.mock.contexts[0] as NativeEngine;
    const peerId = spy.mock.calls[0]![2];
    let nextId = 1_000_000; // ids the library never uses: their completions are ignored
    const post = (op: 0 | 1, d: number[], notify: Uint8Array | null = null, toPeer = peerId) =>
      engine.post(nextId++, op, toPeer, Float64Array.from(d), notify, 5000, true);
    return { post, lid: local.id, kvId: kv.id, roId: peer.region('ro').id, mine, local };
  }

  it('names the descriptor and the reason, with the same codes as the library', async () => {
    const { post, lid, kvId, roId } = await rawPost();
    const ok = [lid, 0, kvId, 0, 64];
    const { UNKNOWN_REGION, OUT_OF_BOUNDS, ACCESS_DENIED, DEREGISTERED, INVALID_ARGUMENT, CLOSED } = ErrorCode;
    expectCode(() => post(0, [...ok, lid, 0, 999, 0, 64]), UNKNOWN_REGION, /^descriptor 1: unknown remote region$/);
    expectCode(() => post(0, [lid, 0, kvId, 8190, 64]), OUT_OF_BOUNDS, /^descriptor 0 is out of bounds$/);
    expectCode(() => post(0, [lid, 8190, kvId, 0, 64]), OUT_OF_BOUNDS, /^descriptor 0 is out of bounds$/);
    expectCode(() => post(0, [lid, 0, kvId, 0, 0]), OUT_OF_BOUNDS, /^descriptor 0 is out of bounds$/);
    expectCode(() => post(1, [...ok, lid, 0, roId, 0, 16]), ACCESS_DENIED, /^descriptor 1: access denied$/);
    expectCode(() => post(0, [...ok, lid + 50, 0, kvId, 0, 64]), DEREGISTERED, /^descriptor 1: local region was/);
    expectCode(() => post(0, [lid, 0.5, kvId, 0, 64]), INVALID_ARGUMENT, /^descriptor 0 has a non-integer field$/);
    expectCode(() => post(0, ok, new Uint8Array((1 << 20) + 1)), INVALID_ARGUMENT, /^notification larger than 1 MiB$/);
    expectCode(() => post(0, ok, null, 4242), CLOSED, /^the peer is disconnected$/);
  });

  it('moves nothing when it refuses, holds no region after, and still posts a valid transfer', async () => {
    const { post, lid, kvId, mine, local } = await rawPost();
    mine.fill(0);
    // The first descriptor is valid (and small enough to copy inline); the second fails: nothing moves.
    expectCode(() => post(0, [lid, 0, kvId, 0, 64, lid, 0, 999, 0, 64]), ErrorCode.UNKNOWN_REGION);
    expect(mine.subarray(0, 64).every((x) => x === 0)).toBe(true);
    if (!post(0, [lid, 0, kvId, 0, 64])) await new Promise((r) => setTimeout(r, 500)); // queued: let it land
    expect(mine.subarray(0, 64).every((x) => x === 0x5a)).toBe(true);
    // Neither the refused posts nor the completed one left the region in use: it deregisters at once.
    local.deregister();
    expect(local.registered).toBe(false);
  });
});
