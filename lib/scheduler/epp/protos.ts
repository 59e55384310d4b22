/**
 * Loads kvwire's own definitions of the protos the endpoint picker speaks (`proto/` at the package
 * root: Envoy's ext_proc v3 with FULL_DUPLEX_STREAMED and streamed_response, and grpc.health.v1),
 * with @grpc/proto-loader.
 *
 * Options: `keepCase` (Envoy's snake_case field names), `oneofs` (a virtual field names the member
 * set), `longs: String`, `enums: String`, no defaults. Hazard: `google.protobuf.Struct` comes from
 * protobufjs's bundled descriptors, whose field names are camelCase, so even with `keepCase` a
 * Struct's values are read and written as `stringValue`, `structValue`, `listValue`.
 *
 * @packageDocumentation
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { ErrorCode, KvwireError } from '../../errors.js';

/** The proto-loader options the picker and its tests use. */
export const PROTO_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

/** The proto files, relative to {@link protoDir}. */
export const PROTO_FILES = ['envoy/service/ext_proc/v3/external_processor.proto', 'grpc/health/v1/health.proto'];

/** The package's `proto/` folder (from lib/scheduler/epp or dist/lib/scheduler/epp). */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'proto', PROTO_FILES[0]!))) return join(dir, 'proto');
    dir = dirname(dir);
  }
  throw new KvwireError(
    ErrorCode.UNSUPPORTED,
    `the endpoint picker's proto files are missing (looked for proto/${PROTO_FILES[0]} above ${fileURLToPath(import.meta.url)}): reinstall kvwire`,
  );
}

/** The gRPC services the picker serves and an Envoy-playing client calls. */
export interface EppServices {
  readonly ExternalProcessor: ServiceClientConstructor;
  readonly Health: ServiceClientConstructor;
}

let cached: EppServices | undefined;

/** Loads the protos once. */
export function eppServices(): EppServices {
  if (cached !== undefined) return cached;
  const dir = protoDir();
  const pkg = loadPackageDefinition(loadSync(PROTO_FILES, { ...PROTO_OPTIONS, includeDirs: [dir] })) as GrpcObject;
  const at = (path: string): ServiceClientConstructor =>
    path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as ServiceClientConstructor;
  cached = {
    ExternalProcessor: at('envoy.service.ext_proc.v3.ExternalProcessor'),
    Health: at('grpc.health.v1.Health'),
  };
  return cached;
}
