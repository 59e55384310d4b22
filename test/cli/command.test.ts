// The rules every kvwire command shares (cli/kit): errors that name the flag and exit 2, environment
// fallbacks, output files checked up front, transport names checked, a taken port named by its flag.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Option } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { checkOutputFile, checkTransports, listenError } from '../../cli/kit/checks.js';
import {
  asUsageError,
  collect,
  kvwireCommand,
  repeatable,
  runCommand,
  UsageError,
  type CommandOutput,
} from '../../cli/kit/command.js';
import { boolean, hostPort, integer, oneOf } from '../../cli/kit/values.js';
import { COMMANDS } from '../../cli/commands/registry.js';
import { main, quietUcx } from '../../cli/main.js';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { capabilities } from '../../lib/transport/capabilities.js';

/** Captures what a command printed. */
function capture(): CommandOutput & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return { out: (s) => void (out += s), err: (s) => void (err += s), stdout: () => out, stderr: () => err };
}

/** A small command declared as a command module would declare it. */
function sample(seen: Record<string, unknown>[] = []) {
  return kvwireCommand('info')
    .option('--blocks <n>', 'blocks', integer(1))
    .addOption(new Option('--role <role>', 'role').argParser(oneOf(['prefill', 'decode'])).env('KVWIRE_TEST_ROLE'))
    .addOption(new Option('--prefill-mode <bool>', 'prefill mode').argParser(boolean).env('KVWIRE_TEST_PREFILL'))
    .addOption(repeatable(new Option('--allow <entry>', 'repeatable').argParser(collect(String))))
    .option('--listen <host:port>', 'where to listen', hostPort)
    .option('--json', 'JSON')
    .run(async (opts) => {
      seen.push(opts);
      if (opts['fail'] !== undefined) return 1;
      return 0;
    });
}

