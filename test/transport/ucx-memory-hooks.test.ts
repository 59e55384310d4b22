// UCX's memory hooks (libucm patching libc's mmap, munmap, brk and sbrk in place) crash Node now
// and then; kvwire keeps them off through UCX_MEM_EVENTS, which UCX reads from the process
// environment when the addon loads (lib/native.ts, native/engine/ucx_memory_hooks.h). Each case is
// a fresh process whose environment names no UCX_MEM_EVENTS (the test runner's has kvwire's own).
import { describe, expect, it } from 'vitest';
import { Child } from './child.js';

async function probe(
  mode: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ patchedBytes: number; warnings: string[]; ucxMemoryHooks: boolean }> {
  const c = new Child('ucx-hooks-probe.js', [mode], { UCX_MEM_EVENTS: undefined, ...env });
  const m = await c.next('report', 60_000);
  expect((await c.exited).code, c.stderr).toBe(0);
  return m as never;
}

describe('UCX memory hooks', () => {
  it('stay off when the main thread imported kvwire before a worker loads it', async () => {
    const r = await probe('main-import');
    expect(r).toMatchObject({ patchedBytes: 0, ucxMemoryHooks: false, warnings: [] });
  });

  it('stay off when the loading worker shares the environment (SHARE_ENV)', async () => {
    const r = await probe('share-env');
    expect(r).toMatchObject({ patchedBytes: 0, ucxMemoryHooks: false, warnings: [] });
  });

  it('are reported with a warning when a worker loads UCX and nothing could turn them off', async () => {
    const r = await probe('worker-first');
    // UCX 1.13 patches libc at load here (its default hook mode); the warning says so exactly then.
    expect(r.ucxMemoryHooks).toBe(r.patchedBytes > 0);
    expect(r.warnings).toEqual(r.ucxMemoryHooks ? ['KVWIRE_UCX_MEMORY_HOOKS'] : []);
  });

  it('are no surprise when the environment asks for them (UCX_MEM_EVENTS=yes): no warning', async () => {
    const r = await probe('worker-first', { UCX_MEM_EVENTS: 'yes' });
    expect(r.ucxMemoryHooks).toBe(r.patchedBytes > 0);
    expect(r.warnings).toEqual([]);
  });
});
