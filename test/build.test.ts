// Both build systems build the same addon from one list of sources (the prebuild, and loading it
// with no build/ folder present, are checked by package.test.ts, which packs it). Builds run in a scratch copy of
// the package so they never touch the build/ the other tests load. No CUDA library is linked.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/native.js';
import { cudaInclude } from './cuda/toolkit.js';

const root = packageRoot();
const require = createRequire(import.meta.url);
const scratch: string[] = [];

function copyPackage(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-build-'));
  scratch.push(dir);
  for (const f of ['package.json', 'binding.gyp', 'CMakeLists.txt', 'native'])
    cpSync(join(root, f), join(dir, f), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

function run(dir: string, script: string): void {
  execFileSync('npm', ['run', script], {
    cwd: dir,
    stdio: 'pipe',
    timeout: 600_000,
    env: { ...process.env, JOBS: '2' },
  });
}

interface Addon {
  hasUcx: boolean;
  capabilities(): { ucx: { built: boolean; version?: string }; cuda: { headers: boolean } };
}

/** The CUDA path is compiled exactly when the toolkit's headers are installed. */
const cudaHeaders = cudaInclude() !== undefined;

afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

describe('build', () => {
  it('npm run build:native builds the same addon with cmake-js, offline, in Node-API mode', () => {
    const dir = copyPackage();
    run(dir, 'build:native');
    const file = join(dir, 'build', 'Release', 'kvwire.node');
    expect(existsSync(file)).toBe(true);
    const addon = require(file) as Addon;
    expect(addon.hasUcx).toBe(true);
    expect(addon.capabilities().ucx.built).toBe(true);
    expect(addon.capabilities().cuda.headers).toBe(cudaHeaders);
  }, 600_000);

  it('compiles the CUDA path against the toolkit headers when they are installed', () => {
    const addon = require(join(root, 'build', 'Release', 'kvwire.node')) as Addon;
    expect(addon.capabilities().cuda.headers).toBe(cudaHeaders);
  });

  it('links no CUDA library (the driver is loaded at run time)', () => {
    const file = join(root, 'build', 'Release', 'kvwire.node');
    const ldd = execFileSync('ldd', [file], { encoding: 'utf8' });
    expect(ldd).toMatch(/libucp/);
    expect(ldd).not.toMatch(/cuda|nvidia/i);
    const needed = execFileSync('objdump', ['-p', file], { encoding: 'utf8' });
    expect(needed).not.toMatch(/NEEDED\s+.*cuda/i);
  });
});
