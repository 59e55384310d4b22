import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { PROTO_FILES, protoDir } from '../../lib/scheduler/epp/protos.js';

// The envoy-api copy @grpc/grpc-js-xds ships (a devDependency): older than the endpoint picker
// protocol, but the reference for every field the two define.
const xdsDeps = join(dirname(createRequire(import.meta.url).resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const SHIPPED_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDeps, d));

function load(files: string[], dirs: string[]): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const d of dirs) if (existsSync(join(d, target))) return join(d, target);
    return target; // google/protobuf/* come from protobufjs's bundled descriptors
  };
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return root;
}

/** What our protos have that the shipped copy predates (the endpoint picker protocol needs them). */
const NEWER_FIELDS = new Set([
  'envoy.service.ext_proc.v3.ProcessingRequest.protocol_config',
  'envoy.service.ext_proc.v3.BodyMutation.streamed_response',
]);
const NEWER_TYPES = new Set([
  'envoy.service.ext_proc.v3.StreamedBodyResponse',
  'envoy.service.ext_proc.v3.ProtocolConfiguration',
]);
const NEWER_ENUM_VALUES = new Set([
  'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode.FULL_DUPLEX_STREAMED',
]);

function walk(
  ns: protobuf.NamespaceBase,
  out: (protobuf.Type | protobuf.Enum)[] = [],
): (protobuf.Type | protobuf.Enum)[] {
  for (const o of ns.nestedArray) {
    if (o instanceof protobuf.Type || o instanceof protobuf.Enum) out.push(o);
    if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) walk(o, out);
  }
  return out;
}

const typeName = (f: protobuf.Field): string => (f.resolvedType !== null ? f.resolvedType.fullName : f.type);

