/**
 * How every `kvwire` command parses its arguments: a commander `Command` (see {@link kvwireCommand})
 * whose options are declared once, with their parsers, defaults and environment fallbacks, and from
 * which `--help` is generated; and {@link runCommand}, which runs it with one set of rules for
 * errors and exit codes:
 *
 * - 0: done; 1: the work failed (the action's own exit code, or an error it threw);
 * - 2: the command line (or an environment fallback) was wrong: a {@link UsageError}, printed as
 *   `kvwire <command>: <what is wrong, naming the flag>`.
 *
 * @packageDocumentation
 */
import { Command, CommanderError, type Option } from 'commander';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { COMMANDS, type CommandName } from '../commands/registry.js';

/**
 * Bad command-line input: `kvwire <command>: <message>` on stderr and exit code 2. The message names
 * the flag as the user typed it (`--blocks`, never the API option behind it).
 */
export class UsageError extends Error {
  /** @param message - what is wrong with the command line, and how to write it. */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An action's result: the process exit code (0 ok, 1 failed). */
export type ExitCode = number;

/** The long flag (`--batches`) of a commander option flags string (`-b, --batches <list>`). */
function longFlag(flags: string): string {
  return /--[\w-]+/.exec(flags)?.[0] ?? flags;
}

/**
 * Commander's own parse errors, reworded to our convention: the flag first, then what it needs.
 * Anything not recognised keeps commander's words (without its `error: ` prefix).
 */
function reword(message: string): string {
  const m = message.replace(/^error: /, '');
  let r = /^option '([^']+)' argument '([\s\S]*)' is invalid\. ([\s\S]*)$/.exec(m);
  if (r) return `${longFlag(r[1]!)} ${r[3]!}, not '${r[2]!}'`;
  r = /^option '([^']+)' value '([\s\S]*)' from env '([^']+)' is invalid\. ([\s\S]*)$/.exec(m);
  if (r) return `${r[3]!} (the environment's ${longFlag(r[1]!)}) ${r[4]!}, not '${r[2]!}'`;
  r = /^option '([^']+)' argument missing$/.exec(m);
  if (r) return `${longFlag(r[1]!)} needs a value`;
  r = /^unknown option '([^']+)'([\s\S]*)$/.exec(m);
  if (r) return `unknown option ${r[1]!}${r[2]!.replace(/^\n/, ' ')}`;
  r = /^required option '([^']+)' not specified$/.exec(m);
  if (r) return `${longFlag(r[1]!)} is required`;
  r = /^option '([^']+)' cannot be used with option '([^']+)'$/.exec(m);
  if (r) return `give ${longFlag(r[1]!)} or ${longFlag(r[2]!)}, not both`;
  return m;
}

/**
 * A commander Command whose parse errors throw {@link UsageError} (instead of printing and exiting)
 * and whose action ({@link KvwireCommand.run}) returns the exit code.
 */
export class KvwireCommand extends Command {
  /** What the action returned (undefined until it ran, e.g. after `--help`). */
  exitCode: ExitCode | undefined;

  override error(message: string, options?: { code?: string; exitCode?: number }): never {
    throw new UsageError(options?.code?.startsWith('commander.') === true ? reword(message) : message);
  }

  /**
   * Sets the command's action: `fn` gets the parsed options (and the command, whose `args` holds
   * any positional arguments) and returns the exit code (0 ok, 1 failed). A {@link UsageError} it
   * throws exits 2; any other error exits 1 with its message and code.
   */
  run<T = Record<string, unknown>>(fn: (options: T, cmd: this) => ExitCode | Promise<ExitCode>): this {
    return this.action(async (...args: unknown[]) => {
      this.exitCode = await fn(args.at(-2) as T, this);
    });
  }
}

/**
 * A new `kvwire <name>` command, described as the registry ({@link COMMANDS}) summarises it. Declare
 * its options on it (`.option()`, `.addOption(new Option(...).argParser(...).env(...))`), then
 * `.run(async (opts) => exitCode)`; run it with {@link runCommand}.
 */
export function kvwireCommand(name: CommandName): KvwireCommand {
  const cmd = new KvwireCommand(name);
  cmd
    .description(COMMANDS[name].summary)
    .helpOption('-h, --help', 'show this help')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .configureHelp({ helpWidth: 100, showGlobalOptions: false });
  cmd.usage('[options]');
  new Command('kvwire').addCommand(cmd); // so that its usage line reads `kvwire <name> [options]`
  return cmd;
}

/**
 * Checks what commander lets through: a flag given twice (the last would silently win), a value
 * after a flag that takes none (`--check=yes`), and a stray word (`kvwire bench tcp`).
 */
function precheck(cmd: Command, argv: readonly string[]): void {
  const byLong = new Map<string, Option>();
  for (const o of cmd.options) if (o.long !== undefined) byLong.set(o.long, o);
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (!arg.startsWith('-')) {
      if (cmd.registeredArguments.length === 0)
        throw new UsageError(`unexpected argument '${arg}' (options start with --)`);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const opt = byLong.get(name) ?? cmd.options.find((o) => o.short === name);
    if (opt === undefined) return; // commander reports it, with a suggestion
    const key = opt.long ?? name;
    if (seen.has(key) && !opt.variadic && !REPEATABLE.has(opt)) throw new UsageError(`${key} is given twice`);
    seen.add(key);
    if (opt.isBoolean() || opt.negate) {
      if (eq > 0) throw new UsageError(`${key} takes no value`);
    } else if (eq < 0 && opt.required) {
      i++; // its value, whatever it looks like (commander reports a missing one)
    }
  }
}

const REPEATABLE = new WeakSet<Option>();

/**
 * Marks an option as one that may be given more than once (`--allow a --allow b`); its argParser
 * receives the previous value to collect into (see {@link collect}).
 */
export function repeatable(option: Option): Option {
  REPEATABLE.add(option);
  return option;
}

/** An argParser that collects a repeatable option's values into an array, each parsed by `parse`. */
export function collect<T>(parse: (text: string) => T): (text: string, previous: T[] | undefined) => T[] {
  return (text, previous) => [...(previous ?? []), parse(text)];
}

/** Where a command writes (tests pass their own). */
export interface CommandOutput {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
}

/** stdout and stderr. */
export const PROCESS_OUTPUT: CommandOutput = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};

