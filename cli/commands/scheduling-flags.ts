/**
 * The flags `kvwire router` and `kvwire epp` share: the endpoints (flags or a file), the decision's
 * settings, the KV index backend, health checks. Declared once here; each command adds its own.
 *
 * @packageDocumentation
 */
import { InvalidArgumentError, Option } from 'commander';
import type { KvIndexOptions } from '../../lib/kv-index/kv-index.js';
import { checkEndpoint, type EndpointInput } from '../../lib/scheduler/endpoint.js';
import type { SchedulingServiceOptions } from '../../lib/scheduler/service.js';
import { SCORER_NAMES, type ScorerName } from '../../lib/scheduler/types.js';
import { UsageError, collect, repeatable, type KvwireCommand } from '../kit/command.js';
import { integer, list, oneOf, seconds } from '../kit/values.js';

/** What the shared flags parse to. */
export interface SchedulingFlags {
  decode?: string[];
  prefill?: string[];
  sidecar?: string[];
  kvEvents?: string[];
  kvReplay?: string[];
  pod?: string[];
  model?: string[];
  endpoints?: string;
  pdThreshold: number;
  weights?: Partial<Record<ScorerName, number>>;
  shedQueueDepth?: number;
  explain: 'on-request' | 'always' | 'never';
  index: 'memory' | 'redis' | 'redis-cluster';
  redisUrl?: string;
  redisNodes?: string[];
  redisPrefix?: string;
  healthInterval: number;
  scrapeInterval: number;
}

function weights(text: string): Partial<Record<ScorerName, number>> {
  const out: Partial<Record<ScorerName, number>> = {};
  for (const part of list(text)) {
    const [k, v] = part.split('=');
    if (!(SCORER_NAMES as readonly string[]).includes(k ?? '') || v === undefined || !/^\d+(\.\d+)?$/.test(v)) {
      throw new InvalidArgumentError(
        `must be SCORER=WEIGHT,... with scorers ${SCORER_NAMES.join(', ')} (e.g. prefix-cache=3,load=1)`,
      );
    }
    out[k as ScorerName] = Number(v);
  }
  return out;
}

const text = (t: string): string => t;

/** Declares the shared flags on `cmd`. */
export function addSchedulingFlags(cmd: KvwireCommand): KvwireCommand {
  const many = (flags: string, help: string): Option =>
    repeatable(new Option(flags, help).argParser(collect(text)).helpGroup('Endpoints:'));
  return cmd
    .addOption(many('--decode <url>', "a decode worker's base URL (its sidecar's, when it has one); repeatable"))
    .addOption(many('--prefill <url>', "a prefill worker's base URL; repeatable"))
    .addOption(
      many('--sidecar <url>', 'the sidecar of the decode worker in the same position, when --decode names the engine'),
    )
    .addOption(
      many(
        '--kv-events <tcp://host:port>',
        "the ZMQ KV events publisher of the decode worker in the same position (vLLM's --kv-events-config endpoint)",
      ),
    )
    .addOption(many('--kv-replay <tcp://host:port>', 'the replay socket of the decode worker in the same position'))
    .addOption(
      many(
        '--pod <name>',
        "the pod name in the KV events topic kv@<pod>@<model> of the decode worker in the same position (kvwire engine's --pod-name, by default <hostname>-<port>); default: the endpoint's host:port",
      ),
    )
    .addOption(many('--model <name>', 'a model the flag-given endpoints serve; repeatable (default: any)'))
    .addOption(
      new Option(
        '--endpoints <file>',
        'a JSON or YAML endpoints file, reloaded when it changes (instead of the flags above)',
      ).helpGroup('Endpoints:'),
    )
    .addOption(
      new Option(
        '--pd-threshold <tokens>',
        'disaggregate when at least this many prompt tokens are not cached on the decode worker',
      )
        .argParser(integer(0))
        .default(256)
        .helpGroup('Decision:'),
    )
    .addOption(
      new Option(
        '--weights <scorer=weight,...>',
        `scorer weights (${SCORER_NAMES.join(', ')}); defaults prefix-cache=3,load=1,kv-utilization=1,session-affinity=2`,
      )
        .argParser(weights)
        .helpGroup('Decision:'),
    )
    .addOption(
      new Option(
        '--shed-queue-depth <n>',
        'answer 429 when every decode worker has at least this many requests waiting',
      )
        .argParser(integer(1))
        .helpGroup('Decision:'),
    )
    .addOption(
      new Option(
        '--explain <when>',
        'add the x-kvwire-decision header: on-request (x-kvwire-explain: 1), always, never',
      )
        .argParser(oneOf(['on-request', 'always', 'never'] as const))
        .default('on-request')
        .helpGroup('Decision:'),
    )
    .addOption(
      new Option('--index <backend>', 'where the KV block index lives: memory, redis, redis-cluster')
        .argParser(oneOf(['memory', 'redis', 'redis-cluster'] as const))
        .default('memory')
        .helpGroup('KV index:'),
    )
    .addOption(new Option('--redis-url <url>', 'Redis for --index redis').helpGroup('KV index:'))
    .addOption(
      new Option('--redis-nodes <host:port,...>', 'some Redis Cluster nodes for --index redis-cluster')
        .argParser(list)
        .helpGroup('KV index:'),
    )
    .addOption(
      new Option(
        '--redis-prefix <prefix>',
        'key prefix of the shared index (with a {hash tag} on a cluster)',
      ).helpGroup('KV index:'),
    )
    .addOption(
      new Option('--health-interval <seconds>', 'between health checks of an endpoint')
        .argParser(seconds(0.05, 3600))
        .default(2)
        .helpGroup('Endpoints:'),
    )
    .addOption(
      new Option('--scrape-interval <seconds>', "between scrapes of an engine's /metrics")
        .argParser(seconds(0.05, 3600))
        .default(1)
        .helpGroup('Endpoints:'),
    );
}

