/**
 * The bench's memory on each side, as nixlbench's segment types: host memory the engine allocates
 * ('allocate', the default), host Buffers ('register'), or CUDA device memory ('cuda', allocated
 * with `cuda.alloc` on device 0: the GPU tests run both processes on one GPU).
 *
 * The pattern checks of `--check` work on host views; device memory has none, so for it each
 * range is copied to the host to be verified and written through the driver to be poisoned or
 * restored (slower, and only ever outside the timed part of a row).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { loadNative } from '../../lib/native.js';
import type { Agent } from '../../lib/transport/agent.js';
import { cuda, CudaAllocation } from '../../lib/transport/cuda.js';
import type { CudaMemory } from '../../lib/transport/cuda.js';
import type { Region } from '../../lib/transport/region.js';
import type { AgentOptions } from '../../lib/transport/types.js';
import { ENTRY_STRIDE } from './pattern.js';
import type { BytePattern, Mismatch, VerifyEntries } from './pattern.js';

/** Where a side's regions live. */
export type BenchMemory = 'allocate' | 'register' | 'cuda';

/** The memory kinds `--memory`, `--initiator-memory` and `--target-memory` take. */
export const BENCH_MEMORIES: readonly BenchMemory[] = ['allocate', 'register', 'cuda'];

/** The device the bench allocates device memory on. */
export const BENCH_DEVICE = 0;

/** Fill granularity of device memory (one host buffer reused). */
const FILL_CHUNK = 16 << 20;

function deviceOf(r: Region): CudaMemory {
  return { kind: 'cuda', device: r.device!, pointer: r.pointer!, length: r.length };
}

/** Creates and registers `bytes` of `memory` with `agent`, filled with the pattern of `salt`. */
export function createRegion(
  agent: Agent,
  memory: BenchMemory,
  bytes: number,
  label: string,
  access: 'readwrite' | 'none',
  pattern: BytePattern,
  salt: number,
): Region {
  if (memory === 'cuda') {
    const mem = cuda.alloc(BENCH_DEVICE, bytes);
    let region: Region;
    try {
      region = agent.register(mem, { access, label });
    } catch (e) {
      mem.free();
      throw e;
    }
    const buf = Buffer.allocUnsafeSlow(Math.min(bytes, FILL_CHUNK));
    for (let off = 0; off < bytes; off += buf.length) {
      const n = Math.min(buf.length, bytes - off);
      pattern.fill(buf, 0, n, salt, off);
      cuda.copyToDevice(mem, buf.subarray(0, n), off);
    }
    return region;
  }
  const region =
    memory === 'register'
      ? agent.register(pageAligned(bytes), { access, label })
      : agent.allocate(bytes, { access, label });
  pattern.fill(region.bytes, 0, bytes, salt);
  return region;
}

/**
 * `bytes` of ordinary host memory (a Buffer) starting at a page boundary, as nixlbench allocates
 * its DRAM (posix_memalign to the page size): the same pages on both sides of a comparison, and
 * every page a whole one (the engine shares the whole pages of registered memory with same-host
 * peers). Without the addon (loopback engine) any Buffer serves.
 */
export function pageAligned(bytes: number): Buffer {
  const native = loadNative();
  if (native === undefined) return Buffer.allocUnsafeSlow(bytes);
  const buf = Buffer.allocUnsafeSlow(bytes + PAGE);
  const skip = (PAGE - native.pageOffset(buf)) % PAGE;
  return buf.subarray(skip, skip + bytes);
}

/** The page size the bench aligns registered memory to (x86-64 and most arm64 kernels). */
const PAGE = 4096;

/** Frees the device memory behind `regions` once no operation can touch it (after the agent closed). */
export async function freeRegions(regions: readonly Region[]): Promise<void> {
  for (const r of regions) {
    const mem = r.memory;
    if (!(mem instanceof CudaAllocation)) continue;
    await r.released;
    await Promise.resolve(); // the allocation's own release callback runs first
    if (!mem.freed) mem.free();
  }
}

