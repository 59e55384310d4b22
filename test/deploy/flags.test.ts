// Every `kvwire <command>` line in the manifests and in docs/deploy.md is parsed by that command's
// own declarations (cli/commands, commander through cli/kit's parseOptions) and put through the
// cross-flag checks its action runs before starting: an unknown flag, a bad value, a flag given
// twice or a bad combination fails here, not in a pod's CrashLoopBackOff. The environment variables
// the manifests set on kvwire containers are checked too: each must be read by the command (an
// option's env fallback or its help), by kvwire's library, or by UCX (`ucx_info -c` lists it).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMANDS, type CommandEntry } from '../../cli/commands/registry.js';
import { schedulingOptions, type SchedulingFlags } from '../../cli/commands/scheduling-flags.js';
import { sidecarOptions, type SidecarFlags } from '../../cli/commands/sidecar.js';
import { parseOptions, runCommand } from '../../cli/kit/command.js';
import { kvwireContainers, loadManifests, ROOT, type KvwireContainer } from './manifests.js';

const manifests = loadManifests();
const containers = kvwireContainers(manifests);

/** What the downward API would give, for the fields the manifests read. */
const FIELD_EXAMPLES: Record<string, string> = {
  'status.podIP': '10.244.1.17',
  'metadata.name': 'llama-decode-predictor-7d9f8c6b5-2xkqp',
  'metadata.namespace': 'llm',
};

/** The container's environment as Kubernetes would set it, downward API fields filled with examples. */
function containerEnv(c: KvwireContainer): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of c.container.env ?? []) {
    if (e.value !== undefined) env.set(e.name, e.value);
    else {
      const path = (e.valueFrom as { fieldRef?: { fieldPath: string } } | undefined)?.fieldRef?.fieldPath;
      if (path === undefined || FIELD_EXAMPLES[path] === undefined)
        throw new Error(`${c.manifest.file} ${c.container.name}: no example for env ${e.name}`);
      env.set(e.name, FIELD_EXAMPLES[path]!);
    }
  }
  return env;
}

/** Kubernetes' `$(VAR)` expansion of container arguments (`$$` escapes; unknown references stay). */
function expand(arg: string, env: Map<string, string>): string {
  return arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name?: string) =>
    m === '$$' ? '$' : (env.get(name!) ?? m),
  );
}

/** The command lines of docs/deploy.md: `kvwire ...` lines of its sh blocks, continuations joined. */
function docCommandLines(): string[][] {
  const text = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
  const lines: string[][] = [];
  for (const block of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n\s*/g, ' ');
    for (const line of joined.split('\n')) {
      const words = line.trim().split(/\s+/);
      if (words[0] === 'kvwire') lines.push(words.slice(1));
    }
  }
  return lines;
}

async function declared(name: string): Promise<Command | undefined> {
  const entry = (COMMANDS as Record<string, CommandEntry>)[name];
  return entry === undefined ? undefined : (await entry.load()).command();
}

/** The help a command prints (with its prose), for environment variables it reads in its action. */
async function helpOf(name: string): Promise<string> {
  const cmd = (await declared(name))!;
  let text = '';
  await runCommand(cmd, ['--help'], { out: (s) => void (text += s), err: (s) => void (text += s) });
  return text;
}

/**
 * The second step some commands take before they start, checking flags together (which parsing
 * alone does not): the same functions their actions call.
 */
const RESOLVE: Record<string, (flags: never) => unknown> = {
  sidecar: (f: SidecarFlags) => sidecarOptions(f),
  epp: (f: SchedulingFlags) => schedulingOptions(f),
  router: (f: SchedulingFlags) => schedulingOptions(f),
};

/**
 * Parses with the command's declarations, the environment set as the pod would set it, then runs
 * the command's own cross-flag checks where it has them.
 */
