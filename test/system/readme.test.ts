/**
 * The README's two commands (install and run the main job; run the tests): the install line names
 * every system package CI installs (.ci/run), runs apt-get directly as root and through sudo
 * otherwise (a bare `sudo` fails where there is none), and ends in `npm start`, which is
 * `kvwire demo`. The command line itself runs here against stand-ins for id, sudo, apt-get and
 * npm that record how they were called.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');

/** The shell blocks of the README's quick start, in order. */
function quickStartCommands(): string[] {
  const start = readme.indexOf('## Quick start');
  const end = readme.indexOf('\n## ', start + 1);
  expect(start).toBeGreaterThanOrEqual(0);
  const section = readme.slice(start, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.trim());
}

/** Packages of every `apt-get install` in a shell text (continuation lines joined). */
function aptPackages(text: string): Set<string> {
  const joined = text.replace(/\\\n/g, ' ');
  const out = new Set<string>();
  for (const m of joined.matchAll(/apt-get install ([^\n&;]*)/g)) {
    for (const word of m[1]!.split(/\s+/)) if (word !== '' && !word.startsWith('-')) out.add(word);
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'kvwire-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `command` with stand-ins on PATH; returns the calls they recorded. */
function runWithStandIns(command: string, uid: number, withSudo: boolean): { status: number | null; calls: string[] } {
  const bin = mkdtempSync(join(dir, 'bin-'));
  const log = join(bin, 'calls.log');
  const standIn = (name: string, body: string): void => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  standIn('id', `[ "$1" = "-u" ] && echo ${uid}`);
  standIn('apt-get', `echo "apt-get $*" >> ${log}`);
  standIn('npm', `echo "npm $*" >> ${log}`);
  if (withSudo) standIn('sudo', `echo "sudo $1" >> ${log}; exec "$@"`);
  // Only the stand-ins on PATH: no real apt-get, npm or sudo is reachable (the shell's own builtins do the rest).
  const r = spawnSync('/bin/bash', ['-c', command], {
    env: { PATH: bin, HOME: dir },
    encoding: 'utf8',
  });
  let calls: string[] = [];
  try {
    calls = readFileSync(log, 'utf8').trim().split('\n');
  } catch {
    // nothing was called
  }
  return { status: r.status, calls };
}

describe("the README's quick start", () => {
  const [install, tests] = quickStartCommands();

  it('has two commands: install and run the main job; run the tests', () => {
    expect(quickStartCommands()).toHaveLength(2);
    expect(install).toMatch(/&& npm install && npm start$/);
    expect(tests).toBe('npm install && npm test');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['start']).toBe('node bin/kvwire.js demo');
    expect(pkg.scripts['test']).toMatch(/vitest run/);
    expect(ci).toMatch(/^npm test$/m);
  });

  it('installs every package CI installs', () => {
    const needed = aptPackages(ci);
    expect(needed.size).toBeGreaterThan(10);
    expect(needed).toContain('redis-server');
    expect(needed).toContain('prometheus');
    expect(needed).toContain('chromium');
    const listed = aptPackages(install!);
    expect([...needed].filter((p) => !listed.has(p))).toEqual([]);
  });

  it('runs apt-get directly as root, with no sudo needed', () => {
    const r = runWithStandIns(install!, 0, false);
    expect(r.status).toBe(0);
    expect(r.calls[0]).toBe('apt-get update');
    expect(r.calls[1]).toMatch(/^apt-get install -y /);
    expect(r.calls.slice(2)).toEqual(['npm install', 'npm start']);
  });

  it('runs apt-get through sudo otherwise, and npm as the user', () => {
    const r = runWithStandIns(install!, 1000, true);
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([
      'sudo apt-get',
      'apt-get update',
      'sudo apt-get',
      expect.stringMatching(/^apt-get install -y /),
      'npm install',
      'npm start',
    ]);
  });

  it('stops before npm when neither root nor sudo is there', () => {
    const r = runWithStandIns(install!, 1000, false);
    expect(r.status).not.toBe(0);
    expect(r.calls).toEqual([]);
  });
});
