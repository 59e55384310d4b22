import { Gateway } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/Gateway';
import { GatewayClass } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/GatewayClass';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute';
import { describe, expect, it } from 'vitest';
import { changed, DELETE, loadManifests, manifestNamed, specOf, type HttpRouteSpec } from './manifests.js';

const manifests = loadManifests();
const gatewayClass = manifestNamed(manifests, 'GatewayClass', 'envoy-gateway').object;
const gateway = manifestNamed(manifests, 'Gateway', 'kvwire-gateway').object;
const route = manifestNamed(manifests, 'HTTPRoute', 'llama').object;

/** Builds the model from the YAML object and calls its validate(), as the brief asks. */
function validate(Model: new (data: never) => { validate(): void }, object: unknown): void {
  new Model(object as never).validate();
}

describe('Gateway API objects, checked with @kubernetes-models/gateway-api (Gateway API v1.0)', () => {
  it('accepts the GatewayClass, the Gateway and the HTTPRoute', () => {
    expect(() => validate(GatewayClass, gatewayClass)).not.toThrow();
    expect(() => validate(Gateway, gateway)).not.toThrow();
    expect(() => validate(HTTPRoute, route)).not.toThrow();
  });

  it('refuses a Gateway with a wrong type or a missing field', () => {
    expect(() => validate(Gateway, changed(gateway, ['spec', 'listeners', 0, 'port'], '80'))).toThrow(
      /port must be integer/,
    );
    expect(() => validate(Gateway, changed(gateway, ['spec', 'listeners', 0, 'port'], 0))).toThrow(/port must be >= 1/);
    expect(() => validate(Gateway, changed(gateway, ['spec', 'gatewayClassName'], DELETE))).toThrow(/gatewayClassName/);
    expect(() => validate(Gateway, changed(gateway, ['spec', 'listeners', 0, 'name'], 'HTTP Listener'))).toThrow(
      /pattern/,
    );
  });

  it('refuses an HTTPRoute with a wrong type, enum or pattern', () => {
    expect(() => validate(HTTPRoute, changed(route, ['spec', 'parentRefs', 0, 'name'], 5))).toThrow(
      /name must be string/,
    );
    expect(() =>
      validate(HTTPRoute, changed(route, ['spec', 'rules', 0, 'matches', 0, 'path', 'type'], 'Prefix')),
    ).toThrow(/allowed values/);
    expect(() =>
      validate(HTTPRoute, changed(route, ['spec', 'rules', 0, 'backendRefs', 0, 'kind'], 'Inference Pool')),
    ).toThrow(/pattern/);
    expect(() => validate(HTTPRoute, changed(route, ['spec', 'rules', 0, 'backendRefs', 0, 'weight'], -1))).toThrow(
      /weight/,
    );
    expect(() =>
      validate(HTTPRoute, changed(route, ['spec', 'rules', 0, 'timeouts', 'request'], '10 seconds')),
    ).toThrow(/pattern/);
  });

  it('refuses a GatewayClass whose controller name is not a domain-prefixed path', () => {
    expect(() => validate(GatewayClass, changed(gatewayClass, ['spec', 'controllerName'], 'envoy'))).toThrow(/pattern/);
  });

  it('links route -> Gateway -> GatewayClass, and route -> InferencePool, all defined under deploy/', () => {
    const ref = specOf<HttpRouteSpec>(route).parentRefs[0];
    expect(ref).toMatchObject({ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: gateway.metadata.name });
    expect(specOf<{ gatewayClassName: string }>(gateway).gatewayClassName).toBe(gatewayClass.metadata.name);
    const backend = specOf<HttpRouteSpec>(route).rules[0]!.backendRefs[0]!;
    expect(backend).toMatchObject({ group: 'inference.networking.k8s.io', kind: 'InferencePool' });
    const pool = manifestNamed(manifests, 'InferencePool', backend.name).object;
    expect(pool.metadata.namespace).toBe(route.metadata.namespace);
  });

  it('routes the OpenAI API paths the engines and sidecars serve', () => {
    const paths = specOf<HttpRouteSpec>(route).rules.flatMap((r) => r.matches.map((m) => m.path.value));
    expect(paths).toEqual(expect.arrayContaining(['/v1/completions', '/v1/chat/completions']));
  });
});
