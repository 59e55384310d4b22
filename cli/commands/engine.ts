/**
 * `kvwire engine`: a prefill, decode or combined worker serving the OpenAI API (docs/engine.md).
 * Thin: parse flags and the InferenceService environment, call `createEngineServer()`, print one
 * ready line, drain on SIGTERM/SIGINT.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { listenError } from '../kit/checks.js';
import { asUsageError, kvwireCommand, UsageError } from '../kit/command.js';
import { boolean, hostPort, integer, oneOf } from '../kit/values.js';

/** What the flags parse to. */
interface EngineFlags {
  role?: 'prefill' | 'decode' | 'both';
  prefillMode?: boolean;
  decodeMode?: boolean;
  listen: { host: string; port: number };
  model?: string;
  runtime: 'llama' | 'synthetic';
  servedModelName?: string;
  podName?: string;
  maxBatchSize?: number;
  maxQueue?: number;
  numBlocks?: number;
  maxModelLen?: number;
  threads?: number;
  layers?: number;
  enableKvTransfer?: boolean;
  sideChannel?: { host: string; port: number };
  advertiseHost?: string;
  kvSecretFile?: string;
  kvLoadFailurePolicy?: 'recompute' | 'fail';
  transports?: string;
  kvEventsEndpoint?: string;
  kvEventsReplayEndpoint?: string;
  kvEventsFormat?: 'map' | 'array';
  leaseMs?: number;
  leaseExtensionMs?: number;
  leaseHeartbeatMs?: number;
  maxBodyBytes?: number;
  drainTimeoutMs: number;
  debugDiscardPulledKv?: boolean;
  quiet?: boolean;
}

/** The flag behind each library option, for the library's INVALID_ARGUMENT errors. */
const FLAGS = {
  model: '--model',
  numBlocks: '--num-blocks',
  secret: '--kv-secret-file (or KVWIRE_KV_SECRET)',
  listen: '--listen',
  leaseMs: '--lease-ms (or KVWIRE_LEASE_MS)',
  leaseExtensionMs: '--lease-extension-ms (or KVWIRE_LEASE_EXTENSION_MS)',
  heartbeatIntervalMs: '--lease-heartbeat-ms (or KVWIRE_LEASE_HEARTBEAT_MS)',
};

