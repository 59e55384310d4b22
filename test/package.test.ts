// What `npm pack` publishes: the library, the CLI, the docs the README links to, the LICENSE and a
// linux-x64 prebuild; no tests, benchmarks or test launchers. Installing the tarball needs no
// compiler: it is installed and run (`npx kvwire info`) with a PATH that holds node and npm only.
//
// One prebuild (the slow step, a native compile) serves every check, in a scratch copy of the
// package so it never touches the build/ the other tests load.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../lib/native.js';
import { cudaInclude } from './cuda/toolkit.js';

const root = packageRoot();
const require = createRequire(import.meta.url);
const scratch: string[] = [];
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; files: string[] };

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** A folder whose only commands are node, npm, npx and sh (npm runs scripts with it): no compiler, make or python. */
function nodeOnlyPath(): string {
  const bin = tempDir('kvwire-nocc-');
  const npmCli = realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  symlinkSync(npmCli, join(bin, 'npm'));
  symlinkSync(join(dirname(npmCli), 'npx-cli.js'), join(bin, 'npx'));
  return bin;
}

/** Runs a command to its end without blocking the event loop; never rejects. */
function spawnAsync(
  cmd: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeout: number },
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { ...options, encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ status: error === null ? 0 : typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

interface Packed {
  /** The tarball. */
  readonly file: string;
  /** Paths inside the package. */
  readonly files: readonly string[];
}

let copy = '';
let packed: Packed;

// Asynchronous: a synchronous minute-long compile would starve vitest's worker of its event loop.
const run = promisify(execFile);

beforeAll(async () => {
  // The package as a clone has it after `npm install && npm run compile` (npm test compiles first).
  copy = tempDir('kvwire-pack-');
  for (const f of [
    'package.json',
    'binding.gyp',
    'CMakeLists.txt',
    'native',
    'proto',
    'bin',
    'docs',
    'README.md',
    'LICENSE',
  ]) {
    cpSync(join(root, f), join(copy, f), { recursive: true });
  }
  mkdirSync(join(copy, 'dist'));
  for (const d of ['lib', 'cli', 'bench', 'test'])
    cpSync(join(root, 'dist', d), join(copy, 'dist', d), { recursive: true });
  cpSync(join(root, 'bench'), join(copy, 'bench'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'));
  await run('npm', ['run', 'prebuild'], {
    cwd: copy,
    timeout: 900_000,
    env: { ...process.env, JOBS: '2' },
  });
  rmSync(join(copy, 'build'), { recursive: true, force: true });
  const out = tempDir('kvwire-tgz-');
  const { stdout: json } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], {
    cwd: copy,
    encoding: 'utf8',
    timeout: 120_000,
  });
  const [info] = JSON.parse(json) as { filename: string; files: { path: string }[] }[];
  packed = { file: join(out, info!.filename), files: info!.files.map((f) => f.path) };
}, 1_000_000);

afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('makes prebuilds/linux-x64/*.node, which node-gyp-build loads with no build/ folder', () => {
    const files = readdirSync(join(copy, 'prebuilds', `${process.platform}-${process.arch}`));
    expect(files.some((f) => f.endsWith('.node'))).toBe(true);
    const nodeGypBuild = require('node-gyp-build') as ((d: string) => unknown) & { path(d: string): string };
    expect(nodeGypBuild.path(copy)).toContain(join(copy, 'prebuilds'));
    const addon = nodeGypBuild(copy) as {
      hasUcx: boolean;
      capabilities(): { ucx: { version?: string }; cuda: { headers: boolean } };
    };
    expect(addon.hasUcx).toBe(true);
    expect(addon.capabilities().ucx.version).toMatch(/^1\.\d+/);
    expect(addon.capabilities().cuda.headers).toBe(cudaInclude() !== undefined);
  });

  it('ships the library, the CLI, the LICENSE and the prebuild, and no tests, benchmarks or launchers', () => {
    const files = packed.files;
    expect(files).toContain('LICENSE');
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
    expect(files).toContain('dist/lib/index.js');
    expect(files).toContain('dist/lib/index.d.ts');
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('bin/kvwire.js');
    expect(files).toContain('proto/envoy/service/ext_proc/v3/external_processor.proto'); // kvwire epp loads it at run time
    expect(files.some((f) => /^prebuilds\/linux-x64\/.*\.node$/.test(f))).toBe(true);
    const unwanted = files.filter(
      (f) =>
        /^(test|dist\/test|dist\/bench|dist\/tools|tools|bench\/transfer|bench\/kv-index|bench\/scheduler|examples|dist\/examples)\//.test(
          f,
        ) ||
        /\.test\.[jt]s$/.test(f) ||
        /(^|\/)fixtures\//.test(f) ||
        /redis-server/.test(f),
    );
    expect(unwanted).toEqual([]);
    // Source maps name ../../lib/*.ts, which the package does not ship: they would be dead weight
    // (378 files, a sixth of the tarball, when they were shipped).
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
  });

  it('resolves every relative link of the README and the docs inside the package', () => {
    const files = new Set(packed.files);
    const broken: string[] = [];
    for (const doc of packed.files.filter((f) => f.endsWith('.md'))) {
      const text = readFileSync(join(copy, doc), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue; // http:, https:, mailto:
        const path = posix.normalize(posix.join(posix.dirname(doc), target));
        if (!files.has(path)) broken.push(`${doc} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('installs with no C++ compiler on the PATH and runs `npx kvwire info`', async () => {
    const PATH = nodeOnlyPath();
    const env = { ...process.env, PATH, npm_config_nodedir: '', CC: '', CXX: '' };
    for (const tool of ['cc', 'c++', 'g++', 'gcc', 'clang', 'make', 'python3']) {
      expect(spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env }).status).not.toBe(0);
    }
    const app = tempDir('kvwire-app-');
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'kvwire-install-check', private: true, type: 'module' }),
    );
    const install = await spawnAsync('npm', ['install', packed.file, '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: app,
      env,
      timeout: 300_000,
    });
    expect(install.status, `${install.stdout}\n${install.stderr}`).toBe(0);
    const installed = join(app, 'node_modules', 'kvwire');
    expect(existsSync(join(installed, 'build'))).toBe(false); // nothing was compiled
    const info = await spawnAsync('npx', ['kvwire', 'info'], { cwd: app, env, timeout: 60_000 });
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout).toContain(`kvwire ${pkg.version}`);
    expect(info.stdout).toMatch(/addon: .*node_modules\/kvwire\/prebuilds\/linux-x64\/.*\.node/);
    expect(info.stdout).toMatch(/^ucx\s+yes\s+UCX 1\./m);
    // The library imports by its name; the benchmarks are not in the package and say so.
    const lib = spawnSync('node', ['-e', "import('kvwire').then((k) => console.log(typeof k.Agent.create))"], {
      cwd: app,
      env,
      encoding: 'utf8',
    });
    expect(lib.stdout.trim()).toBe('function');
    const bench = await spawnAsync('npx', ['kvwire', 'bench'], { cwd: app, env, timeout: 60_000 });
    expect(bench.status).toBe(2);
    expect(bench.stderr).toMatch(/'bench' is not part of the published package/);
    // The install may wait on the registry (it took over 60 s once, a network stall): the test's
    // limit covers the install's own (300 s) and the three commands after it.
  }, 480_000);
});
