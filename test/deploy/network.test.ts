// The NetworkPolicies of deploy/network let through exactly the connections the P/D path needs, on
// the ports the other manifests declare: evaluated here with the NetworkPolicy rules (a pod some
// policy selects takes only what one of their ingress rules allows), on the project's own pods.
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { describe, expect, it } from 'vitest';
import {
  changed,
  flagValue,
  kvwireContainers,
  loadManifests,
  manifestNamed,
  specOf,
  type KubeObject,
  type NetworkPolicySpec,
  type ServiceSpec,
} from './manifests.js';

const manifests = loadManifests();
const policies = manifests.filter((m) => m.object.kind === 'NetworkPolicy').map((m) => m.object);
const containers = kvwireContainers(manifests);

/** A connection's source: a pod of the namespace (its labels), or any pod of another namespace. */
type Source = { labels: Record<string, string> } | { namespace: string };

function matches(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

/** Does the set of policies let `source` reach `port` of a pod labelled `target`? */
function allowed(all: readonly KubeObject[], source: Source, target: Record<string, string>, port: number): boolean {
  const selecting = all.filter((p) => matches(specOf<NetworkPolicySpec>(p).podSelector.matchLabels, target));
  if (selecting.length === 0) return true; // not isolated
  return selecting.some((p) =>
    specOf<NetworkPolicySpec>(p).ingress.some((rule) => {
      const fromOk = (rule.from ?? [{}]).some((peer) => {
        if (peer.namespaceSelector !== undefined) {
          // Only kubernetes.io/metadata.name selectors are written here; another namespace's pods.
          return (
            'namespace' in source &&
            peer.namespaceSelector.matchLabels?.['kubernetes.io/metadata.name'] === source.namespace
          );
        }
        return 'labels' in source && matches(peer.podSelector?.matchLabels, source.labels);
      });
      const portOk = (rule.ports ?? [{}]).some(
        (p) =>
          p.port === undefined || (p.endPort === undefined ? p.port === port : port >= p.port && port <= p.endPort),
      );
      return fromOk && portOk;
    }),
  );
}

const role = (r: string): Source => ({ labels: { 'kvwire/component': r } });
const pod = (r: string): Record<string, string> => ({ 'kvwire/component': r });
const GATEWAY: Source = { namespace: 'envoy-gateway-system' };
const MONITORING: Source = { namespace: 'monitoring' };
const ELSEWHERE: Source = { namespace: 'default' };
const REDIS = { 'app.kubernetes.io/name': 'kvwire-redis' };

function portOf(address: string): number {
  return Number(/:(\d+)(?:\/.*)?$/.exec(address)![1]);
}
function engine(r: string) {
  return containers.find(
    (c) =>
      c.command === 'engine' &&
      c.manifest.object.kind === 'InferenceService' &&
      c.container.env?.some((e) => e.name === `${r.toUpperCase()}_MODE`),
  )!;
}

const decodeEngine = engine('decode');
const prefillEngine = engine('prefill');
const sidecar = containers.find((c) => c.command === 'sidecar')!;
const epp = containers.find((c) => c.command === 'epp' && c.manifest.object.kind === 'Deployment')!;
const ucxRange = prefillEngine.container
  .env!.find((e) => e.name === 'UCX_TCP_PORT_RANGE')!
  .value!.split('-')
  .map(Number);
const redisPort = specOf<ServiceSpec>(manifestNamed(manifests, 'Service', 'kvwire-redis').object).ports[0]!.port;

/** [from, to pod, port, why] for every connection the deployment makes. */
const needed: [Source, Record<string, string>, number, string][] = [
  [GATEWAY, pod('decode'), portOf(flagValue(sidecar.args, '--listen')!), 'Envoy -> sidecar'],
  [GATEWAY, pod('epp'), portOf(flagValue(epp.args, '--listen')!), 'Envoy -> picker (ext_proc)'],
  [role('decode'), pod('prefill'), portOf(flagValue(prefillEngine.args, '--listen')!), 'sidecar -> prefill leg'],
  [role('decode'), pod('prefill'), portOf(flagValue(prefillEngine.args, '--side-channel')!), 'decode -> handshake'],
  [role('decode'), pod('prefill'), ucxRange[0]!, 'decode -> UCX (first port)'],
  [role('decode'), pod('prefill'), ucxRange[1]!, 'decode -> UCX (last port)'],
  [role('prefill'), pod('decode'), ucxRange[0]!, 'prefill -> UCX (back)'],
  [
    role('epp'),
    pod('decode'),
    portOf(flagValue(decodeEngine.args, '--listen')!),
    'picker -> engine health, load, tokenize',
  ],
  [role('epp'), pod('decode'), portOf(flagValue(decodeEngine.args, '--kv-events-endpoint')!), 'picker -> KV events'],
  [
    role('epp'),
    pod('decode'),
    portOf(flagValue(decodeEngine.args, '--kv-events-replay-endpoint')!),
    'picker -> replay',
  ],
  [role('epp'), pod('prefill'), portOf(flagValue(prefillEngine.args, '--listen')!), 'picker -> prefill health'],
  [role('epp'), REDIS, redisPort, 'picker -> index'],
  [MONITORING, pod('decode'), portOf(flagValue(decodeEngine.args, '--listen')!), 'Prometheus -> engine'],
  [MONITORING, pod('decode'), portOf(flagValue(sidecar.args, '--listen')!), 'Prometheus -> sidecar'],
  [MONITORING, pod('prefill'), portOf(flagValue(prefillEngine.args, '--listen')!), 'Prometheus -> engine'],
];

/** Connections nothing in the deployment makes: each would widen what a compromised pod reaches. */
const refused: [Source, Record<string, string>, number, string][] = [
  [GATEWAY, pod('prefill'), portOf(flagValue(prefillEngine.args, '--listen')!), 'Envoy -> prefill directly'],
  [
    GATEWAY,
    pod('decode'),
    portOf(flagValue(decodeEngine.args, '--listen')!),
    'Envoy -> decode engine, skipping the sidecar',
  ],
  [role('epp'), pod('prefill'), portOf(flagValue(prefillEngine.args, '--side-channel')!), 'picker -> handshake'],
  [
    ELSEWHERE,
    pod('prefill'),
    portOf(flagValue(prefillEngine.args, '--side-channel')!),
    'another namespace -> handshake',
  ],
  [ELSEWHERE, pod('decode'), ucxRange[0]!, 'another namespace -> UCX'],
  [role('decode'), REDIS, redisPort, 'decode -> index'],
  [role('prefill'), pod('prefill'), ucxRange[0]!, 'prefill -> prefill UCX'],
  [role('decode'), pod('prefill'), ucxRange[1]! + 1, 'decode -> a port past the UCX range'],
];

describe('NetworkPolicies (deploy/network)', () => {
  it('isolate every kvwire pod and Redis', () => {
    for (const target of [pod('decode'), pod('prefill'), pod('epp'), REDIS]) {
      expect(
        policies.some((p) => matches(specOf<NetworkPolicySpec>(p).podSelector.matchLabels, target)),
        JSON.stringify(target),
      ).toBe(true);
    }
  });

  it.each(needed.map(([s, t, port, why]) => [why, port, s, t] as const))(
    'allow %s (port %i)',
    (_, port, source, target) => {
      expect(allowed(policies, source, target, port)).toBe(true);
    },
  );

  it.each(refused.map(([s, t, port, why]) => [why, port, s, t] as const))(
    'refuse %s (port %i)',
    (_, port, source, target) => {
      expect(allowed(policies, source, target, port)).toBe(false);
    },
  );

  it('would notice a policy that let too much through (the evaluator can fail)', () => {
    const prefill = manifestNamed(manifests, 'NetworkPolicy', 'kvwire-prefill').object;
    const open = changed(prefill, ['spec', 'ingress', 1, 'ports'], [{ port: 5600 }]);
    const others = policies.filter((p) => p !== prefill);
    expect(allowed([...others, open], role('epp'), pod('prefill'), 5600)).toBe(true);
  });

  it('are refused by the model when malformed', () => {
    const prefill = manifestNamed(manifests, 'NetworkPolicy', 'kvwire-prefill').object;
    expect(() =>
      new NetworkPolicy(changed(prefill, ['spec', 'ingress', 0, 'ports', 2, 'endPort'], '40099')).validate(),
    ).toThrow(/endPort must be integer/);
    expect(() => new NetworkPolicy(changed(prefill, ['spec', 'policyTypes'], 'Ingress')).validate()).toThrow(
      /policyTypes/,
    );
  });
});
