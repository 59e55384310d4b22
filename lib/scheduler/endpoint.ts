/**
 * The endpoints a scheduler chooses among: decode workers (each optionally behind its routing
 * sidecar, optionally publishing KV events) and prefill workers, as given by flags or an endpoints
 * file, checked once here so that everything downstream can trust them.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';

/** What an endpoint does in the P/D flow. */
export type EndpointRole = 'decode' | 'prefill';

/** One endpoint, as configured. */
export interface EndpointSpec {
  /** Unique name; for a decode endpoint also its worker name in the KV block index. */
  readonly name: string;
  /** `decode` (requests are routed to it) or `prefill` (named to the decode's sidecar). */
  readonly role: EndpointRole;
  /** The engine's base URL (`http://host:port`): `/health`, `/metrics` and `/tokenize` live there. */
  readonly url: string;
  /** Decode only: the base URL of its routing sidecar, where requests go. Default: `url`. */
  readonly sidecar?: string;
  /** Models it serves; empty: any model. */
  readonly models: readonly string[];
  /** Decode only: the engine's ZMQ KV events publisher, `tcp://host:port`. */
  readonly kvEvents?: string;
  /** Decode only: the engine's ZMQ replay socket (vLLM's ROUTER), `tcp://host:port`. */
  readonly kvReplay?: string;
  /** The pod name the engine puts in its KV events topic `kv@<pod>@<model>`. Default: `name`. */
  readonly pod: string;
}

/** An endpoint as written in flags or a file, before checking. */
export interface EndpointInput {
  readonly name?: string;
  readonly role?: string;
  readonly url?: string;
  readonly sidecar?: string;
  readonly models?: readonly string[] | string;
  readonly kvEvents?: string;
  readonly kvReplay?: string;
  readonly pod?: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$/;

function bad(where: string, msg: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, `${where} ${msg}`, { field: where });
}

/** Checks an `http://host:port` base URL; returns it without a trailing slash. */
export function checkHttpUrl(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0)
    throw bad(where, `is ${describeValue(v)}: give a URL like http://10.0.0.5:8000`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw bad(where, `is ${describeValue(v)}, not a URL: give one like http://10.0.0.5:8000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw bad(where, `is ${describeValue(v)}: use http:// or https://`);
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') {
    throw bad(
      where,
      `is ${describeValue(v)}: give scheme, host, port and at most a path prefix, no credentials, query or fragment`,
    );
  }
  return u.toString().replace(/\/+$/, '');
}

/** Checks a `tcp://host:port` ZMQ endpoint. */
export function checkZmqEndpoint(v: unknown, where: string): string {
  if (typeof v !== 'string' || !/^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v)) {
    throw bad(where, `is ${describeValue(v)}: give the engine's publisher as tcp://HOST:PORT`);
  }
  const port = Number(v.slice(v.lastIndexOf(':') + 1));
  if (port < 1 || port > 65535) throw bad(where, `is ${describeValue(v)}: the port must be 1 to 65535`);
  return v;
}

/** `host:port` of a base URL (the form `x-prefiller-host-port` and Envoy's destination take). */
export function hostPort(url: string): string {
  const u = new URL(url);
  const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
  return `${u.hostname}:${port}`;
}

function models(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  const list =
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '')
      : v;
  if (!Array.isArray(list) || list.some((m) => typeof m !== 'string' || m.length === 0 || m.length > 256)) {
    throw bad(where, `is ${describeValue(v)}: give a list of model names`);
  }
  return list as string[];
}

/**
 * Checks one endpoint.
 *
 * @param where - how error messages name it, e.g. `endpoints[2]` or `--decode`.
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the bad field.
 */
export function checkEndpoint(input: EndpointInput, where: string): EndpointSpec {
  if (input === null || typeof input !== 'object')
    throw bad(where, `is ${describeValue(input)}: an endpoint is an object with role and url`);
  const known = new Set(['name', 'role', 'url', 'sidecar', 'models', 'kvEvents', 'kvReplay', 'pod']);
  for (const k of Object.keys(input))
    if (!known.has(k)) throw bad(`${where}.${k}`, `is not a field of an endpoint: use ${[...known].join(', ')}`);
  const role = input.role;
  if (role !== 'decode' && role !== 'prefill')
    throw bad(`${where}.role`, `is ${describeValue(role)}: use 'decode' or 'prefill'`);
  const url = checkHttpUrl(input.url, `${where}.url`);
  const name = input.name ?? hostPort(url);
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw bad(`${where}.name`, `is ${describeValue(name)}: a name is 1 to 128 letters, digits and . _ : @ / -`);
  }
  if (role === 'prefill') {
    for (const k of ['sidecar', 'kvEvents', 'kvReplay'] as const) {
      if (input[k] !== undefined)
        throw bad(`${where}.${k}`, `is set on a prefill endpoint: only decode endpoints have a sidecar and KV events`);
    }
  }
  if (input.kvReplay !== undefined && input.kvEvents === undefined) {
    throw bad(
      `${where}.kvReplay`,
      'is set without kvEvents: the replay socket fills gaps in a KV events stream; give kvEvents too',
    );
  }
  const pod = input.pod ?? name;
  if (typeof pod !== 'string' || pod.length === 0 || pod.length > 256 || pod.includes('@')) {
    throw bad(
      `${where}.pod`,
      `is ${describeValue(pod)}: the pod name of the KV events topic kv@<pod>@<model> is a non-empty string without '@'`,
    );
  }
  return {
    name,
    role,
    url,
    ...(input.sidecar !== undefined ? { sidecar: checkHttpUrl(input.sidecar, `${where}.sidecar`) } : {}),
    models: models(input.models, `${where}.models`),
    ...(input.kvEvents !== undefined ? { kvEvents: checkZmqEndpoint(input.kvEvents, `${where}.kvEvents`) } : {}),
    ...(input.kvReplay !== undefined ? { kvReplay: checkZmqEndpoint(input.kvReplay, `${where}.kvReplay`) } : {}),
    pod,
  };
}

/**
 * Checks a whole set: each endpoint, unique names, at least one decode endpoint.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT`.
 */
export function checkEndpoints(inputs: readonly EndpointInput[], where = 'endpoints'): EndpointSpec[] {
  if (!Array.isArray(inputs)) throw bad(where, `is ${describeValue(inputs)}: expected a list of endpoints`);
  const out = inputs.map((e, i) => checkEndpoint(e, `${where}[${i}]`));
  const seen = new Set<string>();
  for (const e of out) {
    if (seen.has(e.name)) throw bad(where, `name ${describeValue(e.name)} twice: give each endpoint its own name`);
    seen.add(e.name);
  }
  if (!out.some((e) => e.role === 'decode'))
    throw bad(where, 'has no decode endpoint: requests need at least one decode worker to go to');
  return out;
}

/** Where requests for a decode endpoint go: its sidecar, else the engine. */
export function destinationUrl(e: EndpointSpec): string {
  return e.sidecar ?? e.url;
}
