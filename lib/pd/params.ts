/**
 * `kv_transfer_params`: what a prefill worker answers and a decode worker consumes, in the shape
 * vLLM's NixlConnector uses (snake_case keys, so engine wrappers and sidecars pass the object on
 * unchanged), plus kvwire's lease fields.
 *
 * Every value that reaches the decode side came over the network (prefill → sidecar → decode), so
 * {@link parseKvTransferParams} checks each field and names the one that is wrong.
 *
 * @packageDocumentation
 */
import { describeValue } from '../util/describe-value.js';
import { ErrorCode, KvwireError } from '../errors.js';

/** Longest request or engine id accepted, in UTF-8 bytes. */
export const MAX_ID_BYTES = 1024;
/** Most block ids one request may name (2^20 blocks of 16 tokens is 16M tokens). */
export const MAX_BLOCKS_PER_REQUEST = 1 << 20;
/** Largest lease token: tokens are random integers in [1, 2^48), exact in a float64. */
export const MAX_LEASE_TOKEN = 2 ** 48;

/**
 * The parameters a prefill worker returns for a request whose KV it holds for a decode worker.
 *
 * The first eight fields are vLLM NixlConnector's; the `remote_lease_*` fields are kvwire's: they
 * name the slot of the prefill's lease table that guards these blocks, so the decode side can prove
 * the blocks were still held after it read them (see docs/pd.md, "Lease fence").
 */
export interface KvTransferParams {
  /** Always true: the decode side must pull the prefix KV from a remote prefill. */
  readonly do_remote_prefill: true;
  /** Always false in a prefill's answer. */
  readonly do_remote_decode: false;
  /** The prefill engine's id (the handshake cache key). */
  readonly remote_engine_id: string;
  /** The request id on the prefill side (names the lease). */
  readonly remote_request_id: string;
  /** The prefill's block ids holding the request's KV, in token order. */
  readonly remote_block_ids: readonly number[];
  /** Host of the prefill's side channel (the handshake endpoint). */
  readonly remote_host: string;
  /** Port of the prefill's side channel. */
  readonly remote_port: number;
  /** The prefill engine's tensor-parallel size. */
  readonly tp_size: number;
  /** Slot of the prefill's lease table that guards these blocks (kvwire). */
  readonly remote_lease_slot: number;
  /** Random token the slot holds while the lease is held (kvwire). */
  readonly remote_lease_token: number;
}

function bad(field: string, message: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, `kv_transfer_params.${field} ${message}`, { field });
}

/**
 * Checks an id (request or engine) and returns it.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` unless it is a non-empty string of at most
 *   {@link MAX_ID_BYTES} UTF-8 bytes.
 */
export function checkId(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value) > MAX_ID_BYTES) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${field} must be a non-empty string of at most ${MAX_ID_BYTES} bytes, got ${typeof value === 'string' ? `${Buffer.byteLength(value)} bytes` : describeValue(value)}`,
      { field },
    );
  }
  return value;
}

function nonNegativeInt(v: unknown, field: string, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= max) {
    throw bad(field, `must be an integer in [0, ${max}), got ${describeValue(v)}`);
  }
  return v;
}

/**
 * Validates `value` (e.g. parsed from JSON a sidecar forwarded) as {@link KvTransferParams} and
 * returns a frozen copy.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` with `details.field` naming the first bad field.
 */
export function parseKvTransferParams(value: unknown): KvTransferParams {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'kv_transfer_params must be an object as the prefill worker returned it',
      { field: 'kv_transfer_params' },
    );
  }
  const p = value as Record<string, unknown>;
  if (p.do_remote_prefill !== true)
    throw bad('do_remote_prefill', 'must be true: these params do not come from a remote prefill');
  if (p.do_remote_decode !== undefined && p.do_remote_decode !== false)
    throw bad('do_remote_decode', "must be false in a prefill's answer");
  const engineId = checkId(p.remote_engine_id, 'kv_transfer_params.remote_engine_id');
  const requestId = checkId(p.remote_request_id, 'kv_transfer_params.remote_request_id');
  const ids = p.remote_block_ids;
  if (!Array.isArray(ids) || ids.length > MAX_BLOCKS_PER_REQUEST) {
    throw bad('remote_block_ids', `must be an array of at most ${MAX_BLOCKS_PER_REQUEST} block ids`);
  }
  const blockIds: number[] = new Array<number>(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] as unknown;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `kv_transfer_params.remote_block_ids[${i}] is ${describeValue(id)}, not a block id`,
        { field: 'remote_block_ids', index: i },
      );
    }
    blockIds[i] = id;
  }
  const host = p.remote_host;
  if (typeof host !== 'string' || host.length === 0 || host.length > 255 || /[\s/@\u0000-\u001f\u007f]/.test(host)) {
    throw bad('remote_host', `must be a host name or IP address, got ${describeValue(host)}`);
  }
  const port = p.remote_port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw bad('remote_port', `must be a TCP port in 1..65535, got ${describeValue(port)}`);
  }
  const tp = p.tp_size;
  if (typeof tp !== 'number' || !Number.isInteger(tp) || tp < 1 || tp > 4096) {
    throw bad('tp_size', `must be a positive integer (the prefill's tensor-parallel size), got ${describeValue(tp)}`);
  }
  const slot = nonNegativeInt(p.remote_lease_slot, 'remote_lease_slot', 2 ** 32);
  const token = nonNegativeInt(p.remote_lease_token, 'remote_lease_token', MAX_LEASE_TOKEN);
  if (token === 0) throw bad('remote_lease_token', 'must be non-zero (0 marks a free lease slot)');
  return Object.freeze({
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_engine_id: engineId,
    remote_request_id: requestId,
    remote_block_ids: Object.freeze(blockIds),
    remote_host: host,
    remote_port: port,
    tp_size: tp,
    remote_lease_slot: slot,
    remote_lease_token: token,
  });
}
