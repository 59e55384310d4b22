import { describe, expect, it } from 'vitest';
import { describeManifest, loadManifests, parseManifestText } from './manifests.js';
import { kindKey, schemaAjv, schemaValidator, validators } from './validators.js';

const manifests = loadManifests();
const byKind = validators();

describe('every manifest under deploy/ is checked', () => {
  it('finds the manifests of every scenario', () => {
    const kinds = new Set(manifests.map((m) => kindKey(m.object)));
    // The scenarios docs/deploy.md describes: if a folder goes missing, this says so.
    for (const k of [
      'serving.kserve.io/v1beta1 InferenceService',
      'serving.kserve.io/v1alpha2 LLMInferenceService',
      'inference.networking.k8s.io/v1 InferencePool',
      'gateway.networking.k8s.io/v1 Gateway',
      'gateway.networking.k8s.io/v1 HTTPRoute',
      'apps/v1 Deployment',
      'v1 Service',
      'monitoring.coreos.com/v1 PodMonitor',
    ]) {
      expect(kinds, k).toContain(k);
    }
  });

  it.each(manifests.map((m) => [describeManifest(m), m] as const))('%s has a validator and passes it', (_, m) => {
    const validate = byKind.get(kindKey(m.object));
    expect(validate, `no validator for ${kindKey(m.object)}: add one in test/deploy/validators.ts`).toBeDefined();
    expect(validate!(m.object)).toEqual([]);
  });

  it('names each object once per namespace and kind', () => {
    const seen = new Set<string>();
    for (const m of manifests) {
      const key = `${m.object.kind} ${m.object.metadata.namespace ?? ''}/${m.object.metadata.name}`;
      expect(seen.has(key), `${key} is defined twice`).toBe(false);
      seen.add(key);
    }
  });
});

describe('reading manifests', () => {
  it('refuses YAML that does not parse cleanly instead of reading part of it', () => {
    expect(() => parseManifestText('kind: Service\nmetadata:\n  name: a\n name: b\n', 'bad.yaml')).toThrow(/bad.yaml/);
    expect(() => parseManifestText('kind: Service\nkind: Deployment\n', 'dup.yaml')).toThrow(/dup.yaml/);
  });

  it('reads every document of a multi-document file', () => {
    const objects = parseManifestText('kind: A\n---\nkind: B\n---\n', 'two.yaml');
    expect(objects.map((o) => o.kind)).toEqual(['A', 'B']);
  });
});

describe('the project schemas (deploy/schema)', () => {
  it('compile in ajv strict mode', () => {
    const ajv = schemaAjv();
    for (const id of ['inferenceservice.v1beta1.json', 'llminferenceservice.v1alpha2.json', 'inferencepool.v1.json']) {
      expect(() => schemaValidator(ajv, id), id).not.toThrow();
    }
  });

  it('refuse an object of another kind or version', () => {
    const ajv = schemaAjv();
    const pool = manifests.find((m) => m.object.kind === 'InferencePool')!.object;
    expect(
      schemaValidator(ajv, 'inferencepool.v1.json')({ ...pool, apiVersion: 'inference.networking.x-k8s.io/v1alpha2' }),
    ).not.toEqual([]);
    expect(schemaValidator(ajv, 'inferenceservice.v1beta1.json')(pool)).not.toEqual([]);
  });
});
