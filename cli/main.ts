/**
 * The `kvwire` command line: `kvwire <command> [options]`. The commands are listed in
 * commands/registry.ts; each declares its options with commander through cli/kit (see
 * docs/cli.md).
 *
 * @packageDocumentation
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PROCESS_OUTPUT, runCommand, type CommandOutput } from './kit/command.js';
import { COMMANDS, type CommandEntry } from './commands/registry.js';

/**
 * UCX prints its own warnings and errors (a peer that died, a transport it skipped); the CLI says
 * what happened in its own words, so UCX's lines are silenced unless the user asks for them by
 * setting UCX_LOG_LEVEL (then they go to stderr: stdout carries JSON and CSV). Set before any
 * command loads the addon (UCX reads its environment when it loads); child processes inherit it.
 */
export function quietUcx(env: NodeJS.ProcessEnv = process.env): void {
  if (env['UCX_LOG_LEVEL'] === undefined) env['UCX_LOG_LEVEL'] = 'fatal';
  env['UCX_LOG_FILE'] ??= 'stderr';
}

/** True when the command's module is here (repository-only commands are absent from the package). */
function present(entry: CommandEntry): boolean {
  if (entry.repoOnly === undefined) return true;
  const url = new URL(entry.repoOnly, new URL('./commands/registry.js', import.meta.url));
  const file = fileURLToPath(url);
  return existsSync(file) || existsSync(file.replace(/\.js$/, '.ts'));
}

function usage(): string {
  const entries = Object.entries(COMMANDS) as [string, CommandEntry][];
  const width = Math.max(...entries.map(([n]) => n.length)) + 2;
  const lines = entries.filter(([, c]) => present(c)).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`);
  return `usage: kvwire <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'kvwire <command> --help' for a command's options.`;
}

/** Runs the CLI with `argv` (without node and the script); returns the exit code. */
export async function main(argv: readonly string[], output: CommandOutput = PROCESS_OUTPUT): Promise<number> {
  quietUcx();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? output.err : output.out)(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { kvwireVersion } = await import('../lib/transport/capabilities.js');
    output.out(`${kvwireVersion()}\n`);
    return 0;
  }
  const entry = (COMMANDS as Record<string, CommandEntry>)[name];
  if (entry === undefined || !present(entry)) {
    const why =
      entry === undefined
        ? `unknown command '${name}'`
        : `'${name}' is not part of the published package: run it from a clone of the repository (npm install, then npx kvwire ${name})`;
    output.err(`kvwire: ${why}\n\n${usage()}\n`);
    return 2;
  }
  let module;
  try {
    module = await entry.load();
  } catch (e) {
    output.err(`kvwire ${name}: this command could not be loaded (${(e as Error).message})\n`);
    return 1;
  }
  return runCommand(module.command(), rest, output);
}