const scratch = mkdtempSync(join(tmpdir(), 'kvwire-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('kvwire commands (cli/kit)', () => {
  it('parses declared options with their parsers and runs the action, whose result is the exit code', async () => {
    const seen: Record<string, unknown>[] = [];
    const io = capture();
    const code = await runCommand(
      sample(seen),
      ['--blocks', '1_024', '--role=decode', '--allow', 'a:1', '--allow', 'b', '--listen', '[::1]:0', '--json'],
      io,
    );
    expect(code).toBe(0);
    expect(seen[0]).toEqual({
      blocks: 1024,
      role: 'decode',
      allow: ['a:1', 'b'],
      listen: { host: '::1', port: 0 },
      json: true,
    });
    expect(io.stderr()).toBe('');
  });

  it.each([
    [['--blocks', '0'], "kvwire info: --blocks must be a positive integer, not '0'"],
    [['--blocks'], 'kvwire info: --blocks needs a value'],
    [['--blcks', '3'], 'kvwire info: unknown option --blcks (Did you mean --blocks?)'],
    [['--role', 'router'], "kvwire info: --role must be prefill or decode, not 'router'"],
    [['--json', '--json'], 'kvwire info: --json is given twice'],
    [['--json=yes'], 'kvwire info: --json takes no value'],
    [['stray'], "kvwire info: unexpected argument 'stray' (options start with --)"],
    [
      ['--listen', 'localhost'],
      "kvwire info: --listen must be HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000, not 'localhost'",
    ],
  ])('refuses %j with exit code 2 and a message naming the flag', async (argv, message) => {
    const io = capture();
    expect(await runCommand(sample(), argv, io)).toBe(2);
    expect(io.stderr()).toBe(`${message}\n(see 'kvwire info --help')\n`);
    expect(io.stdout()).toBe('');
  });

  it('takes a value from the environment when the flag is absent, and names the variable when it is bad', async () => {
    const seen: Record<string, unknown>[] = [];
    process.env['KVWIRE_TEST_ROLE'] = 'prefill';
    process.env['KVWIRE_TEST_PREFILL'] = 'true';
    try {
      expect(await runCommand(sample(seen), [], capture())).toBe(0);
      expect(seen[0]).toMatchObject({ role: 'prefill', prefillMode: true });
      expect(await runCommand(sample(seen), ['--role', 'decode'], capture())).toBe(0);
      expect(seen[1]).toMatchObject({ role: 'decode' }); // the flag wins over the environment
      process.env['KVWIRE_TEST_PREFILL'] = 'maybe';
      const io = capture();
      expect(await runCommand(sample(), [], io)).toBe(2);
      expect(io.stderr()).toMatch(
        /^kvwire info: KVWIRE_TEST_PREFILL \(the environment's --prefill-mode\) must be true or false, not 'maybe'/,
      );
    } finally {
      delete process.env['KVWIRE_TEST_ROLE'];
      delete process.env['KVWIRE_TEST_PREFILL'];
    }
  });

  it('prints help generated from the declarations and exits 0', async () => {
    const io = capture();
    expect(await runCommand(sample(), ['--help'], io)).toBe(0);
    expect(io.stdout()).toContain('Usage: kvwire info [options]');
    expect(io.stdout()).toMatch(/--role <role>\s+role \(env: KVWIRE_TEST_ROLE\)/);
  });

  it('exits 2 for a UsageError the action throws, 1 with the code for any other error', async () => {
    const usage = kvwireCommand('info').run(() => {
      throw new UsageError('--plot x.svg: the folder does not exist');
    });
    let io = capture();
    expect(await runCommand(usage, [], io)).toBe(2);
    expect(io.stderr()).toMatch(/^kvwire info: --plot x\.svg: the folder does not exist\n/);
    const failing = kvwireCommand('info').run(() => {
      throw new KvwireError(ErrorCode.PEER_UNREACHABLE, 'no route to the target');
    });
    io = capture();
    expect(await runCommand(failing, [], io)).toBe(1);
    expect(io.stderr()).toBe('kvwire info: no route to the target (ERR_KVWIRE_PEER_UNREACHABLE)\n');
  });

  it("rewords a library's invalid-argument error in the command line's words", () => {
    const e = new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'numBlocks 3 cannot hold 4 prompts; raise numBlocks to 256 or lower concurrency',
      { field: 'numBlocks' },
    );
    const u = asUsageError(e, { numBlocks: '--blocks', concurrency: '--concurrency' });
    expect(u).toBeInstanceOf(UsageError);
    expect((u as Error).message).toBe('--blocks 3 cannot hold 4 prompts; raise --blocks to 256 or lower --concurrency');
    const other = new KvwireError(ErrorCode.TIMEOUT, 'numBlocks took too long');
    expect(asUsageError(other, { numBlocks: '--blocks' })).toBe(other);
  });

  it('checks output files before the work starts', () => {
    expect(() => checkOutputFile('--plot', join(scratch, 'out.svg'))).not.toThrow();
    expect(() => checkOutputFile('--plot', join(scratch, 'missing', 'out.svg'))).toThrow(
      /^--plot .*: the folder .*missing does not exist/,
    );
    expect(() => checkOutputFile('--markdown', scratch)).toThrow(/^--markdown .*: that is a folder/);
    const file = join(scratch, 'plain');
    writeFileSync(file, '');
    expect(() => checkOutputFile('--json', join(file, 'x.json'))).toThrow(/^--json .* is not a folder/);
  });

  it.runIf(capabilities().engines.ucx.available)(
    'tells an unknown transport from one this machine lacks, before UCX sees it',
    () => {
      expect(() => checkTransports('--transports', ['tcp', 'sm', 'posix', '^cma'])).not.toThrow();
      expect(() => checkTransports('--transports', ['tpc'])).toThrow(/^--transports: unknown transport 'tpc'/);
      expect(() => checkTransports('--transports', ['tcp,knem'])).toThrow(
        /^--transports: transport 'knem' is not available on this machine: UCX here reaches peers over/,
      );
    },
  );

  it('names the flag when the port to listen on is taken', async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    const second = createServer();
    const err = await new Promise<unknown>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    taken.close();
    const wrapped = new KvwireError(ErrorCode.INVALID_ARGUMENT, 'could not listen', {}, { cause: err });
    for (const e of [err, wrapped]) {
      const u = listenError(e, '--listen', `127.0.0.1:${port}`);
      expect(u).toBeInstanceOf(UsageError);
      expect((u as Error).message).toBe(
        `--listen 127.0.0.1:${port}: the port is in use by another process; choose another with --listen (port 0 lets the system pick)`,
      );
    }
    const other = new Error('boom');
    expect(listenError(other, '--listen', 'x:1')).toBe(other);
  });
});

describe('kvwire (the dispatcher)', () => {
  it('silences UCX unless UCX_LOG_LEVEL asks for its log, which then goes to stderr', () => {
    const env: NodeJS.ProcessEnv = {};
    quietUcx(env);
    expect(env).toEqual({ UCX_LOG_LEVEL: 'fatal', UCX_LOG_FILE: 'stderr' });
    const asked: NodeJS.ProcessEnv = { UCX_LOG_LEVEL: 'debug' };
    quietUcx(asked);
    expect(asked).toEqual({ UCX_LOG_LEVEL: 'debug', UCX_LOG_FILE: 'stderr' });
  });

  it('lists every registered command, each of which loads and declares itself under its name', async () => {
    const io = capture();
    expect(await main(['--help'], io)).toBe(0);
    for (const [name, entry] of Object.entries(COMMANDS)) {
      expect(io.stdout()).toContain(`  ${name}`);
      const cmd = (await entry.load()).command();
      expect(cmd.name()).toBe(name);
      expect(cmd.description()).toBe(entry.summary);
    }
  });

  it('refuses an unknown command with exit code 2', async () => {
    const io = capture();
    expect(await main(['frobnicate'], io)).toBe(2);
    expect(io.stderr()).toMatch(/^kvwire: unknown command 'frobnicate'/);
  });
});
