// The examples (examples/*.ts) import from 'kvwire', as a user's code does (the package resolves its
// own name through package.json "exports"), and run to completion; the docs' code imports from
// 'kvwire' too, never from the repository's paths.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/native.js';
import { capabilities } from '../lib/transport/capabilities.js';

const root = packageRoot();
const EXPORTS = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: Record<string, unknown> })
  .exports;

function runExample(name: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(root, 'dist', 'examples', `${name}.js`)],
      { cwd: root, timeout: 60_000 },
      (e, stdout, stderr) => {
        const code = (e as { code?: unknown } | null)?.code;
        resolve({ code: e === null ? 0 : typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

describe('examples', () => {
  it('every example is tested here', () => {
    const names = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts'));
    expect(names.sort()).toEqual(['kv-index.ts', 'kv-layout.ts', 'two-agents.ts']);
    for (const n of names) expect(readFileSync(join(root, 'examples', n), 'utf8')).toMatch(/from 'kvwire';/);
  });

  it.runIf(capabilities().engines.ucx.available)(
    'two-agents: READs four blocks and hears the notification',
    async () => {
      const r = await runExample('two-agents');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^transport: (sm|tcp)$/m);
      expect(r.stdout).toContain('read 4194304 bytes in 4 descriptors, 2 posted');
      expect(r.stdout).toContain('every block landed');
    },
  );

  it('kv-layout: a Llama-3-8B layout at TP 2', async () => {
    const r = await runExample('kv-layout');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('64 tensors, first kv-L0-K of 134217728 bytes');
  });

  it('kv-index: scores and picks the worker holding the prefix', async () => {
    const r = await runExample('kv-index');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^scores: \[\["decode-0",240\]\]; pick: decode-0 /m);
  });

  it("the docs' code imports from 'kvwire' (docs/cli.md is about the repository's own CLI code)", () => {
    const docs = [
      'README.md',
      ...readdirSync(join(root, 'docs'))
        .filter((f) => f !== 'cli.md')
        .map((f) => join('docs', f)),
    ];
    for (const doc of docs) {
      const text = readFileSync(join(root, doc), 'utf8');
      for (const m of text.matchAll(/^import .* from '([^']+)';$/gm)) {
        // 'kvwire', or one of the subpaths package.json exports ('kvwire/engine').
        const ok = m[1]!.startsWith('node:') || m[1] === 'kvwire' || `./${m[1]!.slice('kvwire/'.length)}` in EXPORTS;
        expect(`${doc}: ${m[1]}`).toBe(`${doc}: ${ok ? m[1] : 'kvwire'}`);
      }
    }
  });
});
