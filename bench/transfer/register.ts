/**
 * Registration cost: `agent.register` and `region.deregister` of one region from 4 KiB to 1 GiB
 * (the memory is allocated and touched once, then registered again and again), and of 10,000
 * small regions at once (NIXL's users report seconds for that). Host memory (a Buffer) by default;
 * with `--memory cuda`, device memory: one `cuda.alloc` allocation on device 0 whose ranges are
 * registered, as a KV cache's tensors inside a framework's allocation are.
 *
 * Regions are registered with access 'readwrite' (exported to peers, so the engine packs a
 * remote key for each), as a KV cache is. Deregistration is timed as the call; the release that
 * follows (`region.released`) is awaited outside the timing before the memory is reused.
 *
 * @packageDocumentation
 */
import { Agent } from '../../lib/transport/agent.js';
import { cuda } from '../../lib/transport/cuda.js';
import type { CudaAllocation, CudaMemory } from '../../lib/transport/cuda.js';
import type { Region } from '../../lib/transport/region.js';
import { BENCH_DEVICE } from './memory.js';
import type { BenchMemory } from './memory.js';
import { ucxTlsOf } from './plan.js';
import type { Progress } from './progress.js';
import type { RegisterJson, RegisterRowJson } from './schema.js';
import { Samples } from '../stats.js';

/** Sizes timed: 4 KiB × 4^k up to 1 GiB. */
export const REGISTER_SIZES: readonly number[] = [
  4 << 10,
  16 << 10,
  64 << 10,
  256 << 10,
  1 << 20,
  4 << 20,
  16 << 20,
  64 << 20,
  256 << 20,
  1 << 30,
];

/** Small regions registered at once. */
export const MANY_REGIONS = 10_000;

function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

/** Repeats per size: more for small (fast) ones. */
export function registerRepeats(bytes: number): number {
  return bytes <= 16 << 20 ? 20 : bytes <= 256 << 20 ? 5 : 3;
}

/**
 * Waits until the engine released `regions` (at most 10 s). The timer also keeps the process
 * alive meanwhile: a pending release alone does not (see the report on `Region.released`).
 */
async function released(regions: readonly Region[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(regions.map((r) => r.released)),
    new Promise((r) => (timer = setTimeout(r, 10_000))),
  ]);
  clearTimeout(timer);
}

/** Memory whose ranges are registered: a touched host Buffer, or one device allocation. */
interface RegisterMemory {
  readonly range: (offset: number, bytes: number) => Buffer | CudaMemory;
  readonly free: () => void;
}

function registerMemory(memory: BenchMemory, bytes: number): RegisterMemory {
  if (memory === 'cuda') {
    const m: CudaAllocation = cuda.alloc(BENCH_DEVICE, bytes);
    cuda.memset(m, 0x5a); // touched once, as a real cache is
    return {
      range: (offset, n) => ({ kind: 'cuda', device: m.device, pointer: m.pointer + BigInt(offset), length: n }),
      free: () => m.free(),
    };
  }
  const b = Buffer.allocUnsafeSlow(bytes);
  b.fill(0x5a); // touch every page once, as a real cache is
  return { range: (offset, n) => b.subarray(offset, offset + n), free: () => undefined };
}

/** Runs the registration bench with one agent (the engine and transports of the run). */
export async function runRegister(
  engine: 'ucx' | 'loopback',
  transports: readonly string[],
  regionCap: number,
  notice: (m: string) => void,
  progress: Progress,
  memoryKind: BenchMemory = 'register',
): Promise<RegisterJson> {
  const tls = transports.map(ucxTlsOf).join(',');
  const agent = await Agent.create(
    engine === 'ucx'
      ? { engine, transports: tls, name: 'kvwire-bench-register' }
      : { engine, name: 'kvwire-bench-register' },
  );
  const sizes = REGISTER_SIZES.filter((s) => s <= regionCap);
  if (sizes.length < REGISTER_SIZES.length) {
    notice(
      `registration of regions over ${regionCap.toLocaleString('en-US')} bytes skipped (--max-region / free memory)`,
    );
  }
  progress.addTotal(sizes.length + 1);
  const rows: RegisterRowJson[] = [];
  const held: RegisterMemory[] = [];
  try {
    const memory = registerMemory(memoryKind, sizes[sizes.length - 1] ?? 4096);
    held.push(memory);
    let label = 0;
    for (const bytes of sizes) {
      progress.begin(`register ${bytes.toLocaleString('en-US')} bytes`);
      const reg = new Samples(32);
      const dereg = new Samples(32);
      const repeats = registerRepeats(bytes);
      const view = memory.range(0, bytes);
      for (let i = 0; i < repeats; i++) {
        const t0 = nowUs();
        const r = agent.register(view, { access: 'readwrite', label: `reg-${label++}` });
        const t1 = nowUs();
        r.deregister();
        const t2 = nowUs();
        reg.add(t1 - t0);
        dereg.add(t2 - t1);
        await released([r]);
        progress.partial((i + 1) / repeats);
      }
      rows.push({ bytes, repeats, registerUs: reg.summary(), deregisterUs: dereg.summary() });
      progress.end();
    }

    progress.begin(`register ${MANY_REGIONS.toLocaleString('en-US')} regions of 4 KiB`);
    const small = 4096;
    const pool = registerMemory(memoryKind, MANY_REGIONS * small);
    held.push(pool);
    const regions: Region[] = new Array(MANY_REGIONS);
    const t0 = nowUs();
    for (let i = 0; i < MANY_REGIONS; i++) {
      regions[i] = agent.register(pool.range(i * small, small), {
        access: 'readwrite',
        label: `many-${i}`,
      });
    }
    const t1 = nowUs();
    let metadataBytes: number | null = null;
    let metadataMs: number | null = null;
    try {
      const m0 = nowUs();
      metadataBytes = agent.metadata().byteLength;
      metadataMs = (nowUs() - m0) / 1000;
    } catch (e) {
      notice(`metadata of ${MANY_REGIONS} regions failed: ${(e as Error).message}`);
    }
    const t2 = nowUs();
    for (const r of regions) r.deregister();
    const t3 = nowUs();
    await released(regions);
    progress.end();
    return {
      engine,
      transports: agent.transports,
      memory: memoryKind === 'cuda' ? 'cuda' : 'host',
      rows,
      many: {
        count: MANY_REGIONS,
        regionBytes: small,
        registerMs: (t1 - t0) / 1000,
        deregisterMs: (t3 - t2) / 1000,
        registerUsPerRegion: (t1 - t0) / MANY_REGIONS,
        deregisterUsPerRegion: (t3 - t2) / MANY_REGIONS,
        metadataBytes,
        metadataMs,
      },
    };
  } finally {
    await agent.close();
    for (const m of held) m.free();
  }
}
