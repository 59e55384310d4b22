// Registered host memory asks the kernel for huge pages (native/engine/ucx_engine.cc,
// AdviseHugePages): peers on this host reach it by cross-memory attach, which costs far less on
// 2 MiB pages. Where the kernel makes huge pages only for memory that asks (madvise mode), a
// region's pages touched after register() are huge; with KVWIRE_HUGE_PAGES=0 they are not.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Child } from './child.js';

const mode = (() => {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
})();

async function probe(env: NodeJS.ProcessEnv): Promise<number> {
  const c = new Child('huge-pages-probe.js', [], env);
  const m = (await c.next('report', 60_000)) as unknown as { before: number; after: number };
  expect((await c.exited).code, c.stderr).toBe(0);
  return m.after - m.before;
}

describe.skipIf(mode !== 'madvise')('registered memory on huge pages (transparent_hugepage=madvise)', () => {
  it('backs the whole 2 MiB pages of a region touched after register() with huge pages', async () => {
    // 16 MiB from an unaligned start holds at least seven whole 2 MiB pages; at least four must be huge (the kernel may fall back to 4 KiB pages where it finds no free 2 MiB).
    expect(await probe({})).toBeGreaterThanOrEqual(4 * 2048);
  });

  it('leaves them on 4 KiB pages with KVWIRE_HUGE_PAGES=0', async () => {
    expect(await probe({ KVWIRE_HUGE_PAGES: '0' })).toBeLessThan(2048);
  });
});
