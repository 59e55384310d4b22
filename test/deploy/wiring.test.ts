// The manifests agree with each other: ports, names and labels that one object states and another
// relies on. Schema checks see one object at a time; a sidecar pointed at the wrong engine port, or
// a pool that names a picker Service that does not exist, passes them and fails on a cluster.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  flagValue,
  flagValues,
  kvwireContainers,
  loadManifests,
  manifestNamed,
  podSpecsOf,
  specOf,
  type ContainerSpec,
  type DeploymentSpec,
  type InferencePoolSpec,
  type LlmInferenceServiceSpec,
  type PodMonitorSpec,
  type ServiceSpec,
  type KvwireContainer,
  type ProbeSpec,
} from './manifests.js';

const manifests = loadManifests();
const containers = kvwireContainers(manifests);

/** The port of a HOST:PORT or URL argument. */
function portOf(address: string): number {
  const m = /:(\d+)(?:\/.*)?$/.exec(address);
  if (m === null) throw new Error(`no port in ${address}`);
  return Number(m[1]);
}

/** Containers of one kvwire command, grouped with the others of their pod. */
function byCommand(command: string, role?: string): KvwireContainer[] {
  return containers.filter((c) => c.command === command && (role === undefined || roleOf(c) === role));
}

/** An engine's role: its --role flag, else the seed's environment (PREFILL_MODE / DECODE_MODE). */
function roleOf(c: KvwireContainer): string | undefined {
  const flag = flagValue(c.args, '--role');
  if (flag !== undefined) return flag;
  const env = new Map((c.container.env ?? []).map((e) => [e.name, e.value]));
  if (env.get('PREFILL_MODE') === 'true') return 'prefill';
  if (env.get('DECODE_MODE') === 'true') return 'decode';
  return undefined;
}

function probesOf(c: ContainerSpec): [string, ProbeSpec][] {
  return (['readinessProbe', 'livenessProbe', 'startupProbe'] as const)
    .filter((k) => c[k] !== undefined)
    .map((k) => [k, c[k]!]);
}

