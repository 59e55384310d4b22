/**
 * `kvwire engine`: a prefill, decode or combined worker serving the OpenAI API (see
 * docs/engine.md). Thin: parse flags and the InferenceService environment, call
 * `createEngineServer()`, print one ready line, drain on SIGTERM/SIGINT.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KvwireError } from '../errors.js';

const USAGE = `usage: kvwire engine --role prefill|decode|both --listen HOST:PORT --model NAME [options]

Serves the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models, /tokenize, /health,
/metrics) over a llama.cpp runtime with a model kvwire generates, or the synthetic runtime, and
hands KV between prefill and decode workers over kvwire (vLLM's NixlConnector pull mode).

options:
  --role R                    prefill, decode or both (default both; env PREFILL_MODE/DECODE_MODE=true)
  --listen HOST:PORT          HTTP address (default 127.0.0.1:8000; port 0 = any free port)
  --model NAME                llama: tiny | small; synthetic: a KV preset such as llama-3-8b (env MODEL_NAME)
  --runtime R                 llama (default) | synthetic
  --served-model-name NAME    the model name in the API (default: --model)
  --pod-name NAME             pod name in KV event topics (default <hostname>-<port>)
  --max-batch-size N          requests computed together (default 8; env MAX_BATCH_SIZE)
  --max-queue N               requests waiting before 429 (default 4 x max batch size)
  --num-blocks N              KV blocks in the cache
  --max-model-len N           longest prompt + completion
  --threads N                 llama.cpp CPU threads (default 1)
  --layers N                  synthetic: keep N layers of the preset
  --enable-kv-transfer BOOL   take part in P/D hand-offs (default true; env ENABLE_KV_TRANSFER)
  --side-channel HOST:PORT    P/D handshake side channel (prefill/both; default 127.0.0.1:0)
  --advertise-host HOST       host decode workers use to reach the side channel
  --kv-secret-file PATH       P/D handshake secret (or env KVWIRE_KV_SECRET), the same on every worker
  --kv-load-failure-policy P  recompute (default) | fail
  --transports T              UCX transports, UCX_TLS syntax (tcp, sm, ...)
  --kv-events-endpoint E      ZMQ PUB bind endpoint for KV events, e.g. tcp://127.0.0.1:5557 (port * = any)
  --kv-events-replay-endpoint E  ZMQ ROUTER bind endpoint for replay
  --kv-events-format F        map (default) | array (vLLM's older event form)
  --lease-ms N                how long a prefill holds KV for its decode (default 480000)
  --drain-timeout-ms N        on SIGTERM, wait this long for requests in flight (default 10000)
  --debug-discard-pulled-kv   load zeros instead of the pulled KV (a negative control for tests)`;

/** A bad command line or environment (exit 2). */
class UsageError extends Error {}

