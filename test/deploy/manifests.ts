/**
 * Reads the Kubernetes manifests under deploy/ (every `*.yaml`, every document in it) for the
 * deploy tests, and finds the kvwire containers in them (a container whose command is `kvwire`).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The folder of manifests. */
export const DEPLOY_DIR = join(ROOT, 'deploy');

/** One Kubernetes object as written in a manifest. */
export interface Manifest {
  /** Path relative to the repository root, e.g. `deploy/gateway/httproute.yaml`. */
  readonly file: string;
  /** Index of the document in its file (0 for single-document files). */
  readonly index: number;
  /** The parsed object. */
  readonly object: KubeObject;
}

/** The fields every Kubernetes object has; the rest is looked at per kind. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** A container spec, as far as these tests read it. */
export interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { containerPort: number; name?: string }[];
  readinessProbe?: ProbeSpec;
  livenessProbe?: ProbeSpec;
  startupProbe?: ProbeSpec;
  volumeMounts?: { name: string; mountPath: string }[];
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
}

/** A probe, as far as these tests read it. */
export interface ProbeSpec {
  httpGet?: { path?: string; port?: number | string };
  grpc?: { port: number; service?: string };
  tcpSocket?: { port: number | string };
  exec?: { command: string[] };
}

/** A pod spec, as far as these tests read it. */
export interface PodSpecLike {
  containers?: ContainerSpec[];
  initContainers?: ContainerSpec[];
  volumes?: { name: string; secret?: { secretName?: string }; configMap?: { name?: string } }[];
}

/** A label selector with matchLabels. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
}

/** The InferencePool spec (also KServe's scheduler pool spec). */
export interface InferencePoolSpec {
  selector: { matchLabels: Record<string, string> };
  targetPorts: { number: number }[];
  endpointPickerRef: { name: string; kind?: string; port: { number: number }; failureMode?: string };
}

/** A Service spec, as far as these tests read it. */
export interface ServiceSpec {
  selector: Record<string, string>;
  ports: { name?: string; port: number; targetPort?: number | string }[];
}

/** A Deployment spec, as far as these tests read it. */
export interface DeploymentSpec {
  template: { metadata?: { labels?: Record<string, string> }; spec: PodSpecLike };
}

/** An InferenceService (v1beta1) spec, as far as these tests read it. */
export interface InferenceServiceSpec {
  predictor: PodSpecLike & { labels?: Record<string, string> };
}

/** An LLMInferenceService (v1alpha2) spec, as far as these tests read it. */
export interface LlmInferenceServiceSpec {
  labels?: Record<string, string>;
  template?: PodSpecLike;
  prefill?: { labels?: Record<string, string>; template?: PodSpecLike };
  router?: {
    gateway?: { refs: { name: string; namespace?: string }[] };
    scheduler?: { labels?: Record<string, string>; template?: PodSpecLike; pool?: { spec: InferencePoolSpec } };
  };
}

/** An HTTPRoute spec, as far as these tests read it. */
export interface HttpRouteSpec {
  parentRefs: { group?: string; kind?: string; name: string }[];
  rules: {
    matches: { path: { type: string; value: string } }[];
    backendRefs: { group?: string; kind?: string; name: string }[];
  }[];
}

/** A NetworkPolicy ingress rule. */
export interface IngressRule {
  from?: { podSelector?: LabelSelector; namespaceSelector?: LabelSelector }[];
  ports?: { port?: number; endPort?: number; protocol?: string }[];
}

/** A NetworkPolicy spec, as far as these tests read it. */
export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  ingress: IngressRule[];
}

/** A PodMonitor spec, as far as these tests read it. */
export interface PodMonitorSpec {
  selector: { matchExpressions: { key: string; operator: string; values: string[] }[] };
  podMetricsEndpoints: { port: string; path: string }[];
}

/** An object's spec, typed as the caller knows its kind to be. */
export function specOf<T>(object: KubeObject): T {
  return object['spec'] as T;
}

function yamlFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFiles(path));
    else if (entry.name.endsWith('.yaml') || entry.name.endsWith('.yml')) out.push(path);
  }
  return out.sort();
}

/**
 * Parses YAML text the way these tests read manifests: every document, YAML 1.2, and a parse
 * error or warning is an error (a manifest kubectl would misread must not pass silently).
 */