/** Poisons every destination range of `entries` (entry region i is `regions[i]`). */
export function poisonIn(pattern: BytePattern, regions: readonly Region[], entries: VerifyEntries): void {
  for (let i = 0; i < entries.length; i += ENTRY_STRIDE) {
    const r = regions[entries[i]!]!;
    const [offset, length, salt, src] = [entries[i + 1]!, entries[i + 2]!, entries[i + 3]!, entries[i + 4]!];
    if (r.kind === 'host') {
      pattern.poison(r.bytes, offset, length, salt, src);
    } else {
      const buf = Buffer.allocUnsafe(length);
      pattern.poison(buf, 0, length, salt, src);
      cuda.copyToDevice(deviceOf(r), buf, offset);
    }
  }
}

/**
 * Verifies every entry; the first mismatch, or undefined. With `restore`, each destination range
 * is then rewritten with its own region's pattern (`restore[region]`), as BytePattern does.
 */
export function verifyIn(
  pattern: BytePattern,
  regions: readonly Region[],
  entries: VerifyEntries,
  restore?: readonly number[],
): Mismatch | undefined {
  if (regions.every((r) => r.kind === 'host'))
    return pattern.verifyEntries(
      regions.map((r) => r.bytes),
      entries,
      restore,
    );
  let found: Mismatch | undefined;
  for (let i = 0; i < entries.length; i += ENTRY_STRIDE) {
    const region = entries[i]!;
    const r = regions[region]!;
    const [offset, length, salt, src] = [entries[i + 1]!, entries[i + 2]!, entries[i + 3]!, entries[i + 4]!];
    const view = r.kind === 'host' ? r.bytes.subarray(offset, offset + length) : Buffer.allocUnsafe(length);
    if (r.kind === 'cuda') cuda.copyFromDevice(deviceOf(r), view, offset);
    if (found === undefined) {
      const bad = pattern.firstMismatch(view, 0, length, salt, src);
      if (bad >= 0) {
        found = {
          descriptor: i / ENTRY_STRIDE,
          region,
          offset: offset + bad,
          byteInDescriptor: bad,
          expected: pattern.byteAt(salt, src + bad),
          actual: view[bad]!,
        };
      }
    }
    if (restore !== undefined) {
      pattern.fill(view, 0, length, restore[region]!, offset);
      if (r.kind === 'cuda') cuda.copyToDevice(deviceOf(r), view, offset);
    } else if (found !== undefined) {
      break;
    }
  }
  return found;
}

/** Throws UNSUPPORTED (with the driver's reason) when a side asks for device memory and CUDA is unavailable. */
export function requireCuda(initiator: BenchMemory, target: BenchMemory, engine: 'ucx' | 'loopback'): void {
  if (initiator !== 'cuda' && target !== 'cuda') return;
  if (engine === 'loopback')
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      'device memory needs the UCX engine (the loopback engine moves host memory only)',
    );
  const reason = cuda.unavailableReason();
  if (reason !== undefined) throw new KvwireError(ErrorCode.UNSUPPORTED, `--memory cuda needs a CUDA GPU: ${reason}`);
}

/** Options both agents of a run get beyond engine and transport: device memory paths, engine tuning. */
export type BenchAgentExtras = Pick<AgentOptions, 'cuda' | 'tuning'>;

/** Both agents' extra options for a run: `cuda` when a side uses device memory, `tuning` when asked. */
export function benchAgentExtras(
  o: Parameters<typeof benchCudaOptions>[0] & { readonly batchBelow: number | undefined },
): BenchAgentExtras {
  const cuda = benchCudaOptions(o);
  return {
    ...(cuda !== undefined ? { cuda } : {}),
    ...(o.batchBelow !== undefined ? { tuning: { batchBelow: o.batchBelow } } : {}),
  };
}

/** The agents' `cuda` options for a run (undefined when neither side uses device memory and nothing was asked). */
export function benchCudaOptions(o: {
  readonly initiatorMemory: BenchMemory;
  readonly targetMemory: BenchMemory;
  readonly cuda: {
    readonly path: string;
    readonly stagingChunkBytes: number | undefined;
    readonly stagingBuffers: number | undefined;
  };
}): AgentOptions['cuda'] {
  if (o.initiatorMemory !== 'cuda' && o.targetMemory !== 'cuda') return undefined;
  return {
    path: o.cuda.path as NonNullable<AgentOptions['cuda']>['path'],
    ...(o.cuda.stagingChunkBytes !== undefined ? { stagingChunkBytes: o.cuda.stagingChunkBytes } : {}),
    ...(o.cuda.stagingBuffers !== undefined ? { stagingBuffers: o.cuda.stagingBuffers } : {}),
  };
}
