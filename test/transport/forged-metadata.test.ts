// A peer holding an agent's metadata must reach nothing but the regions it exported, in their
// mode, on every path the target serves: tcp (active messages), tcp with the initiator's protocol
// 'rma', shared memory the target allocated (mapped by trusted peers) and shared memory it
// registered (cross-memory attach by trusted peers). Every forged metadata (larger regions, other
// modes, guessed ids, swapped ids and labels, another process, the old layout with its base
// address; checksum recomputed) is refused with a typed error; the target's memory is unchanged;
// no byte of it reaches the initiator. With a shared secret, every forgery is refused before
// anything of it is parsed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, KvwireError, decodeMetadata } from '../../lib/index.js';
import type { AgentOptions, Peer } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from './child.js';
import { ATTACKER_KEY, attacks, forge } from './forgery.js';

const SECRET = 'forged-metadata-test-secret-0123456789';
const ARENA = 1 << 20;
const RO = { at: 64 << 10, size: 64 << 10 };
const WO = { at: 192 << 10, size: 64 << 10 };
const NONE = { at: 320 << 10, size: 64 << 10 };
const REFUSALS = new Set<string>([
  ErrorCode.BAD_METADATA,
  ErrorCode.UNAUTHORIZED,
  ErrorCode.UNSUPPORTED,
  ErrorCode.ACCESS_DENIED,
  ErrorCode.OUT_OF_BOUNDS,
  ErrorCode.UNKNOWN_REGION,
  ErrorCode.PEER_UNREACHABLE, // a forged process id: that process (with that start time) is not running
]);

interface Path {
  name: string;
  target: AgentOptions;
  initiator: AgentOptions;
  allocate: boolean;
  /** The genuine metadata connects (else: refused, typed, e.g. 'rma' over tcp). */
  genuineRefusedWith?: string;
  signed?: boolean;
}

const PATHS: Path[] = [
  { name: 'tcp (active messages)', target: { transports: 'tcp' }, initiator: { transports: 'tcp' }, allocate: false },
  {
    name: "tcp with the initiator's protocol 'rma'",
    target: { transports: 'tcp' },
    initiator: { transports: 'tcp', protocol: 'rma' },
    allocate: false,
    genuineRefusedWith: ErrorCode.UNSUPPORTED,
  },
  {
    name: 'shared memory, allocate()d regions',
    target: { transports: 'sm' },
    initiator: { transports: 'sm' },
    allocate: true,
  },
  {
    name: 'shared memory, register()ed regions',
    target: { transports: 'sm' },
    initiator: { transports: 'sm' },
    allocate: false,
  },
  {
    name: 'shared memory, register()ed regions, agents sharing a secret',
    target: { transports: 'sm', auth: { secret: SECRET } },
    initiator: { transports: 'sm', auth: { secret: SECRET } },
    allocate: false,
    signed: true,
  },
];