function parseWith(cmd: Command, args: readonly string[], env: Map<string, string>): unknown {
  const saved = new Map([...env.keys()].map((k) => [k, process.env[k]]));
  try {
    for (const [k, v] of env) process.env[k] = v;
    const flags = parseOptions(cmd, args);
    return RESOLVE[cmd.name()]?.(flags as never) ?? flags;
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Does kvwire's library read this variable? (its name as a string literal in lib/) */
function libraryReads(name: string): boolean {
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
  return files(join(ROOT, 'lib'))
    .filter((f) => f.endsWith('.ts'))
    .some((f) => readFileSync(f, 'utf8').includes(`'${name}'`));
}

let ucxVariables: Set<string> | undefined;
/** The configuration variables this UCX knows (`ucx_info -c`). */
function ucxKnows(name: string): boolean {
  ucxVariables ??= new Set(
    execFileSync('ucx_info', ['-c'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split('=')[0]!.trim()),
  );
  return ucxVariables.has(name);
}

const used = [...new Set([...containers.map((c) => c.command), ...docCommandLines().map((l) => l[0]!)])].sort();

describe('kvwire command lines in deploy/ and docs/deploy.md', () => {
  it('finds the commands the deployment uses', () => {
    expect(used).toEqual(expect.arrayContaining(['engine', 'epp', 'sidecar']));
  });

  it.each(used)(
    'kvwire %s: every use parses with its declared options and passes its own cross-flag checks',
    async (name) => {
      const cmdOf = async (): Promise<Command> => {
        const cmd = await declared(name);
        expect(cmd, `cli/commands/registry.ts has no '${name}', which the deployment runs`).toBeDefined();
        return cmd!;
      };
      for (const c of containers.filter((x) => x.command === name)) {
        const env = containerEnv(c);
        const args = c.args.map((a) => expand(a, env));
        for (const a of args) expect(a, `${c.manifest.file} ${c.container.name}: unexpanded ${a}`).not.toMatch(/\$\(/);
        const cmd = await cmdOf();
        expect(() => parseWith(cmd, args, env), `${c.manifest.file} ${c.where} ${c.container.name}`).not.toThrow();
      }
      for (const words of docCommandLines().filter((l) => l[0] === name)) {
        const cmd = await cmdOf();
        expect(
          () => parseWith(cmd, words.slice(1), new Map()),
          `docs/deploy.md: kvwire ${words.join(' ')}`,
        ).not.toThrow();
      }
    },
  );

  it.each(['engine', 'sidecar', 'epp'])(
    'kvwire %s: refuses an unknown flag, a bad value and a bad combination (the check can fail)',
    async (name) => {
      const c = containers.find((x) => x.command === name)!;
      const env = containerEnv(c);
      const args = c.args.map((a) => expand(a, env));
      const fresh = async (): Promise<Command> => (await declared(name))!;
      const cmd1 = await fresh();
      expect(() => parseWith(cmd1, [...args, '--no-such-flag=1'], env)).toThrow(/unknown option --no-such-flag/);
      const badListen = args.map((a) => (a.startsWith('--listen=') ? '--listen=0.0.0.0:99999' : a));
      const cmd2 = await fresh();
      expect(() => parseWith(cmd2, badListen, env)).toThrow(/--listen/);
      if (name === 'epp') {
        // Parses, but the command refuses it before starting: what RESOLVE runs.
        const noUrl = args.filter((a) => !a.startsWith('--redis-url='));
        const cmd3 = await fresh();
        expect(() => parseWith(cmd3, noUrl, env)).toThrow(/--index redis needs --redis-url/);
      }
    },
  );

  it('sets only environment variables that the command, kvwire or UCX reads', async () => {
    for (const c of containers) {
      const cmd = (await declared(c.command))!;
      const declaredEnv = new Set(cmd.options.map((o) => o.envVar).filter((v) => v !== undefined));
      const help = await helpOf(c.command);
      const referenced = new Set(
        c.args.flatMap((a) => [...a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]!)),
      );
      for (const e of c.container.env ?? []) {
        const ok =
          declaredEnv.has(e.name) ||
          new RegExp(`\\b${e.name}\\b`).test(help) ||
          referenced.has(e.name) ||
          libraryReads(e.name) ||
          (e.name.startsWith('UCX_') && ucxKnows(e.name));
        expect(ok, `${c.manifest.file} ${c.container.name}: env ${e.name} is read by nothing`).toBe(true);
      }
    }
  });
});
