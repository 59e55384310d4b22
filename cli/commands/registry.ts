/**
 * Every `kvwire` command: its name, the one-line summary `kvwire --help` lists (and the command's
 * own `--help` repeats), and how to load it. A command's module is loaded only when it runs, so
 * `kvwire info` never loads the benchmark.
 *
 * Commands marked `repoOnly` live outside the published package (benchmarks, in bench/): from an
 * installed package they say where to find them.
 *
 * @packageDocumentation
 */
import type { Command } from 'commander';

/** What a command module exports: a function that declares the command (see cli/kit/command.ts). */
export interface CommandModule {
  /** Declares the command, its options and its action. */
  command(): Command;
}

/** A registry entry. */
export interface CommandEntry {
  /** One line for `kvwire --help`. */
  readonly summary: string;
  /** Loads the command's module. */
  readonly load: () => Promise<CommandModule>;
  /** The module, relative to this file, when it is not part of the published package. */
  readonly repoOnly?: string;
}

/** The commands, in the order `kvwire --help` lists them. */
export const COMMANDS = {
  info: {
    summary: 'what this build and machine can do (engines, UCX transports, CUDA)',
    load: () => import('./info.js'),
  },
  engine: {
    summary: 'a prefill/decode worker serving the OpenAI API over llama.cpp (or the synthetic runtime)',
    load: () => import('./engine.js'),
  },
  sidecar: {
    summary: 'routing sidecar beside a decode worker: checks the prefill target (SSRF allowlist), runs the P/D flow',
    load: () => import('./sidecar.js'),
  },
  demo: {
    summary:
      'the whole P/D serving path on this machine (npm start): router, sidecars, prefill and decode workers; every output checked, HTML report',
    load: () => import('./demo.js'),
  },
  router: {
    summary:
      "KV-cache-aware HTTP gateway: picks the decode worker holding the prompt's prefix, names a prefill worker, streams back",
    load: () => import('./router.js'),
  },
  epp: {
    summary:
      'Envoy endpoint picker (ext_proc gRPC, Gateway API Inference Extension) with the same KV-cache-aware decision',
    load: () => import('./epp.js'),
  },
  bench: {
    summary: 'transfer-throughput benchmark, side by side with raw UCX',
    load: () => import('../../bench/transfer/command.js'),
    repoOnly: '../../bench/transfer/command.js',
  },
  'bench-index': {
    summary: 'KV block index benchmark: scoring latency and memory per key, memory and Redis',
    load: () => import('../../bench/kv-index/bench-index.js'),
    repoOnly: '../../bench/kv-index/bench-index.js',
  },
  'bench-router': {
    summary:
      'scheduler benchmark: pick latency with 1,000 pods and 10M blocks (memory, Redis, Redis Cluster), KV event ingestion rate',
    load: () => import('../../bench/scheduler/bench-router.js'),
    repoOnly: '../../bench/scheduler/bench-router.js',
  },
} satisfies Record<string, CommandEntry>;

/** The name of a registered command. */
export type CommandName = keyof typeof COMMANDS;