function int(v: string | undefined, name: string, min = 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

function hostPort(v: string, name: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(v);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !Number.isInteger(port) || port > 65535)
    throw new UsageError(`${name} must be HOST:PORT, got '${v}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function bool(v: string | undefined, name: string): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new UsageError(`${name} must be true or false, got '${v}'`);
}

function oneOf<T extends string>(v: string | undefined, name: string, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v))
    throw new UsageError(`${name} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}

/** Runs `kvwire engine`; resolves with the exit code after a signal drained it. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let server: Awaited<ReturnType<typeof import('../engine/index.js').createEngineServer>>;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h' },
        role: { type: 'string' },
        listen: { type: 'string' },
        model: { type: 'string' },
        runtime: { type: 'string' },
        'served-model-name': { type: 'string' },
        'pod-name': { type: 'string' },
        'max-batch-size': { type: 'string' },
        'max-queue': { type: 'string' },
        'num-blocks': { type: 'string' },
        'max-model-len': { type: 'string' },
        threads: { type: 'string' },
        layers: { type: 'string' },
        'enable-kv-transfer': { type: 'string' },
        'side-channel': { type: 'string' },
        'advertise-host': { type: 'string' },
        'kv-secret-file': { type: 'string' },
        'kv-load-failure-policy': { type: 'string' },
        transports: { type: 'string' },
        'kv-events-endpoint': { type: 'string' },
        'kv-events-replay-endpoint': { type: 'string' },
        'kv-events-format': { type: 'string' },
        'lease-ms': { type: 'string' },
        'drain-timeout-ms': { type: 'string' },
        'debug-discard-pulled-kv': { type: 'boolean' },
      },
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const prefillMode = bool(env['PREFILL_MODE'], 'PREFILL_MODE');
    const decodeMode = bool(env['DECODE_MODE'], 'DECODE_MODE');
    const envRole = prefillMode && decodeMode ? 'both' : prefillMode ? 'prefill' : decodeMode ? 'decode' : undefined;
    const role = oneOf(values.role, '--role', ['prefill', 'decode', 'both'] as const) ?? envRole ?? 'both';
    const listen = hostPort(values.listen ?? '127.0.0.1:8000', '--listen');
    const runtime = oneOf(values.runtime, '--runtime', ['llama', 'synthetic'] as const) ?? 'llama';
    const model = values.model ?? env['MODEL_NAME'] ?? (runtime === 'llama' ? 'tiny' : 'llama-3-8b');
    const maxBatch = int(values['max-batch-size'], '--max-batch-size') ?? int(env['MAX_BATCH_SIZE'], 'MAX_BATCH_SIZE');
    const kvTransfer =
      bool(values['enable-kv-transfer'], '--enable-kv-transfer') ??
      bool(env['ENABLE_KV_TRANSFER'], 'ENABLE_KV_TRANSFER');
    const secretText =
      values['kv-secret-file'] !== undefined
        ? readFileSync(values['kv-secret-file'], 'utf8').trim()
        : env['KVWIRE_KV_SECRET'];
    const side = values['side-channel'] === undefined ? undefined : hostPort(values['side-channel'], '--side-channel');
    const drainMs = int(values['drain-timeout-ms'], '--drain-timeout-ms', 0) ?? 10_000;
    const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
      v === undefined ? {} : ({ [k]: v } as { [P in K]: V });
    const { createEngineServer } = await import('../engine/index.js');
    try {
      server = await createEngineServer({
        role,
        host: listen.host,
        port: listen.port,
        model,
        runtime,
        ...opt('servedModelName', values['served-model-name']),
        ...opt('pod', values['pod-name']),
        ...opt('maxBatchSize', maxBatch),
        ...opt('maxQueue', int(values['max-queue'], '--max-queue')),
        ...opt('numBlocks', int(values['num-blocks'], '--num-blocks')),
        ...opt('maxModelLen', int(values['max-model-len'], '--max-model-len')),
        ...opt('threads', int(values.threads, '--threads')),
        ...opt('layers', int(values.layers, '--layers')),
        ...opt('kvTransfer', kvTransfer),
        ...opt('secret', secretText),
        ...(side === undefined && values['advertise-host'] === undefined
          ? {}
          : {
              sideChannel: {
                host: side?.host ?? '127.0.0.1',
                port: side?.port ?? 0,
                ...opt('advertiseHost', values['advertise-host']),
              },
            }),
        ...opt(
          'kvLoadFailurePolicy',
          oneOf(values['kv-load-failure-policy'], '--kv-load-failure-policy', ['recompute', 'fail'] as const),
        ),
        ...opt('transports', values.transports),
        ...opt('kvEventsEndpoint', values['kv-events-endpoint']),
        ...opt('kvEventsReplayEndpoint', values['kv-events-replay-endpoint']),
        ...opt('kvEventsFormat', oneOf(values['kv-events-format'], '--kv-events-format', ['map', 'array'] as const)),
        ...opt('leaseMs', int(values['lease-ms'], '--lease-ms')),
        discardLoadedKv: values['debug-discard-pulled-kv'] === true,
      });
    } catch (e) {
      if (e instanceof KvwireError && e.details.field === 'listen') throw new UsageError(e.message);
      if (
        e instanceof KvwireError &&
        (e.code === 'ERR_KVWIRE_INVALID_ARGUMENT' || e.code === 'ERR_KVWIRE_UNSUPPORTED')
      ) {
        throw new UsageError(e.message);
      }
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE')
        throw new UsageError(
          `${(e as Error).message}; choose another port with --side-channel or --kv-events-endpoint`,
        );
      throw e;
    }
    void drainMs;
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
    console.error(`kvwire engine: ${signal}: draining (up to ${drainMs} ms)`);
    await server.close(drainMs);
    console.error('kvwire engine: stopped');
    return 0;
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`kvwire engine: ${(e as Error).message}\n(see 'kvwire engine --help')`);
      return 2;
    }
    console.error(`kvwire engine: ${(e as Error).message}${e instanceof KvwireError ? ` (${e.code})` : ''}`);
    return 1;
  }
}