describe("kvwire's ext_proc protos against the copy @grpc/grpc-js-xds ships", () => {
  const ours = load(
    PROTO_FILES.filter((f) => f.startsWith('envoy/')).map((f) => join(protoDir(), f)),
    [protoDir()],
  );
  const shipped = load(
    [join(xdsDeps, 'envoy-api', 'envoy/service/ext_proc/v3/external_processor.proto')],
    SHIPPED_DIRS,
  );
  const ourTypes = walk(ours).filter((t) => t.fullName.startsWith('.envoy.'));

  it('defines the messages and enums the picker uses', () => {
    const names = ourTypes.map((t) => t.fullName.slice(1));
    for (const n of [
      'envoy.service.ext_proc.v3.ProcessingRequest',
      'envoy.service.ext_proc.v3.ProcessingResponse',
      'envoy.config.core.v3.HeaderValueOption',
      'envoy.type.v3.HttpStatus',
    ]) {
      expect(names).toContain(n);
    }
    expect(ours.lookupService('envoy.service.ext_proc.v3.ExternalProcessor').methods.Process!.requestStream).toBe(true);
  });

  it('has every shared field with the same number, type and label, and nothing else but the newer fields', () => {
    let compared = 0;
    for (const t of ourTypes) {
      const name = t.fullName.slice(1);
      const other = shipped.lookup(name);
      if (other === null) {
        expect(NEWER_TYPES.has(name), `${name} exists only in our protos`).toBe(true);
        continue;
      }
      if (t instanceof protobuf.Enum) {
        const o = other as protobuf.Enum;
        for (const [k, v] of Object.entries(t.values)) {
          if (o.values[k] === undefined) expect(NEWER_ENUM_VALUES.has(`${name}.${k}`), `${name}.${k}`).toBe(true);
          else expect(v, `${name}.${k}`).toBe(o.values[k]);
          compared++;
        }
        continue;
      }
      const o = other as protobuf.Type;
      for (const f of t.fieldsArray) {
        const g = o.fields[f.name];
        const where = `${name}.${f.name}`;
        if (g === undefined) {
          expect(NEWER_FIELDS.has(where), `${where} exists only in our protos`).toBe(true);
          expect(o.fieldsById[f.id], `${where}'s number ${f.id} is taken in the shipped copy`).toBeUndefined();
          continue;
        }
        expect(f.id, `${where} number`).toBe(g.id);
        expect(typeName(f), `${where} type`).toBe(typeName(g));
        expect(f.repeated, `${where} repeated`).toBe(g.repeated);
        expect(f.map, `${where} map`).toBe(g.map);
        if (f.map)
          expect((f as unknown as protobuf.MapField).keyType).toBe((g as unknown as protobuf.MapField).keyType);
        expect(f.partOf?.name, `${where} oneof`).toBe(g.partOf?.name);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(60);
  });

  it('interoperates on the wire: shipped-encoded requests decode in ours, ours decode in shipped', () => {
    const req = {
      request_headers: {
        headers: { headers: [{ key: ':path', raw_value: Buffer.from('/v1/completions') }] },
        end_of_stream: false,
      },
      metadata_context: {
        filter_metadata: {
          'envoy.lb.subset_hint': {
            fields: {
              'x-gateway-destination-endpoint-subset': { listValue: { values: [{ stringValue: '10.0.0.1:8000' }] } },
            },
          },
        },
      },
      observability_mode: false,
    };
    const S = shipped.lookupType('envoy.service.ext_proc.v3.ProcessingRequest');
    const O = ours.lookupType('envoy.service.ext_proc.v3.ProcessingRequest');
    const back = O.toObject(O.decode(S.encode(S.fromObject(req)).finish()), { bytes: String }) as typeof req & {
      request_headers: { headers: { headers: { raw_value: string }[] } };
    };
    expect(Buffer.from(back.request_headers.headers.headers[0]!.raw_value, 'base64').toString()).toBe(
      '/v1/completions',
    );
    expect(
      back.metadata_context.filter_metadata['envoy.lb.subset_hint']!.fields['x-gateway-destination-endpoint-subset']!
        .listValue.values[0]!.stringValue,
    ).toBe('10.0.0.1:8000');

    const res = {
      request_headers: {
        response: {
          header_mutation: {
            set_headers: [
              {
                header: { key: 'x-gateway-destination-endpoint', raw_value: Buffer.from('10.0.0.1:8000') },
                append_action: 2,
              },
            ],
          },
          clear_route_cache: true,
        },
      },
      dynamic_metadata: {
        fields: {
          'envoy.lb': {
            structValue: { fields: { 'x-gateway-destination-endpoint': { stringValue: '10.0.0.1:8000' } } },
          },
        },
      },
    };
    const R = ours.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');
    const RS = shipped.lookupType('envoy.service.ext_proc.v3.ProcessingResponse');
    const seen = RS.toObject(RS.decode(R.encode(R.fromObject(res)).finish()), { enums: String }) as {
      request_headers: {
        response: { clear_route_cache: boolean; header_mutation: { set_headers: { append_action: string }[] } };
      };
    };
    expect(seen.request_headers.response.clear_route_cache).toBe(true);
    expect(seen.request_headers.response.header_mutation.set_headers[0]!.append_action).toBe(
      'OVERWRITE_IF_EXISTS_OR_ADD',
    );

    // streamed_response (field 3) is what the shipped copy cannot read: it must land as an unknown field, not as another one.
    const body = {
      request_body: {
        response: { body_mutation: { streamed_response: { body: Buffer.from('{}'), end_of_stream: true } } },
      },
    };
    const bytes = R.encode(R.fromObject(body)).finish();
    const old = RS.toObject(RS.decode(bytes)) as {
      request_body: { response: { body_mutation: Record<string, unknown> } };
    };
    expect(old.request_body.response.body_mutation).toEqual({});
    const fresh = R.toObject(R.decode(bytes)) as {
      request_body: { response: { body_mutation: { streamed_response: { end_of_stream: boolean } } } };
    };
    expect(fresh.request_body.response.body_mutation.streamed_response.end_of_stream).toBe(true);
  });
});
