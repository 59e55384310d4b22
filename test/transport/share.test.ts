// Registered memory that same-host peers map (native/engine/share.h). First the windows themselves,
// from C++ (test/fixtures/share-host/harness.cc under AddressSanitizer and UBSan: pages moved onto
// a memfd and back with every byte intact, untouched pages never copied, memory that must stay as
// it is left alone, one window for registrations of the same pages, a peer's checks of what it is
// granted), then two processes over shared memory: the initiator maps the target's window, moves
// bytes through it inside and across its edges, and stops at the peer's death or deregistration.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Agent, ErrorCode, KvwireError } from '../../lib/index.js';
import type { Peer, Region } from '../../lib/index.js';
import { buildHarness } from '../fixtures/host-harness.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import type { Child } from './child.js';
import { targetPairs } from './target-pair.js';

function build(): string {
  return buildHarness(
    'share-host',
    ['test/fixtures/share-host/harness.cc', 'native/engine/share.cc'],
    ['native/engine/share.h', 'native/util/unique_fd.h', 'native/util/switch.h'],
    'address,undefined',
  );
}

describe('shared windows of registered memory, from C++', () => {
  let harness: string;
  beforeAll(() => {
    harness = build();
  }, 120_000);

  it.each([
    [
      'share-restore',
      'whole pages move onto a memfd and back at the same addresses, bytes intact, untouched pages never copied',
    ],
    [
      'refuses',
      'less than a page, file mappings, shared, read-only and executable memory, the stack and holes stay as they are',
    ],
    [
      'reuse',
      'registrations inside a window share it and keep it until the last goes; a partial overlap is not shared',
    ],
    [
      'unmapped-under',
      "memory unmapped under a registration and reused: the release leaves the new owner's bytes alone",
    ],
    [
      'peer',
      "a peer maps the owner's window and refuses another inode, an unsealed or small memfd, a window past the region",
    ],
  ])('%s: %s', (name) => {
    // Both ways of reading the process's mappings: the kernel's PROCMAP_QUERY and the text.
    for (const query of ['1', '0']) {
      const r = spawnSync(harness, [name], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, KVWIRE_PROCMAP_QUERY: query, KVWIRE_SHARE_REGISTERED: '1G' },
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`ok ${name}\n`);
      expect(r.status).toBe(0);
    }
  });
});

const SIZE = 1 << 20;
const SEED = 7;

/** The inodes of kvwire's region memfds that process `pid` maps. */
function windows(pid: number | 'self'): Set<number> {
  const out = new Set<number>();
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    if (!line.includes('/memfd:kvwire-region')) continue;
    out.add(Number(line.trim().split(/\s+/)[4]));
  }
  return out;
}

describe.each(['sm', 'tcp'])('registered memory a same-host peer shares, over %s', (tls) => {
  const pairs = targetPairs();
  let agent: Agent | undefined;

  // The target registers 1 MiB of a Buffer (Buffer.alloc: 16 bytes into a page, so its window is
  // every page but the first and last); this side moves bytes into and out of a Buffer it
  // registered with access none (no window of its own), 64 bytes larger to leave room around.
  async function start(): Promise<{ peer: Peer; c: Child; local: Region }> {
    const p = await pairs(
      tls,
      [{ label: 'kv', size: SIZE, access: 'readwrite', seed: SEED }],
      { tuning: { completionSpinUs: 0 } },
      SIZE + 64,
    );
    agent = p.agent;
    return { peer: p.peer, c: p.child, local: p.local };
  }

  it("maps the peer's window over sm only, and moves every byte right inside it and across its edges", async () => {
    const { peer, c, local } = await start();
    const theirs = windows(c.proc.pid!);
    expect(theirs.size).toBe(1);
    const mine = windows('self');
    expect([...theirs].every((inode) => mine.has(inode))).toBe(tls === 'sm');
    const remote = fillPattern(Buffer.alloc(SIZE), SEED);
    // [remote offset, length]: inside the window, across its first and last page, all of it.
    const cases: [number, number][] = [
      [8192, 4096],
      [8192 + 3, 65_536],
      [0, 8192],
      [100, 1],
      [SIZE - 4196, 4196],
      [SIZE - 1, 1],
      [0, SIZE],
    ];
    for (const [r, len] of cases) {
      local.bytes.fill(0xee);
      const t = agent!.read(
        peer,
        [{ region: local, offset: 17, length: len }],
        [{ region: peer.region('kv'), offset: r, length: len }],
      );
      // Moved inside the call over sm (the window, or cross-memory attach for the edges).
      expect(t.status).toBe(tls === 'sm' ? 'done' : 'pending');
      await t.done;
      expect(Buffer.from(local.bytes.subarray(17, 17 + len)).equals(remote.subarray(r, r + len))).toBe(true);
      expect(local.bytes[16]).toBe(0xee);
      expect(local.bytes[17 + len]).toBe(0xee);
    }
    fillPattern(local.bytes, 4321);
    for (const [r, len] of cases.slice(0, -1)) {
      await agent!.write(
        peer,
        [{ region: local, offset: 5, length: len }],
        [{ region: peer.region('kv'), offset: r, length: len }],
      ).done;
      Buffer.from(local.bytes.subarray(5, 5 + len)).copy(remote, r);
    }
    expect((await c.request({ cmd: 'hash', label: 'kv' }, 'hash')).sha).toBe(sha256(remote));
  });

  it('fails a READ of the window with ERR_KVWIRE_PEER_LOST once the peer is gone, moving no stale byte', async () => {
    const { peer, c, local } = await start();
    const read = () =>
      agent!.read(
        peer,
        [{ region: local, offset: 0, length: 4096 }],
        [{ region: peer.region('kv'), offset: 8192, length: 4096 }],
        { timeoutMs: 30_000 },
      );
    await read().done;
    local.bytes.fill(0xee, 0, 4096);
    c.kill('SIGKILL');
    await c.exited;
    let err: unknown;
    try {
      await read().done;
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvwireError);
    expect((err as KvwireError).code).toBe(ErrorCode.PEER_LOST);
    expect(local.bytes.subarray(0, 4096).every((v) => v === 0xee)).toBe(true);
  });

  it('gives the peer its memory back, bytes intact, when it deregisters', async () => {
    const { peer, c, local } = await start();
    await agent!.write(
      peer,
      [{ region: local, offset: 0, length: 65_536 }],
      [{ region: peer.region('kv'), offset: 4096, length: 65_536 }],
    ).done;
    const before = (await c.request({ cmd: 'hash-memory', label: 'kv' }, 'hash')).sha;
    await c.request({ cmd: 'deregister', label: 'kv' }, 'deregistered');
    // Released at once (no operation of its own used it): private memory again, same bytes.
    expect(windows(c.proc.pid!).size).toBe(0);
    expect((await c.request({ cmd: 'hash-memory', label: 'kv' }, 'hash')).sha).toBe(before);
  });
});
