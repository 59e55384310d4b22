/**
 * The seed's serving system on one machine, as real processes: a router (`kvwire router`), decode
 * workers each behind its sidecar (`kvwire engine --role decode` + `kvwire sidecar`), prefill
 * workers (`kvwire engine --role prefill`), the decode workers' KV events (ZMQ) into the router's
 * index, and a single worker (`--role both`) that the demo uses as the reference for every output.
 *
 * ```
 * client -> router -> sidecar-i -> prefill-j (KV computed, held under a lease)
 *                              \-> decode-i (KV READ over UCX from prefill-j, tokens streamed back)
 * decode-i --ZMQ KV events--> router's index          reference: one --role both worker, apart
 * ```
 *
 * Every component listens on a free port of 127.0.0.1 except the router (`routerListen`). All
 * engines share one random P/D handshake secret for this run.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KvwireError } from '../errors.js';
import { Component, describeExit, type ComponentSpec } from './component.js';
import { removeLeftovers, shmFilesOf } from './shm.js';

/** Which engine runtime serves the model. */
export type SystemRuntime = 'llama' | 'synthetic';

/** Options of {@link startLocalSystem}. */
export interface LocalSystemOptions {
  /** `llama` (default) or `synthetic`. */
  readonly runtime?: SystemRuntime;
  /** Model: llama `tiny` | `small` (default small); synthetic a KV preset (default llama-3-8b). */
  readonly model?: string;
  /** Synthetic only: keep N layers of the preset. */
  readonly layers?: number;
  /** Decode workers (each with a sidecar); default 2. */
  readonly decodeWorkers?: number;
  /** Prefill workers; default 2. */
  readonly prefillWorkers?: number;
  /** Start the `--role both` reference worker; default true. */
  readonly reference?: boolean;
  /** The router's address; default 127.0.0.1:8080 (port 0: any free port). */
  readonly routerListen?: { readonly host: string; readonly port: number };
  /** The router's `--pd-threshold` (uncached prompt tokens); default the router's (256). */
  readonly pdThreshold?: number;
  /**
   * Requests each engine computes at once; default 1 for llama, 4 for synthetic. llama.cpp's CPU
   * kernels round differently when several sequences share a batch, and the generated models'
   * close logits turn that into different greedy tokens now and then (1 request in 30 at 4), so
   * the llama engines compute one request at a time and every output can match the reference.
   */
  readonly maxBatchSize?: number;
  /** Longest prompt + completion; default 2048. */
  readonly maxModelLen?: number;
  /** KV blocks per engine; default the engine's (synthetic: 384, 768 MiB at Llama-3-8B's 32 layers). */
  readonly numBlocks?: number;
  /** UCX transports of the engines (UCX_TLS syntax); default UCX's choice. */
  readonly transports?: string;
  /** Seconds between the router's health checks; default 1 (a killed worker is ejected quickly). */
  readonly healthIntervalSeconds?: number;
  /** Deadline for each component to become ready; default 120 s (a busy machine, a cold model cache). */
  readonly startTimeoutMs?: number;
  /** Aborts the start (every component started so far is stopped). */
  readonly signal?: AbortSignal;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** A component's role in the system. */
export type ComponentRole = 'router' | 'sidecar' | 'decode' | 'prefill' | 'reference';

/** Where Prometheus (or anyone) scrapes a component. */
export interface MetricsTarget {
  /** Component name. */
  readonly name: string;
  /** Its role. */
  readonly role: ComponentRole;
  /** `host:port`. */
  readonly address: string;
  /** The metrics path on it. */
  readonly path: string;
}

/** A component that was killed on purpose (the fault drill). */
export interface KilledComponent {
  /** Name. */
  readonly name: string;
  /** Process id. */
  readonly pid: number;
  /** When (`Date.now()`). */
  readonly at: number;
}

const hostPortOf = (url: string): string => new URL(url).host;

/** The running system. */
export class LocalSystem {
  /** The router. */
  readonly router: Component;
  /** Decode engines, in order. */
  readonly decodes: readonly Component[];
  /** Their sidecars, same order. */
  readonly sidecars: readonly Component[];
  /** Prefill engines. */
  readonly prefills: readonly Component[];
  /** The `--role both` reference worker, when started. */
  readonly reference: Component | undefined;
  /** Runtime. */
  readonly runtime: SystemRuntime;
  /** Served model name. */
  readonly model: string;
  /** Killed on purpose, in order. */
  readonly killed: KilledComponent[] = [];
  readonly #shmSeen = new Map<number, Set<string>>();
  readonly #folder: string;
  #stopping: Promise<void> | undefined;