/** Longest timer Node.js keeps (about 24.8 days): lease and heartbeat settings are checked against it. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function show(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Declares `kvwire engine`. */
export function command(): Command {
  const positive = integer(1);
  const timerMs = integer(1, MAX_TIMER_MS);
  return kvwireCommand('engine')
    .addHelpText(
      'after',
      `
Serves /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /health and /metrics over a
llama.cpp runtime running a model kvwire generates (--model tiny|small), or the synthetic runtime
(--runtime synthetic --model llama-3-8b), and hands KV between prefill and decode workers over
kvwire in vLLM's NixlConnector pull mode. When it serves it prints one line:
  kvwire-engine-ready {"url", "pod", "model", "role", "engineId", "sideChannel", "kvEvents", "kvEventsReplay", "blockSize"}
SIGTERM drains the requests in flight (--drain-timeout-ms), frees every lease and exits 0.`,
    )
    .addOption(
      new Option('--role <role>', 'prefill, decode or both (default both)').argParser(
        oneOf(['prefill', 'decode', 'both'] as const),
      ),
    )
    .addOption(
      new Option('--prefill-mode <bool>', 'role prefill (with --decode-mode true: both)')
        .argParser(boolean)
        .env('PREFILL_MODE')
        .hideHelp(),
    )
    .addOption(new Option('--decode-mode <bool>', 'role decode').argParser(boolean).env('DECODE_MODE').hideHelp())
    .option('--listen <host:port>', 'HTTP address (port 0: any free port)', hostPort, { host: '127.0.0.1', port: 8000 })
    .addOption(
      new Option('--model <name>', 'llama: tiny | small; synthetic: a KV preset such as llama-3-8b').env('MODEL_NAME'),
    )
    .addOption(
      new Option('--runtime <runtime>', 'llama or synthetic')
        .argParser(oneOf(['llama', 'synthetic'] as const))
        .default('llama'),
    )
    .option('--served-model-name <name>', 'the model name in the API (default: --model)')
    .option('--pod-name <name>', 'pod name in KV event topics (default <hostname>-<port>)')
    .addOption(
      new Option('--max-batch-size <n>', 'requests computed together (default 8)')
        .argParser(positive)
        .env('MAX_BATCH_SIZE'),
    )
    .option('--max-queue <n>', 'requests waiting for a slot before 429 (default 4 x max batch size)', positive)
    .option('--num-blocks <n>', 'KV blocks in the cache', positive)
    .option('--max-model-len <n>', 'longest prompt + completion', positive)
    .option('--threads <n>', 'llama.cpp CPU threads (default 1)', positive)
    .option('--layers <n>', 'synthetic: keep only N layers of the preset', positive)
    .addOption(
      new Option('--enable-kv-transfer <bool>', 'take part in P/D hand-offs (default true)')
        .argParser(boolean)
        .env('ENABLE_KV_TRANSFER'),
    )
    .option('--side-channel <host:port>', 'P/D handshake side channel (prefill/both; default 127.0.0.1:0)', hostPort)
    .option('--advertise-host <host>', 'host decode workers use to reach the side channel')
    .option('--kv-secret-file <path>', 'P/D handshake secret, the same on every worker (or env KVWIRE_KV_SECRET)')
    .addOption(
      new Option(
        '--kv-load-failure-policy <policy>',
        'recompute (default) or fail: what a decode does when the KV pull fails',
      ).argParser(oneOf(['recompute', 'fail'] as const)),
    )
    .option('--transports <list>', 'UCX transports, UCX_TLS syntax (tcp, sm, ...)')
    .option(
      '--kv-events-endpoint <endpoint>',
      'ZMQ PUB bind endpoint for KV events, e.g. tcp://127.0.0.1:5557 (port *: any)',
    )
    .option('--kv-events-replay-endpoint <endpoint>', 'ZMQ ROUTER bind endpoint for KV event replay')
    .addOption(
      new Option('--kv-events-format <form>', "map (default) or array (vLLM's older event form)").argParser(
        oneOf(['map', 'array'] as const),
      ),
    )
    .addOption(
      new Option(
        '--lease-ms <n>',
        'prefill: how long KV stays held for a decode that sends no heartbeat (default 30000)',
      )
        .argParser(timerMs)
        .env('KVWIRE_LEASE_MS'),
    )
    .addOption(
      new Option('--lease-extension-ms <n>', 'prefill: how far each decode heartbeat extends a lease (default 30000)')
        .argParser(timerMs)
        .env('KVWIRE_LEASE_EXTENSION_MS'),
    )
    .addOption(
      new Option(
        '--lease-heartbeat-ms <n>',
        'decode: heartbeat interval that keeps the prefill lease of a queued or pending pull alive (default 5000; 0: none)',
      )
        .argParser(integer(0, MAX_TIMER_MS))
        .env('KVWIRE_LEASE_HEARTBEAT_MS'),
    )
    .option('--max-body-bytes <n>', 'largest request body (default 2 MiB)', positive)
    .option('--drain-timeout-ms <n>', 'on SIGTERM, wait this long for requests in flight', integer(0), 10_000)
    .option('--quiet', 'no request log on stderr (one line per request, x-request-id first)')
    .option('--debug-discard-pulled-kv', 'load zeros instead of the pulled KV (a negative control for tests)')
    .run(async (f: EngineFlags) => {
      const envRole =
        f.prefillMode && f.decodeMode ? 'both' : f.prefillMode ? 'prefill' : f.decodeMode ? 'decode' : undefined;
      const role = f.role ?? envRole ?? 'both';
      const model = f.model ?? (f.runtime === 'llama' ? 'tiny' : 'llama-3-8b');
      let secret = process.env['KVWIRE_KV_SECRET'];
      if (f.kvSecretFile !== undefined) {
        try {
          secret = readFileSync(f.kvSecretFile, 'utf8').trim();
        } catch (e) {
          throw new UsageError(`--kv-secret-file ${f.kvSecretFile}: ${(e as Error).message}`);
        }
      }
      const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
        v === undefined ? {} : ({ [k]: v } as { [P in K]: V });
      const { createEngineServer } = await import('../../lib/engine/index.js');
      let server: Awaited<ReturnType<typeof createEngineServer>>;
      try {
        server = await createEngineServer({
          role,
          host: f.listen.host,
          port: f.listen.port,
          model,
          runtime: f.runtime,
          ...opt('servedModelName', f.servedModelName),
          ...opt('pod', f.podName),
          ...opt('maxBatchSize', f.maxBatchSize),
          ...opt('maxQueue', f.maxQueue),
          ...opt('numBlocks', f.numBlocks),
          ...opt('maxModelLen', f.maxModelLen),
          ...opt('threads', f.threads),
          ...opt('layers', f.layers),
          ...opt('kvTransfer', f.enableKvTransfer),
          ...opt('secret', secret),
          ...(f.sideChannel === undefined && f.advertiseHost === undefined
            ? {}
            : {
                sideChannel: {
                  host: f.sideChannel?.host ?? '127.0.0.1',
                  port: f.sideChannel?.port ?? 0,
                  ...opt('advertiseHost', f.advertiseHost),
                },
              }),
          ...opt('kvLoadFailurePolicy', f.kvLoadFailurePolicy),
          ...opt('transports', f.transports),
          ...opt('kvEventsEndpoint', f.kvEventsEndpoint),
          ...opt('kvEventsReplayEndpoint', f.kvEventsReplayEndpoint),
          ...opt('kvEventsFormat', f.kvEventsFormat),
          ...opt('leaseMs', f.leaseMs),
          ...opt('leaseExtensionMs', f.leaseExtensionMs),
          ...opt('leaseHeartbeatMs', f.leaseHeartbeatMs),
          ...opt('maxBodyBytes', f.maxBodyBytes),
          discardLoadedKv: f.debugDiscardPulledKv === true,
          ...(f.quiet === true ? {} : { log: (line: string) => console.error(`kvwire engine: ${line}`) }),
        });
      } catch (e) {
        const listen = listenError(e, '--listen', show(f.listen));
        if (listen !== e) throw listen;
        if (f.sideChannel !== undefined) {
          const side = listenError(e, '--side-channel', show(f.sideChannel));
          if (side !== e) throw side;
        }
        const field = (e as { details?: { field?: unknown } }).details?.field;
        if (field === 'model') throw new UsageError(`--model ${model}: ${(e as Error).message}`);
        if ((e as { code?: string }).code === 'ERR_KVWIRE_UNSUPPORTED') throw new UsageError((e as Error).message);
        throw asUsageError(e, FLAGS);
      }
      const ready = {
        url: server.url,
        pod: server.pod,
        model: server.model,
        role: server.role,
        engineId: server.engineId,
        sideChannel: server.sideChannel,
        kvEvents: server.kvEvents,
        kvEventsReplay: server.kvEventsReplay,
        blockSize: server.blockSize,
      };
      console.log(`kvwire-engine-ready ${JSON.stringify(ready)}`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      console.error(`kvwire engine: ${signal}: draining (up to ${f.drainTimeoutMs} ms)`);
      await server.close(f.drainTimeoutMs);
      console.error('kvwire engine: stopped');
      return 0;
    });
}