describe('wiring between the manifests', () => {
  it('finds every kvwire role: decode and prefill engines, sidecars and endpoint pickers', () => {
    expect(byCommand('engine', 'decode').length).toBeGreaterThanOrEqual(2);
    expect(byCommand('engine', 'prefill').length).toBeGreaterThanOrEqual(2);
    expect(byCommand('sidecar').length).toBeGreaterThanOrEqual(2);
    expect(byCommand('epp').length).toBeGreaterThanOrEqual(2);
  });

  it('probes ports the container declares, and a kvwire process listens on its declared port', () => {
    for (const m of manifests) {
      for (const { where, spec } of podSpecsOf(m.object)) {
        for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
          const declared = new Set<number | string>((c.ports ?? []).flatMap((p) => [p.containerPort, p.name ?? '']));
          for (const [kind, probe] of probesOf(c)) {
            const port = probe.httpGet?.port ?? probe.grpc?.port ?? probe.tcpSocket?.port;
            if (probe.exec !== undefined) continue;
            expect(declared.has(port!), `${m.file} ${where} ${c.name} ${kind} probes port ${port}, not declared`).toBe(
              true,
            );
          }
        }
      }
    }
    for (const c of containers) {
      const listen = flagValue(c.args, '--listen');
      expect(listen, `${c.manifest.file} ${c.container.name}: kvwire ${c.command} without --listen`).toBeDefined();
      const ports = (c.container.ports ?? []).map((p) => p.containerPort);
      expect(ports, `${c.manifest.file} ${c.container.name}: --listen ${listen}`).toContain(portOf(listen!));
      // Inside a pod, 127.0.0.1 is reachable from the pod only: a probe or a peer could not reach it.
      expect(listen!.startsWith('0.0.0.0:'), `${c.manifest.file} ${c.container.name} --listen ${listen}`).toBe(true);
    }
  });

  it("points each sidecar at its own pod's decode engine, and allows the prefill engines' port only", () => {
    const prefillPorts = new Set(byCommand('engine', 'prefill').map((c) => portOf(flagValue(c.args, '--listen')!)));
    expect(prefillPorts.size, 'prefill engines listen on one port, which the allowlists name').toBe(1);
    for (const s of byCommand('sidecar')) {
      const engine = containers.find((c) => c.pod === s.pod && c.command === 'engine');
      expect(engine, `${s.manifest.file}: the sidecar's pod has no engine`).toBeDefined();
      expect(roleOf(engine!)).toBe('decode');
      expect(flagValue(s.args, '--decode')).toBe(`http://127.0.0.1:${portOf(flagValue(engine!.args, '--listen')!)}`);
      const allow = flagValues(s.args, '--allow');
      expect(allow.length, `${s.manifest.file}: a sidecar with no --allow refuses every prefill`).toBeGreaterThan(0);
      for (const entry of allow)
        expect(portOf(entry), `${s.manifest.file} --allow ${entry}`).toBe([...prefillPorts][0]);
      expect(s.args, `${s.manifest.file}: --allow-any opens the sidecar to any target`).not.toContain('--allow-any');
    }
  });

  it('gives every engine the same P/D secret from a mounted Kubernetes Secret, and prefill an address decode can reach', () => {
    const secretNames = new Set<string>();
    for (const e of byCommand('engine')) {
      const file = flagValue(e.args, '--kv-secret-file');
      expect(file, `${e.manifest.file} ${e.where}: an engine without --kv-secret-file`).toBeDefined();
      const mount = (e.container.volumeMounts ?? []).find((v) => file!.startsWith(`${v.mountPath}/`));
      expect(mount, `${e.manifest.file}: ${file} is not under a mounted volume`).toBeDefined();
      const volume = (e.pod.volumes ?? []).find((v) => v.name === mount!.name);
      expect(volume?.secret?.secretName, `${e.manifest.file}: ${mount!.name} is not a Secret volume`).toBeDefined();
      secretNames.add(volume!.secret!.secretName!);
    }
    expect([...secretNames]).toEqual(['kvwire-kv-secret']);
    for (const p of byCommand('engine', 'prefill')) {
      expect(flagValue(p.args, '--side-channel')).toMatch(/^0\.0\.0\.0:\d+$/);
      // Bound to every interface, the side channel must advertise the pod's IP, or decode gets 0.0.0.0.
      expect(flagValue(p.args, '--advertise-host')).toBe('$(POD_IP)');
      const env = (p.container.env ?? []).find((v) => v.name === 'POD_IP');
      expect(env?.valueFrom).toEqual({ fieldRef: { fieldPath: 'status.podIP' } });
      const sidePort = portOf(flagValue(p.args, '--side-channel')!);
      expect((p.container.ports ?? []).map((x) => x.containerPort)).toContain(sidePort);
    }
  });

  it("gives llama.cpp as many threads as the engine's container requests CPUs", () => {
    for (const e of byCommand('engine')) {
      const cpu = e.container.resources?.requests?.['cpu'];
      expect(cpu, `${e.manifest.file} ${e.where}: no CPU request`).toBeDefined();
      expect(flagValue(e.args, '--threads'), `${e.manifest.file} ${e.where}`).toBe(String(cpu));
    }
  });

  it('defines every $(VAR) an argument uses, before Kubernetes expands it', () => {
    for (const c of containers) {
      const defined = new Set((c.container.env ?? []).map((e) => e.name));
      for (const a of c.args) {
        for (const m of a.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
          expect(defined.has(m[1]!), `${c.manifest.file} ${c.container.name}: ${a} uses $(${m[1]}) undefined`).toBe(
            true,
          );
        }
      }
    }
  });

  it("routes the InferencePool to the sidecars' port, with kvwire epp behind its endpointPickerRef", () => {
    const pool = specOf<InferencePoolSpec>(manifestNamed(manifests, 'InferencePool', 'llama').object);
    const decode = manifestNamed(manifests, 'InferenceService', 'llama-decode').object;
    expect(pool.selector.matchLabels).toEqual({ 'serving.kserve.io/inferenceservice': decode.metadata.name });
    const sidecar = containers.find((c) => c.manifest.object === decode && c.command === 'sidecar')!;
    expect(pool.targetPorts).toEqual([{ number: portOf(flagValue(sidecar.args, '--listen')!) }]);

    const service = specOf<ServiceSpec>(manifestNamed(manifests, 'Service', pool.endpointPickerRef.name).object);
    const port = service.ports.find((p) => p.port === pool.endpointPickerRef.port.number);
    expect(port, 'the picker Service has no port the pool names').toBeDefined();
    const epp = manifests.find(
      (m) =>
        m.object.kind === 'Deployment' &&
        Object.entries(service.selector).every(
          ([k, v]) => specOf<DeploymentSpec>(m.object).template.metadata?.labels?.[k] === v,
        ),
    );
    expect(epp, 'no Deployment matches the picker Service selector').toBeDefined();
    const eppContainer = containers.find((c) => c.manifest === epp && c.command === 'epp')!;
    const named = eppContainer.container.ports!.find((p) => p.name === port!.targetPort);
    expect(named?.containerPort).toBe(portOf(flagValue(eppContainer.args, '--listen')!));
  });

  it("wires KServe's LLMInferenceService the same way: pool -> sidecar port, picker Service -> epp port", () => {
    const llm = manifestNamed(manifests, 'LLMInferenceService', 'llama').object;
    const spec = specOf<LlmInferenceServiceSpec>(llm);
    const pool = spec.router!.scheduler!.pool!.spec;
    const sidecar = containers.find((c) => c.manifest.object === llm && c.command === 'sidecar')!;
    const epp = containers.find((c) => c.manifest.object === llm && c.command === 'epp')!;
    expect(pool.targetPorts).toEqual([{ number: portOf(flagValue(sidecar.args, '--listen')!) }]);
    // KServe names the scheduler's Service ChildName(<name>, "-epp-service").
    expect(pool.endpointPickerRef.name).toBe(`${llm.metadata.name}-epp-service`);
    expect(pool.endpointPickerRef.port.number).toBe(portOf(flagValue(epp.args, '--listen')!));
    expect(pool.selector.matchLabels['llm-d.ai/role']).toBe('decode');
    expect(pool.selector.matchLabels['app.kubernetes.io/name']).toBe(llm.metadata.name);
    expect(spec.router!.gateway!.refs[0]!.name).toBe(
      manifestNamed(manifests, 'Gateway', 'kvwire-gateway').object.metadata.name,
    );
  });

  it('points the endpoint pickers at the Redis Service and the endpoints ConfigMap defined here', () => {
    const redis = manifestNamed(manifests, 'Service', 'kvwire-redis').object;
    const redisPort = specOf<ServiceSpec>(redis).ports[0]!.port;
    for (const e of byCommand('epp')) {
      expect(flagValue(e.args, '--index'), `${e.manifest.file}: the index is not shared`).toBe('redis');
      const url = new URL(flagValue(e.args, '--redis-url')!);
      expect(url.hostname).toBe(`${redis.metadata.name}.${redis.metadata.namespace}.svc.cluster.local`);
      expect(Number(url.port)).toBe(redisPort);
      const file = flagValue(e.args, '--endpoints')!;
      const mount = e.container.volumeMounts!.find((v) => file.startsWith(`${v.mountPath}/`))!;
      const volume = e.pod.volumes!.find((v) => v.name === mount.name)!;
      const configMap = manifestNamed(manifests, 'ConfigMap', volume.configMap!.name!).object;
      expect(Object.keys(configMap['data'] as object)).toContain(file.slice(mount.mountPath.length + 1));
    }
  });

  it('writes the example endpoints file with the ports the engines, sidecars and KV event sockets use', () => {
    const configMap = manifestNamed(manifests, 'ConfigMap', 'kvwire-endpoints').object;
    const file = parseYaml((configMap['data'] as Record<string, string>)['endpoints.yaml']!) as {
      endpoints: Record<string, string>[];
    };
    const decodeEngine = byCommand('engine', 'decode')[0]!;
    const prefillEngine = byCommand('engine', 'prefill')[0]!;
    const sidecar = byCommand('sidecar')[0]!;
    for (const ep of file.endpoints) {
      if (ep['role'] === 'decode') {
        expect(portOf(ep['url']!)).toBe(portOf(flagValue(decodeEngine.args, '--listen')!));
        expect(portOf(ep['sidecar']!)).toBe(portOf(flagValue(sidecar.args, '--listen')!));
        expect(portOf(ep['kvEvents']!)).toBe(portOf(flagValue(decodeEngine.args, '--kv-events-endpoint')!));
        expect(portOf(ep['kvReplay']!)).toBe(portOf(flagValue(decodeEngine.args, '--kv-events-replay-endpoint')!));
        // Envoy routes to IP:port: a name here would never match its subset hint (docs/deploy.md).
        expect(new URL(ep['sidecar']!).hostname).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      } else {
        expect(ep['role']).toBe('prefill');
        expect(portOf(ep['url']!)).toBe(portOf(flagValue(prefillEngine.args, '--listen')!));
      }
    }
  });

  // The scheduler's own loader: what `kvwire epp --endpoints` reads, with its checks.
  it("writes an endpoints file the scheduler's own loader accepts", async () => {
    const { loadEndpointsFile } = await import('../../lib/scheduler/endpoints-file.js');
    const configMap = manifestNamed(manifests, 'ConfigMap', 'kvwire-endpoints').object;
    const dir = mkdtempSync(join(tmpdir(), 'kvwire-deploy-'));
    try {
      const file = join(dir, 'endpoints.yaml');
      writeFileSync(file, (configMap['data'] as Record<string, string>)['endpoints.yaml']!);
      const specs = loadEndpointsFile(file);
      expect(specs.map((s) => s.role).sort()).toEqual(['decode', 'decode', 'prefill', 'prefill']);
      // And the loader refuses a broken copy, so this check can fail.
      writeFileSync(
        file,
        'endpoints:\n  - { role: decode, url: http://10.244.1.17:8001, sidcar: http://10.244.1.17:8000 }\n',
      );
      expect(() => loadEndpointsFile(file)).toThrow(/sidcar/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scrapes every kvwire pod that serves metrics: the PodMonitor selects exactly those by label and port name', () => {
    const monitor = specOf<PodMonitorSpec>(manifestNamed(manifests, 'PodMonitor', 'kvwire').object);
    const [expr] = monitor.selector.matchExpressions;
    const scrapedPorts = new Set(monitor.podMetricsEndpoints.map((e) => e.port));
    const withMetrics = new Set<string>();
    for (const m of manifests) {
      for (const p of podSpecsOf(m.object)) {
        const component = p.labels[expr!.key];
        const ports = [...(p.spec.containers ?? []), ...(p.spec.initContainers ?? [])].flatMap((c) => c.ports ?? []);
        if (component !== undefined && ports.some((port) => scrapedPorts.has(port.name ?? '')))
          withMetrics.add(component);
      }
    }
    expect([...withMetrics].sort()).toEqual([...expr!.values].sort());
    // kvwire epp serves no /metrics over HTTP yet (docs/deploy.md): the day it does, this says so.
    expect(withMetrics.has('epp')).toBe(false);
    const portNames = new Set(containers.flatMap((c) => (c.container.ports ?? []).map((p) => p.name)));
    for (const e of monitor.podMetricsEndpoints) expect(portNames, `PodMonitor port ${e.port}`).toContain(e.port);
    // Every kvwire pod is labelled, so a PodMonitor can find it.
    for (const c of containers) {
      const pod = podSpecsOf(c.manifest.object).find((p) => p.spec === c.pod)!;
      expect(pod.labels[expr!.key], `${c.manifest.file} ${c.where} has no ${expr!.key} label`).toBeDefined();
    }
  });
});