  /** @internal */
  constructor(parts: {
    router: Component;
    decodes: Component[];
    sidecars: Component[];
    prefills: Component[];
    reference: Component | undefined;
    runtime: SystemRuntime;
    model: string;
    folder: string;
  }) {
    this.router = parts.router;
    this.decodes = parts.decodes;
    this.sidecars = parts.sidecars;
    this.prefills = parts.prefills;
    this.reference = parts.reference;
    this.runtime = parts.runtime;
    this.model = parts.model;
    this.#folder = parts.folder;
  }

  /** Every component, router first. */
  get components(): Component[] {
    return [
      this.router,
      ...this.sidecars,
      ...this.decodes,
      ...this.prefills,
      ...(this.reference === undefined ? [] : [this.reference]),
    ];
  }

  /** The role of a component of this system. */
  roleOf(c: Component): ComponentRole {
    if (c === this.router) return 'router';
    if (this.sidecars.includes(c)) return 'sidecar';
    if (this.decodes.includes(c)) return 'decode';
    if (this.prefills.includes(c)) return 'prefill';
    return 'reference';
  }

  /** Every component's metrics endpoint (a sidecar's own metrics are on /sidecar/metrics). */
  metricsTargets(): MetricsTarget[] {
    return this.components.map((c) => {
      const role = this.roleOf(c);
      if (role === 'sidecar') {
        const m = new URL(String(c.ready['metrics'] ?? `${c.url}/sidecar/metrics`));
        return { name: c.name, role, address: m.host, path: m.pathname };
      }
      return { name: c.name, role, address: hostPortOf(c.url), path: '/metrics' };
    });
  }

  /** Records the /dev/shm files every live component maps now (for the leak check after stop). */
  noteSharedMemory(): void {
    for (const c of this.components) {
      if (!c.alive) continue;
      const seen = this.#shmSeen.get(c.pid) ?? new Set<string>();
      for (const f of shmFilesOf(c.pid)) seen.add(f);
      this.#shmSeen.set(c.pid, seen);
    }
  }

  /** Every /dev/shm file a component was seen to map, by pid (see {@link noteSharedMemory}). */
  sharedMemorySeen(): ReadonlyMap<number, ReadonlySet<string>> {
    return this.#shmSeen;
  }

  /**
   * SIGKILLs a component (the fault drill): no drain, no lease freed, no segment unlinked; what it
   * leaves in /dev/shm is removed when the system stops.
   */
  kill(name: string): KilledComponent {
    const c = this.components.find((x) => x.name === name);
    if (c === undefined) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `no component named ${name}`);
    this.noteSharedMemory();
    c.signal('SIGKILL');
    const k = { name, pid: c.pid, at: Date.now() };
    this.killed.push(k);
    return k;
  }

