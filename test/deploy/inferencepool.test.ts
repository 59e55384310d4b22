import { describe, expect, it } from 'vitest';
import { changed, DELETE, loadManifests, manifestNamed } from './manifests.js';
import { schemaAjv, schemaValidator } from './validators.js';

const manifests = loadManifests();
const check = schemaValidator(schemaAjv(), 'inferencepool.v1.json');
const pool = manifestNamed(manifests, 'InferencePool', 'llama').object;

function refused(object: unknown, what: RegExp): void {
  const errors = check(object);
  expect(errors, 'the broken InferencePool was accepted').not.toEqual([]);
  expect(errors.join('\n')).toMatch(what);
}

describe('InferencePool (inference.networking.k8s.io/v1)', () => {
  it('accepts the pool of deploy/gateway', () => {
    expect(check(pool)).toEqual([]);
  });

  it('refuses wrong types and values out of range', () => {
    refused(changed(pool, ['spec', 'targetPorts', 0, 'number'], '8000'), /number must be integer/);
    refused(changed(pool, ['spec', 'targetPorts', 0, 'number'], 0), /number must be >= 1/);
    refused(changed(pool, ['spec', 'targetPorts', 0, 'number'], 65536), /number must be <= 65535/);
    refused(changed(pool, ['spec', 'endpointPickerRef', 'port', 'number'], 70000), /number must be <= 65535/);
    refused(changed(pool, ['spec', 'appProtocol'], 'grpc'), /allowed values/);
  });

  it('refuses what its CEL rules refuse: a Service picker without a port, and a target port twice', () => {
    refused(changed(pool, ['spec', 'endpointPickerRef', 'port'], DELETE), /required property 'port'/);
    // kind defaults to Service: leaving it out does not lift the rule.
    refused(
      changed(
        changed(pool, ['spec', 'endpointPickerRef', 'kind'], DELETE),
        ['spec', 'endpointPickerRef', 'port'],
        DELETE,
      ),
      /required property 'port'/,
    );
    refused(changed(pool, ['spec', 'targetPorts'], [{ number: 8000 }, { number: 8000 }]), /duplicate items/);
  });

  it('accepts a picker of another kind without a port (the rule is for Services only)', () => {
    const other = changed(
      changed(pool, ['spec', 'endpointPickerRef', 'kind'], 'Backend'),
      ['spec', 'endpointPickerRef', 'port'],
      DELETE,
    );
    expect(check(other)).toEqual([]);
  });

  it('refuses a missing selector, an empty one, and a label value Kubernetes would not take', () => {
    refused(changed(pool, ['spec', 'selector'], DELETE), /required property 'selector'/);
    refused(changed(pool, ['spec', 'selector', 'matchLabels'], {}), /fewer than 1 properties/);
    refused(
      changed(pool, ['spec', 'selector', 'matchLabels', 'serving.kserve.io/inferenceservice'], 'llama decode'),
      /must match pattern/,
    );
    refused(changed(pool, ['spec', 'targetPorts'], []), /fewer than 1 items/);
  });

  it('refuses unknown fields and the older x-k8s.io alpha API', () => {
    refused(changed(pool, ['spec', 'targetPortNumber'], 8000), /additional properties \(targetPortNumber\)/);
    refused(
      changed(pool, ['apiVersion'], 'inference.networking.x-k8s.io/v1alpha2'),
      /apiVersion must be equal to constant/,
    );
  });
});