/**
 * The scheduling service's options from the shared flags.
 *
 * @throws UsageError on flags that do not fit together.
 */
export function schedulingOptions(f: SchedulingFlags): SchedulingServiceOptions {
  const byFlags = (f.decode?.length ?? 0) + (f.prefill?.length ?? 0) > 0;
  if (byFlags === (f.endpoints !== undefined)) {
    throw new UsageError('give the endpoints either with --decode/--prefill or with --endpoints FILE (one of the two)');
  }
  const decodes = f.decode ?? [];
  for (const [flag, v] of [
    ['--sidecar', f.sidecar],
    ['--kv-events', f.kvEvents],
    ['--kv-replay', f.kvReplay],
    ['--pod', f.pod],
  ] as const) {
    if ((v?.length ?? 0) > decodes.length)
      throw new UsageError(
        `${flag} is given ${v!.length} times for ${decodes.length} --decode: each belongs to the --decode in the same position`,
      );
  }
  if (
    f.endpoints !== undefined &&
    (f.model !== undefined ||
      f.sidecar !== undefined ||
      f.kvEvents !== undefined ||
      f.kvReplay !== undefined ||
      f.pod !== undefined)
  ) {
    throw new UsageError(
      '--model, --sidecar, --kv-events, --kv-replay and --pod go with --decode; with --endpoints FILE write them in the file',
    );
  }
  const models = f.model ?? [];
  const endpoints: EndpointInput[] = [
    ...decodes.map((url, i) => ({
      role: 'decode',
      url,
      models,
      ...(f.sidecar?.[i] !== undefined ? { sidecar: f.sidecar[i] } : {}),
      ...(f.kvEvents?.[i] !== undefined ? { kvEvents: f.kvEvents[i] } : {}),
      ...(f.kvReplay?.[i] !== undefined ? { kvReplay: f.kvReplay[i] } : {}),
      ...(f.pod?.[i] !== undefined ? { pod: f.pod[i] } : {}),
    })),
    ...(f.prefill ?? []).map((url) => ({ role: 'prefill', url, models })),
  ];
  // Flag-given endpoints are checked here, so an error names the flag rather than a list position.
  endpoints.forEach((e, i) => {
    const flag = i < decodes.length ? `--decode ${decodes[i]}` : `--prefill ${e.url}`;
    try {
      checkEndpoint(e, flag);
    } catch (x) {
      throw new UsageError((x as Error).message.replace(`${flag}.url`, flag));
    }
  });
  if (f.index === 'redis' && f.redisUrl === undefined)
    throw new UsageError('--index redis needs --redis-url redis://HOST:PORT');
  if (f.index === 'redis-cluster' && (f.redisNodes?.length ?? 0) === 0)
    throw new UsageError('--index redis-cluster needs --redis-nodes HOST:PORT,...');
  const index: KvIndexOptions =
    f.index === 'memory'
      ? {}
      : {
          backend: f.index,
          redis: {
            ...(f.redisUrl !== undefined ? { url: f.redisUrl } : {}),
            ...(f.redisNodes !== undefined ? { nodes: f.redisNodes } : {}),
            ...(f.redisPrefix !== undefined ? { prefix: f.redisPrefix } : {}),
          },
        };
  return {
    ...(f.endpoints !== undefined ? { endpointsFile: f.endpoints } : { endpoints }),
    index,
    scheduler: {
      pdThreshold: f.pdThreshold,
      ...(f.weights !== undefined ? { weights: f.weights } : {}),
      ...(f.shedQueueDepth !== undefined ? { shedQueueDepth: f.shedQueueDepth } : {}),
    },
    pool: {
      healthIntervalMs: Math.round(f.healthInterval * 1000),
      scrapeIntervalMs: Math.round(f.scrapeInterval * 1000),
    },
  };
}

/** The API option behind each flag, for the library's errors. */
export const SCHEDULING_FLAG_NAMES = {
  pdThreshold: '--pd-threshold',
  shedQueueDepth: '--shed-queue-depth',
  'redis.prefix': '--redis-prefix',
  'redis.nodes': '--redis-nodes',
  endpoints: '--endpoints',
};

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