describe.each(PATHS)('forged metadata against $name', (path) => {
  let child: Child;
  let agent: Agent;
  let genuine: Uint8Array;
  let noneId: number;
  const hashes = new Map<string, string>();

  async function targetHashes(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (path.allocate) {
      for (const label of ['ro', 'wo', 'hidden'])
        out.set(label, (await child.request({ cmd: 'hash', label }, 'hash')).sha as string);
    } else {
      out.set('arena', (await child.request({ cmd: 'hash-arena' }, 'hash-arena')).sha as string);
    }
    return out;
  }

  beforeAll(async () => {
    child = new Child('transport-target.js');
    const regions = path.allocate
      ? [
          { label: 'ro', size: RO.size, access: 'read', seed: 11, allocate: true },
          { label: 'wo', size: WO.size, access: 'write', seed: 12, allocate: true },
          { label: 'hidden', size: NONE.size, access: 'none', seed: 13, allocate: true },
        ]
      : [
          { label: 'ro', size: RO.size, access: 'read', seed: 0, at: RO.at },
          { label: 'wo', size: WO.size, access: 'write', seed: 0, at: WO.at },
          { label: 'hidden', size: NONE.size, access: 'none', seed: 0, at: NONE.at },
        ];
    const m = await child.request(
      { cmd: 'init', engineOpts: { name: 'victim', ...path.target }, arena: { size: ARENA, seed: 99 }, regions },
      'metadata',
    );
    genuine = Uint8Array.from(m.metadata as number[]);
    noneId = 3; // the third region registered: ids are small integers, easily guessed
    agent = await Agent.create({ name: 'attacker', ...path.initiator });
    for (const [k, v] of await targetHashes()) hashes.set(k, v);
  });

  afterAll(async () => {
    await agent?.close();
    child?.kill();
    await child?.exited;
  });

  it('serves the genuine metadata its exported regions, in their modes (or refuses the path, typed)', async () => {
    const dst = agent.register(Buffer.alloc(RO.size), { label: `genuine-dst-${Date.now()}` });
    let peer: Peer;
    try {
      peer = await agent.connect(genuine);
    } catch (e) {
      expect(e).toBeInstanceOf(KvwireError);
      expect((e as KvwireError).code).toBe(path.genuineRefusedWith);
      return;
    }
    expect(path.genuineRefusedWith).toBeUndefined();
    await agent.read(
      peer,
      [{ region: dst, offset: 0, length: RO.size }],
      [{ region: peer.region('ro'), offset: 0, length: RO.size }],
    ).done;
    const expected = path.allocate
      ? fillPattern(Buffer.alloc(RO.size), 11)
      : fillPattern(Buffer.alloc(ARENA), 99).subarray(RO.at, RO.at + RO.size);
    expect(sha256(dst.bytes)).toBe(sha256(expected));
    peer.disconnect();
    dst.deregister();
  });

  it('refuses every forgery with a typed error; memory unchanged; nothing past a region reaches the initiator', async () => {
    const list = attacks(noneId, NONE.size);
    const genuineRegions = new Map(decodeMetadata(genuine).regions.map((r) => [r.id, r]));
    const dst = agent.register(Buffer.alloc(1 << 20), { label: `attack-dst-${Date.now()}` });
    const outcomes: string[] = [];
    let succeeded = 0;
    for (const a of list) {
      const bytes = forge(genuine, a, path.signed === true);
      let peer: Peer | undefined;
      try {
        peer = await agent.connect(bytes, { timeoutMs: 10_000 });
      } catch (e) {
        expect(e, a.name).toBeInstanceOf(KvwireError);
        const code = (e as KvwireError).code;
        expect(
          REFUSALS.has(code) || code === path.genuineRefusedWith,
          `${a.name}: ${code} ${(e as Error).message}`,
        ).toBe(true);
        outcomes.push(`${a.name}: ${code}`);
        continue;
      }
      // Connected (a forgery that claims nothing beyond the genuine grant): every operation beyond
      // what the genuine metadata allows must still be refused, typed.
      const tries: (() => Promise<unknown>)[] = [];
      for (const r of peer.regions) {
        const g = genuineRegions.get(r.id);
        for (const op of ['read', 'write'] as const) {
          const allowed = g !== undefined && (g.access === 'readwrite' || g.access === op);
          const from = allowed ? g.length : 0; // allowed: only bytes past the genuine end widen anything
          const len = Math.min(r.length - from, 1 << 20);
          if (len <= 0) continue;
          tries.push(
            () =>
              agent[op](peer!, [{ region: dst, offset: 0, length: len }], [{ region: r, offset: from, length: len }])
                .done,
          );
        }
      }
      let widened = false;
      for (const t of tries) {
        try {
          await t();
          widened = true;
        } catch (e) {
          if (!(e instanceof KvwireError)) throw e;
        }
      }
      if (widened) succeeded++;
      outcomes.push(`${a.name}: connected, ${widened ? 'WIDENED' : 'every operation refused'}`);
      peer.disconnect();
    }
    expect(succeeded, outcomes.join('\n')).toBe(0);
    expect(outcomes).toHaveLength(list.length);
    // The target's memory is exactly as before (writes to read-only, none or unregistered bytes
    // would show), and the initiator received none of its bytes (dst is still zero).
    expect(await targetHashes()).toEqual(hashes);
    expect(dst.bytes.every((b) => b === 0)).toBe(true);
    // And it still serves the genuine metadata afterwards.
    if (path.genuineRefusedWith === undefined) {
      const peer = await agent.connect(genuine);
      await agent.read(
        peer,
        [{ region: dst, offset: 0, length: 16 }],
        [{ region: peer.region('ro'), offset: 0, length: 16 }],
      ).done;
      peer.disconnect();
    }
    dst.deregister();
  });

  it.skipIf(path.signed !== true)(
    'refuses the genuine metadata altered in one byte, even keeping its signature',
    async () => {
      const altered = Uint8Array.from(genuine);
      altered[40] ^= 1;
      await expect(agent.connect(altered)).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
      const unsignedAgent = await Agent.create({ name: 'no-secret', transports: 'sm', auth: false });
      await expect(unsignedAgent.connect(genuine)).rejects.toMatchObject({
        code: ErrorCode.UNAUTHORIZED,
        message: /is signed/,
      });
      await unsignedAgent.close();
      void ATTACKER_KEY;
    },
  );
});
