// The gather kernel's host side (native/cuda/gather.cc) over the fake CUDA driver (a TEST DOUBLE:
// see fake-driver.ts; it runs the kernel's contract, ranges and a chunk map read from device
// memory, on its stream thread). With KVWIRE_CUDA_GATHER=1 an IPC transfer with device memory at
// both ends goes as gather launches; by default (opt-in until it has run on a GPU), or where the
// driver cannot load the module, range by range; the bytes are the same every way. The kernel
// itself runs on a GPU in test/gpu/transfers.test.ts.
import { FAKE_CUDA } from './fake-driver.js';

import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, cuda } from '../../lib/index.js';
import type { CudaAllocation } from '../../lib/index.js';
import { fillPattern, sha256 } from '../fixtures/pattern.js';
import { Child } from '../transport/child.js';
import { regionBytes, scatter } from './scenarios.js';

const SIZE = 4 << 20;
const PEER_SEED = 42;
const LOG = join(tmpdir(), `kvwire-gather-launches-${process.pid}.log`);

function launches(): string[] {
  return existsSync(LOG) ? readFileSync(LOG, 'utf8').trim().split('\n').filter(Boolean) : [];
}

describe.skipIf(FAKE_CUDA.path === undefined)('gather kernel launches (fake CUDA driver, a test double)', () => {
  let child: Child | undefined;
  let agent: Agent | undefined;
  const allocations: CudaAllocation[] = [];
  afterEach(async () => {
    await agent?.close();
    agent = undefined;
    for (const a of allocations.splice(0)) a.free();
    child?.kill('SIGKILL');
    await child?.exited;
    child = undefined;
    for (const k of [
      'KVWIRE_CUDA_GATHER',
      'KVWIRE_FAKE_CUDA_NO_MODULES',
      'KVWIRE_FAKE_CUDA_FAIL_LAUNCH',
      'KVWIRE_FAKE_CUDA_LAUNCH_LOG',
    ])
      delete process.env[k];
    rmSync(LOG, { force: true });
  });

  it.each([
    ['one launch per list with KVWIRE_CUDA_GATHER=1', { KVWIRE_CUDA_GATHER: '1' }, 2, null],
    ['range by range by default', {}, 0, null],
    [
      'range by range where the module cannot load, saying why',
      { KVWIRE_CUDA_GATHER: '1', KVWIRE_FAKE_CUDA_NO_MODULES: '1' },
      0,
      /CUDA device 0: copying range by range \(loading the gather kernel's PTX: CUDA_ERROR_UNSUPPORTED_PTX_VERSION/,
    ],
    [
      'range by range where a launch fails, saying so once',
      { KVWIRE_CUDA_GATHER: '1', KVWIRE_FAKE_CUDA_FAIL_LAUNCH: '1' },
      0,
      /CUDA device 0: a gather launch failed \(launching the gather kernel: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES.*\); that list was copied range by range/,
    ],
  ] as const)('moves scattered device ranges both ways: %s', async (_what, env, expected, warning) => {
    Object.assign(process.env, env, { KVWIRE_FAKE_CUDA_LAUNCH_LOG: LOG });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    child = new Child('cuda-peer.js');
    const m = await child.request(
      {
        cmd: 'init',
        engineOpts: { name: 'gather-peer', transports: 'sm', cuda: { path: 'ipc' } },
        regions: [{ label: 'kv', size: SIZE, access: 'readwrite', seed: PEER_SEED, memory: 'cuda', slack: 12_288 }],
        hashOnNotify: 'kv',
      },
      'metadata',
    );
    agent = await Agent.create({ name: 'gather-parent', transports: 'sm', cuda: { path: 'ipc' } });
    const peer = await agent.connect(Uint8Array.from(m.metadata as number[]));
    const mem = cuda.alloc(0, SIZE);
    allocations.push(mem);
    cuda.copyToDevice(mem, fillPattern(Buffer.alloc(SIZE), 9));
    const mine = agent.register(mem, { label: 'mine' });
    // 48 ranges of 1 byte to 200 KiB (several 64 KiB chunks), at odd offsets on both sides.
    const d = scatter(SIZE, 200 << 10);
    const locals = d.map((x) => ({ region: mine, offset: x.l, length: x.len }));
    const remotes = d.map((x) => ({ region: peer.region('kv'), offset: x.r, length: x.len }));

    await agent.read(peer, locals, remotes).done;
    const got = regionBytes(mine);
    const theirs = fillPattern(Buffer.alloc(SIZE), PEER_SEED);
    const before = fillPattern(Buffer.alloc(SIZE), 9);
    for (const x of d) {
      expect(got.subarray(x.l, x.l + x.len).equals(theirs.subarray(x.r, x.r + x.len))).toBe(true);
      expect(got[x.l + x.len]).toBe(before[x.l + x.len]); // nothing past a range
    }

    // Back: the local ranges (now the peer's bytes) written over different places of the peer's.
    const back = d.map((x, i) => ({ region: peer.region('kv'), offset: d[d.length - 1 - i]!.r, length: x.len }));
    const fits = d.every((x, i) => x.len <= d[d.length - 1 - i]!.len);
    const pairs = fits ? back : remotes;
    const expectedKv = Buffer.from(theirs);
    for (let i = 0; i < d.length; i++) got.copy(expectedKv, pairs[i]!.offset, d[i]!.l, d[i]!.l + d[i]!.len);
    await agent.write(peer, locals, pairs, { notify: 'written' }).done;
    const n = await child.next('notification');
    expect(n.sha).toBe(sha256(expectedKv)); // hashed in the peer's notification handler: data first

    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    const said = warnings.filter((w) => /range by range/.test(w)); // once, though two lists went so
    if (warning === null) expect(said).toEqual([]);
    else expect(said).toEqual([expect.stringMatching(warning)]);
    const lines = launches();
    expect(lines).toHaveLength(expected); // one READ and one WRITE, 48 ranges each
    const chunks = d.reduce((s, x) => s + Math.ceil(x.len / 65_536), 0);
    for (const l of lines)
      expect(l).toBe(`kvwire_gather grid=${Math.min(chunks, 16 * 8)} block=256 chunks=${chunks} shift=16`);
  });
});
