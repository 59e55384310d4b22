/**
 * The `kvwire` command line: a dispatcher over subcommands, each in its own module, loaded only
 * when used (so `kvwire info` never loads the benchmark).
 *
 * @packageDocumentation
 */

/** A subcommand: returns the process exit code. */
export type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  info: {
    summary: 'what this build and machine can do (engines, UCX transports, CUDA)',
    load: async () => (await import('./info.js')).main,
  },
  bench: {
    summary: 'transfer-throughput benchmark, side by side with raw UCX',
    load: async () => (await import('./bench.js')).main,
  },
  'bench-index': {
    summary: 'KV block index benchmark: scoring latency and memory per key, memory and Redis',
    load: async () => (await import('./bench-index.js')).main,
  },
  engine: {
    summary: 'a prefill/decode worker serving the OpenAI API over llama.cpp (or the synthetic runtime)',
    load: async () => (await import('./engine.js')).main,
  },
  demo: {
    summary: 'P/D hand-off end to end: a prefill and a decode process over UCX, every byte verified',
    load: async () => (await import('./demo.js')).main,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return `usage: kvwire <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'kvwire <command> --help' for a command's options.`;
}

/** Runs the CLI with `argv` (without node and the script); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { kvwireVersion } = await import('../transport/capabilities.js');
    console.log(kvwireVersion());
    return 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    console.error(`kvwire: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  let run: Command;
  try {
    run = await cmd.load();
  } catch (e) {
    console.error(`kvwire ${name}: this command is not available in this build (${(e as Error).message})`);
    return 2;
  }
  return run(rest);
}