  /**
   * Stops everything: the router first (no new requests), then the sidecars, then the engines
   * (they drain, free their leases and unlink their shared memory), each group at once; SIGKILL
   * after `graceMs`. Then removes what killed components left in /dev/shm. Idempotent.
   */
  stop(graceMs = 15_000): Promise<void> {
    this.#stopping ??= (async () => {
      this.noteSharedMemory();
      await this.router.stop(graceMs);
      await Promise.all(this.sidecars.map((c) => c.stop(graceMs)));
      const engines = [...this.decodes, ...this.prefills, ...(this.reference === undefined ? [] : [this.reference])];
      await Promise.all(engines.map((c) => c.stop(graceMs)));
      for (const c of this.components) {
        const e = c.exit;
        // Anything that did not exit cleanly (killed, or SIGKILLed after the grace) may leave files.
        if (e !== undefined && (e.signal !== null || e.code !== 0))
          removeLeftovers(c.pid, [...(this.#shmSeen.get(c.pid) ?? [])]);
      }
      await rm(this.#folder, { recursive: true, force: true });
    })();
    return this.#stopping;
  }
}

/** Default model per runtime. */
export function defaultModel(runtime: SystemRuntime): string {
  return runtime === 'synthetic' ? 'llama-3-8b' : 'small';
}

/**
 * Starts the system: engines (all at once), then the sidecars, then the router. When anything
 * fails to start, everything started so far is stopped and the error is rethrown.
 *
 * @throws KvwireError from {@link Component.start}: `PEER_LOST` (a component exited; its stderr
 *   tail is in the message, e.g. the router's "in use" message), `TIMEOUT`, `CANCELLED`.
 */
export async function startLocalSystem(o: LocalSystemOptions = {}): Promise<LocalSystem> {
  const runtime = o.runtime ?? 'llama';
  const model = o.model ?? defaultModel(runtime);
  const log = o.log ?? (() => {});
  const secret = randomBytes(24).toString('hex');
  const started: Component[] = [];
  const start = async (spec: ComponentSpec): Promise<Component> => {
    const c = await Component.start(spec, {
      timeoutMs: o.startTimeoutMs ?? 120_000,
      ...(o.signal === undefined ? {} : { signal: o.signal }),
    });
    started.push(c);
    log(`${spec.name.padEnd(10)} ${c.url}  (pid ${c.pid})`);
    return c;
  };
  const engineArgs = (role: 'prefill' | 'decode' | 'both', pod: string): string[] => [
    '--role',
    role,
    '--listen',
    '127.0.0.1:0',
    '--runtime',
    runtime,
    '--model',
    model,
    '--pod-name',
    pod,
    '--max-batch-size',
    String(o.maxBatchSize ?? (runtime === 'llama' ? 1 : 4)),
    '--max-model-len',
    String(o.maxModelLen ?? 2048),
    ...(o.numBlocks !== undefined
      ? ['--num-blocks', String(o.numBlocks)]
      : runtime === 'synthetic'
        ? ['--num-blocks', '384']
        : []),
    ...(o.layers === undefined ? [] : ['--layers', String(o.layers)]),
    ...(o.transports === undefined ? [] : ['--transports', o.transports]),
    ...(role === 'decode'
      ? ['--kv-events-endpoint', 'tcp://127.0.0.1:*', '--kv-events-replay-endpoint', 'tcp://127.0.0.1:*']
      : []),
  ];
  const env = { KVWIRE_KV_SECRET: secret };
  const nDecode = o.decodeWorkers ?? 2;
  const nPrefill = o.prefillWorkers ?? 2;
  let folder: string | undefined;
  try {
    const engines = await Promise.all([
      ...Array.from({ length: nPrefill }, (_, i) =>
        start({ name: `prefill-${i}`, command: 'engine', args: engineArgs('prefill', `prefill-${i}`), env }),
      ),
      ...Array.from({ length: nDecode }, (_, i) =>
        start({ name: `decode-${i}`, command: 'engine', args: engineArgs('decode', `decode-${i}`), env }),
      ),
      ...(o.reference === false
        ? []
        : [start({ name: 'reference', command: 'engine', args: engineArgs('both', 'reference'), env })]),
    ]);
    const prefills = engines.slice(0, nPrefill);
    const decodes = engines.slice(nPrefill, nPrefill + nDecode);
    const reference = o.reference === false ? undefined : engines[nPrefill + nDecode];
    const allow = prefills.flatMap((p) => ['--allow', hostPortOf(p.url)]);
    const sidecars = await Promise.all(
      decodes.map((d, i) =>
        start({
          name: `sidecar-${i}`,
          command: 'sidecar',
          args: ['--listen', '127.0.0.1:0', '--decode', d.url, ...allow],
        }),
      ),
    );
    // An endpoints file rather than flags: it names each endpoint (decisions read `decode=decode-0`)
    // and ties each decode worker's KV events to the pod name in its topic.
    const endpoints = {
      endpoints: [
        ...decodes.map((d, i) => ({
          name: d.name,
          role: 'decode',
          url: d.url,
          sidecar: sidecars[i]!.url,
          models: [model],
          kvEvents: String(d.ready['kvEvents']),
          kvReplay: String(d.ready['kvEventsReplay']),
          pod: d.name,
        })),
        ...prefills.map((p) => ({ name: p.name, role: 'prefill', url: p.url, models: [model] })),
      ],
    };
    folder = await mkdtemp(join(tmpdir(), 'kvwire-demo-'));
    const endpointsFile = join(folder, 'endpoints.json');
    await writeFile(endpointsFile, JSON.stringify(endpoints, null, 2));
    const listen = o.routerListen ?? { host: '127.0.0.1', port: 8080 };
    const router = await start({
      name: 'router',
      command: 'router',
      args: [
        '--listen',
        `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`,
        '--endpoints',
        endpointsFile,
        '--explain',
        'always',
        '--health-interval',
        String(o.healthIntervalSeconds ?? 1),
        ...(o.pdThreshold === undefined ? [] : ['--pd-threshold', String(o.pdThreshold)]),
      ],
    });
    const system = new LocalSystem({ router, decodes, sidecars, prefills, reference, runtime, model, folder });
    system.noteSharedMemory();
    return system;
  } catch (e) {
    // Stop in reverse order of start; a half-started system leaves nothing running.
    await Promise.all(started.reverse().map((c) => c.stop(5_000)));
    if (folder !== undefined) await rm(folder, { recursive: true, force: true });
    for (const c of started) if (c.exit !== undefined && c.exit.signal !== null) removeLeftovers(c.pid, []);
    throw e;
  }
}

/** One line per component that exited although nobody stopped it. */
export function unexpectedExits(system: LocalSystem): string[] {
  const killed = new Set(system.killed.map((k) => k.name));
  return system.components
    .filter((c) => !c.alive && !killed.has(c.name))
    .map((c) => `${c.name} exited unexpectedly (${describeExit(c.exit!)})`);
}
