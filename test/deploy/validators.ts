/**
 * One validator per Kubernetes kind the manifests under deploy/ use: the published models where a
 * maintained one runs on Node 20 (`@kubernetes-models/gateway-api` 0.5.x for Gateway API v1.0,
 * `kubernetes-models` 4.x for core, apps and networking, `@kubernetes-models/prometheus-operator` 4.x for
 * PodMonitor), and the project's JSON schemas (deploy/schema, written from the CRDs) with ajv for
 * KServe's kinds and the InferencePool, which no model on Node 20 covers.
 *
 * The models check types, enums, patterns and required fields as their CRDs and OpenAPI do, but
 * not unknown fields (Kubernetes' schemas leave them open; on a cluster, kubectl's strict field
 * validation refuses them). The project's schemas refuse unknown fields.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Gateway } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway';
import { GatewayClass } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { Ajv, type ErrorObject } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { DEPLOY_DIR } from './manifests.js';

/** Checks one object; returns what is wrong with it (empty: valid). */
export type Validator = (object: unknown) => string[];

/** The folder of the project's JSON schemas. */
export const SCHEMA_DIR = join(DEPLOY_DIR, 'schema');

/**
 * An ajv instance with every schema of deploy/schema added. Strict, so a typo in a schema throws,
 * except `strictRequired`, which would refuse the `if`/`then` pairs that write the CRDs' CEL rules
 * (`then: { required: ['port'] }` names a property defined beside it, not inside `then`).
 */
export function schemaAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
  for (const file of readdirSync(SCHEMA_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    ajv.addSchema(JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')) as object);
  }
  return ajv;
}

function ajvMessages(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const extra =
      e.keyword === 'additionalProperties'
        ? ` (${(e.params as { additionalProperty: string }).additionalProperty})`
        : e.keyword === 'enum' || e.keyword === 'const'
          ? ` (${JSON.stringify(e.params)})`
          : '';
    return `${e.instancePath || '/'} ${e.message ?? e.keyword}${extra}`;
  });
}

/** A validator for the project schema with this `$id` (a file name in deploy/schema). */
export function schemaValidator(ajv: Ajv, id: string): Validator {
  const validate = ajv.getSchema(id);
  if (validate === undefined) throw new Error(`deploy/schema has no schema with $id ${id}`);
  return (object) => (validate(object) ? [] : ajvMessages(validate.errors));
}

/** The models' `validate()` throws on the first problem; this turns that into a list. */
function modelValidator(create: (data: never) => { validate(): void }): Validator {
  return (object) => {
    try {
      create(object as never).validate();
      return [];
    } catch (e) {
      return [(e as Error).message];
    }
  };
}

/** Validators by `apiVersion kind`. */
export function validators(): Map<string, Validator> {
  const ajv = schemaAjv();
  return new Map<string, Validator>([
    ['gateway.networking.k8s.io/v1 GatewayClass', modelValidator((d) => new GatewayClass(d))],
    ['gateway.networking.k8s.io/v1 Gateway', modelValidator((d) => new Gateway(d))],
    ['gateway.networking.k8s.io/v1 HTTPRoute', modelValidator((d) => new HTTPRoute(d))],
    ['apps/v1 Deployment', modelValidator((d) => new Deployment(d))],
    ['v1 Service', modelValidator((d) => new Service(d))],
    ['v1 ConfigMap', modelValidator((d) => new ConfigMap(d))],
    ['networking.k8s.io/v1 NetworkPolicy', modelValidator((d) => new NetworkPolicy(d))],
    ['monitoring.coreos.com/v1 PodMonitor', modelValidator((d) => new PodMonitor(d))],
    ['inference.networking.k8s.io/v1 InferencePool', schemaValidator(ajv, 'inferencepool.v1.json')],
    ['serving.kserve.io/v1beta1 InferenceService', schemaValidator(ajv, 'inferenceservice.v1beta1.json')],
    ['serving.kserve.io/v1alpha2 LLMInferenceService', schemaValidator(ajv, 'llminferenceservice.v1alpha2.json')],
  ]);
}

/** The key {@link validators} uses for an object. */
export function kindKey(object: { apiVersion?: unknown; kind?: unknown }): string {
  return `${String(object.apiVersion)} ${String(object.kind)}`;
}