export function parseManifestText(text: string, file: string): KubeObject[] {
  const objects: KubeObject[] = [];
  parseAllDocuments(text).forEach((doc, index) => {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) throw new Error(`${file} document ${index}: ${problems.map((p) => p.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return; // an empty document (a trailing ---)
    objects.push(value as KubeObject);
  });
  return objects;
}

/** Every object of every manifest under deploy/, in file order. */
export function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const path of yamlFiles(DEPLOY_DIR)) {
    const file = relative(ROOT, path);
    parseManifestText(readFileSync(path, 'utf8'), file).forEach((object, index) => out.push({ file, index, object }));
  }
  return out;
}

/** A readable name for a manifest in test titles and messages. */
export function describeManifest(m: Manifest): string {
  return `${m.file}${m.index > 0 ? `#${m.index}` : ''} (${m.object.kind} ${m.object.metadata?.name})`;
}

/** The pod specs an object carries, with where they are (KServe and apps/v1 kinds). */
export function podSpecsOf(object: KubeObject): { where: string; spec: PodSpecLike; labels: Record<string, string> }[] {
  switch (object.kind) {
    case 'Deployment':
    case 'StatefulSet': {
      const { template } = specOf<DeploymentSpec>(object);
      return [{ where: 'spec.template.spec', spec: template.spec, labels: template.metadata?.labels ?? {} }];
    }
    case 'InferenceService': {
      const { predictor } = specOf<InferenceServiceSpec>(object);
      return [{ where: 'spec.predictor', spec: predictor, labels: predictor.labels ?? {} }];
    }
    case 'LLMInferenceService': {
      const spec = specOf<LlmInferenceServiceSpec>(object);
      const out = [];
      if (spec.template !== undefined)
        out.push({ where: 'spec.template', spec: spec.template, labels: spec.labels ?? {} });
      if (spec.prefill?.template !== undefined)
        out.push({ where: 'spec.prefill.template', spec: spec.prefill.template, labels: spec.prefill.labels ?? {} });
      const scheduler = spec.router?.scheduler;
      if (scheduler?.template !== undefined)
        out.push({ where: 'spec.router.scheduler.template', spec: scheduler.template, labels: scheduler.labels ?? {} });
      return out;
    }
    default:
      return [];
  }
}

/** A container whose command runs kvwire, with its pod and manifest. */
export interface KvwireContainer {
  readonly manifest: Manifest;
  readonly where: string;
  readonly pod: PodSpecLike;
  readonly container: ContainerSpec;
  /** The kvwire command (`engine`, `sidecar`, `epp`, ...): the first argument. */
  readonly command: string;
  /** The arguments after the command. */
  readonly args: string[];
}

/** Every container in the manifests that runs `kvwire <command> ...`. */
export function kvwireContainers(manifests: readonly Manifest[]): KvwireContainer[] {
  const out: KvwireContainer[] = [];
  for (const manifest of manifests) {
    for (const { where, spec } of podSpecsOf(manifest.object)) {
      for (const container of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
        const argv = [...(container.command ?? []), ...(container.args ?? [])];
        if (argv[0] !== 'kvwire') continue;
        out.push({ manifest, where, pod: spec, container, command: argv[1] ?? '', args: argv.slice(2) });
      }
    }
  }
  return out;
}

/** Every value of `--flag` in an argument list (`--flag=value` or `--flag value`), in order. */
export function flagValues(args: readonly string[], flag: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith(`${flag}=`)) values.push(a.slice(flag.length + 1));
    else if (a === flag && i + 1 < args.length) values.push(args[++i]!);
  }
  return values;
}

/** The value of `--flag` (the last one when repeated), or undefined. */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  return flagValues(args, flag).at(-1);
}

/** Marks a field to delete in {@link changed}. */
export const DELETE: unique symbol = Symbol('delete');

/**
 * A deep copy of `object` with the value at `path` (keys and array indexes) replaced, or deleted
 * with {@link DELETE}: the negative tests take a real manifest and break one thing in it. The
 * path must exist up to its last step, so a test cannot break nothing by a typo in its path.
 */
export function changed<T>(object: T, path: readonly (string | number)[], value: unknown): T {
  type Node = Record<string | number, unknown>;
  const copy = structuredClone(object);
  let node = copy as unknown as Node;
  for (const step of path.slice(0, -1)) {
    const next = node[step];
    if (next === null || typeof next !== 'object')
      throw new Error(`changed(): no ${String(step)} on the path ${path.join('.')}`);
    node = next as Node;
  }
  const last = path.at(-1)!;
  if (value === DELETE) {
    if (!(last in node)) throw new Error(`changed(): nothing to delete at ${path.join('.')}`);
    delete node[last];
  } else node[last] = value;
  return copy;
}

/** The one manifest of this kind and name (throws when there is not exactly one). */
export function manifestNamed(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const found = manifests.filter((m) => m.object.kind === kind && m.object.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} named ${name} under deploy/, found ${found.length}`);
  return found[0]!;
}