/** The `code` of a KvwireError (or any error that carries a string code), for the error line. */
function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && !code.startsWith('commander.') ? code : undefined;
}

/**
 * Parses `argv` (the arguments after the command's name) with `cmd` and runs its action. Returns
 * the exit code: the action's, 0 after `--help`, 2 for a {@link UsageError} (from commander or from
 * the action), 1 for any other error the action threw (printed with its code).
 */
export async function runCommand(
  cmd: Command,
  argv: readonly string[],
  output: CommandOutput = PROCESS_OUTPUT,
): Promise<ExitCode> {
  const name = `kvwire ${cmd.name()}`;
  cmd.configureOutput({ writeOut: output.out, writeErr: output.err, outputError: () => {} });
  try {
    precheck(cmd, argv);
    await cmd.parseAsync([...argv], { from: 'user' });
    return cmd instanceof KvwireCommand ? (cmd.exitCode ?? 0) : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') {
        return 0;
      }
      output.err(`${name}: ${reword(e.message)}\n(see '${name} --help')\n`);
      return 2;
    }
    if (e instanceof UsageError) {
      output.err(`${name}: ${e.message}\n(see '${name} --help')\n`);
      return 2;
    }
    const code = codeOf(e);
    output.err(`${name}: ${(e as Error)?.message ?? String(e)}${code !== undefined ? ` (${code})` : ''}\n`);
    return 1;
  }
}

/**
 * Parses `argv` with `cmd` without running its action, and returns the parsed option values
 * (for unit tests of a command's options, and for commands that resolve options in a second step).
 *
 * @throws UsageError for anything commander or {@link precheck} refuses.
 */
export function parseOptions<T>(cmd: Command, argv: readonly string[]): T {
  cmd.configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} });
  cmd.action(() => {});
  precheck(cmd, argv);
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) throw new UsageError(reword(e.message));
    throw e;
  }
  return cmd.opts<T & Record<string, unknown>>();
}

/**
 * Rewords a library's `ERR_KVWIRE_INVALID_ARGUMENT` in the words of the command line: every API
 * option named in `flags` (`numBlocks`) becomes its flag (`--blocks`), and the error a
 * {@link UsageError} (exit 2). Returns any other error unchanged. Use it as
 * `catch (e) { throw asUsageError(e, { numBlocks: '--blocks' }) }`.
 */
export function asUsageError(e: unknown, flags: Readonly<Record<string, string>>): unknown {
  if (!(e instanceof KvwireError) || e.code !== ErrorCode.INVALID_ARGUMENT) return e;
  const field = typeof e.details.field === 'string' ? e.details.field : undefined;
  let message = e.message;
  for (const [api, flag] of Object.entries(flags)) {
    message = message.replace(new RegExp(`(?<![\\w.-])${api.replace(/[.$]/g, '\\$&')}(?![\\w-])`, 'g'), flag);
  }
  return field === undefined || field in flags || message !== e.message ? new UsageError(message) : e;
}

/** The arguments `cmd` was run with, as given (for a report that records its command line). */
export function argvOf(cmd: Command): readonly string[] {
  // commander keeps them as rawArgs (untyped in its declarations); with { from: 'user' } they are argv.
  return (cmd as unknown as { rawArgs?: string[] }).rawArgs ?? [];
}
