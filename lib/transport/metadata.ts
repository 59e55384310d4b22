/**
 * Agent metadata: the opaque bytes a peer passes to `connect()`.
 *
 * Layout (version 2, little-endian):
 * ```
 *  0  magic "KVWM"             4 bytes
 *  4  version                  u16 (= 2)
 *  6  flags                    u16 (bit 0: signed, with a 40-byte signature trailer)
 *  8  total length             u32 (the whole blob, trailer included)
 * 12  crc32 of bytes 16..body  u32 (IEEE 802.3 polynomial, as zlib; the body ends at the trailer)
 * 16  engine                   u8  (1 = ucx, 2 = loopback), then 3 reserved bytes
 * 20  pid                      u32
 * 24  process start time       u64 (clock ticks since boot; guards pid reuse)
 * 32  name                     u16 length + UTF-8
 *     host id                  u16 length + UTF-8
 *     engine address           u32 length + bytes (UCX worker address; loopback: an id)
 *     region count             u32
 *     per region: id u32, kind u8, label (u16 length + UTF-8), length u64
 *     The kind byte: bits 0-1 the access (0 none, 1 read, 2 write, 3 readwrite), bit 2 the
 *     memory (0 host, 1 CUDA device memory). Other bits are 0.
 *  end - 40 (signed only)      key id (8 bytes) + HMAC-SHA256 (32 bytes) over every byte before it
 * ```
 * What metadata does not carry (version 1 did): base addresses and keys. Metadata is public (it
 * travels through routers, caches and files), and what gives access is handed out by the target
 * itself after the handshake, to that peer only (the grant, lib/transport/grant.ts).
 *
 * Parsing is defensive: every length is checked against the bytes present and against hard
 * limits, and the checksum rejects corrupted or random bytes before anything reaches the engine.
 * A crafted blob with a recomputed checksum passes it: agents that share a secret sign their
 * metadata and check the signature before parsing (lib/transport/auth.ts); the engine checks the
 * worker address before UCX parses it (native/engine/address_check.h).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { invalid, objectArgument } from './arguments.js';
import { checkMetadataMac, keyIdText, metadataMac, type AuthKey } from './auth.js';
import type { Access, EngineKind } from './types.js';

/** The metadata format version this build writes and reads. */
export const METADATA_VERSION = 2;
const MAGIC = 0x4d57564b; // "KVWM" read as little-endian u32
const HEADER = 32;
const FLAG_SIGNED = 1;
/** Bytes of the signature trailer of signed metadata: key id (8) and HMAC-SHA256 (32). */
export const SIGNATURE_BYTES = 40;

/** Hard limits: anything larger is refused as bad metadata. */
export const METADATA_LIMITS = {
  totalBytes: 64 * 1024 * 1024,
  nameBytes: 1024,
  hostIdBytes: 1024,
  addressBytes: 64 * 1024,
  regions: 1 << 20,
  labelBytes: 1024,
  keyBytes: 64 * 1024,
} as const;

/** A region as metadata (and, with base and key, the grant) describes it. */
export interface RegionDescription {
  readonly id: number;
  readonly label: string;
  readonly access: Access;
  readonly length: number;
  /** Host memory (the default) or CUDA device memory. */
  readonly memory?: 'host' | 'cuda';
  /** The owner's virtual address of byte 0: from the grant, for one-sided access only (else absent or 0). */
  readonly base?: bigint;
  /** Engine-specific key, from the grant (UCX: an rkey of mappable shared memory; device memory: a device key). */
  readonly key?: Uint8Array;
}

/** Everything a peer learns from metadata. */
export interface AgentDescription {
  readonly version: number;
  readonly engine: EngineKind;
  readonly name: string;
  readonly pid: number;
  readonly pidStart: number;
  readonly hostId: string;
  readonly address: Uint8Array;
  readonly regions: readonly RegionDescription[];
  /** The id of the key that signed it (hex), when signed. */
  readonly keyId?: string;
}

const MEMORY_CUDA = 4;
const ACCESS_CODES: Record<Access, number> = { none: 0, read: 1, write: 2, readwrite: 3 };
const ACCESS_NAMES: Access[] = ['none', 'read', 'write', 'readwrite'];
const ENGINE_CODES: Record<EngineKind, number> = { ucx: 1, loopback: 2 };

/** The access mode as the engine's bit flags (read = 1, write = 2). */
export function accessBits(a: Access): number {
  return ACCESS_CODES[a];
}

/** The access mode for engine bit flags. */
export function accessFromBits(bits: number): Access {
  return ACCESS_NAMES[bits & 3]!;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, as zlib's crc32) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** What {@link encodeMetadata} writes: no version, no key id (the signer decides). */
export type MetadataInput = Omit<AgentDescription, 'version' | 'keyId'>;

/**
 * Serializes an agent description (regions without base or key: those travel in grants), signed
 * with `signer` when given.
 */
export function encodeMetadata(d: MetadataInput, signer?: AuthKey): Uint8Array {
  objectArgument(d, 'description', 'an agent description { engine, name, pid, pidStart, hostId, address, regions }');
  const shape = d as { regions: unknown; address: unknown; name: unknown; hostId: unknown };
  if (
    !Array.isArray(shape.regions) ||
    !(shape.address instanceof Uint8Array) ||
    typeof shape.name !== 'string' ||
    typeof shape.hostId !== 'string'
  ) {
    invalid('description', 'an agent description { engine, name, pid, pidStart, hostId, address, regions }', d);
  }
  const name = enc.encode(d.name);
  const host = enc.encode(d.hostId);
  const labels = d.regions.map((r) => enc.encode(r.label));
  let body = HEADER + 2 + name.length + 2 + host.length + 4 + d.address.length + 4;
  labels.forEach((l) => {
    body += 4 + 1 + 2 + l.length + 8;
  });
  const size = body + (signer !== undefined ? SIGNATURE_BYTES : 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint16(4, METADATA_VERSION, true);
  v.setUint16(6, signer !== undefined ? FLAG_SIGNED : 0, true);
  v.setUint32(8, size, true);
  out[16] = ENGINE_CODES[d.engine];
  v.setUint32(20, d.pid >>> 0, true);
  v.setBigUint64(24, BigInt(d.pidStart), true);
  let o = HEADER;
  const bytes = (b: Uint8Array, lenSize: 2 | 4) => {
    if (lenSize === 2) v.setUint16(o, b.length, true);
    else v.setUint32(o, b.length, true);
    o += lenSize;
    out.set(b, o);
    o += b.length;
  };
  bytes(name, 2);
  bytes(host, 2);
  bytes(d.address, 4);
  v.setUint32(o, d.regions.length, true);
  o += 4;
  d.regions.forEach((r, i) => {
    v.setUint32(o, r.id, true);
    out[o + 4] = ACCESS_CODES[r.access] | (r.memory === 'cuda' ? MEMORY_CUDA : 0);
    o += 5;
    bytes(labels[i]!, 2);
    v.setBigUint64(o, BigInt(r.length), true);
    o += 8;
  });
  v.setUint32(12, crc32(out.subarray(16, body)), true);
  if (signer !== undefined) {
    out.set(signer.id, body);
    out.set(metadataMac(signer, out.subarray(0, body)), body + 8);
  }
  return out;
}

function bad(message: string): never {
  throw new KvwireError(
    ErrorCode.BAD_METADATA,
    `bad metadata: ${message}; pass the exact bytes agent.metadata() returned`,
  );
}

function unauthorized(message: string): never {
  throw new KvwireError(ErrorCode.UNAUTHORIZED, `metadata refused: ${message}`);
}

/** The frame of a blob: enough to check a signature without parsing anything else. */
function frame(input: unknown): { b: Uint8Array; v: DataView; body: number; signed: boolean } {
  if (!(input instanceof Uint8Array)) {
    throw new KvwireError(
      ErrorCode.BAD_METADATA,
      `bad metadata: expected a Uint8Array (or Buffer) from agent.metadata(), not ${describeValue(input)}`,
    );
  }
  const b = input;
  if (b.length < HEADER) bad(`${b.length} bytes is shorter than the ${HEADER}-byte header`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint32(0, true) !== MAGIC) bad('it does not start with the kvwire magic "KVWM"');
  const version = v.getUint16(4, true);
  if (version !== METADATA_VERSION) {
    bad(
      `version ${version} is not supported by this kvwire (which reads version ${METADATA_VERSION}); upgrade both peers to one release`,
    );
  }
  const flags = v.getUint16(6, true);
  if ((flags & ~FLAG_SIGNED) !== 0) bad(`unknown flags 0x${flags.toString(16)} (written by a newer kvwire?)`);
  const total = v.getUint32(8, true);
  if (total > METADATA_LIMITS.totalBytes) {
    bad(`declared size ${total} exceeds the ${METADATA_LIMITS.totalBytes}-byte limit`);
  }
  if (total !== b.length) bad(`declared size ${total} but ${b.length} bytes were given (truncated or padded)`);
  const signed = (flags & FLAG_SIGNED) !== 0;
  const body = signed ? total - SIGNATURE_BYTES : total;
  if (body < HEADER) bad('it is too short for its signature');
  return { b, v, body, signed };
}

/**
 * Checks the signature of metadata over its raw bytes, before anything in it is parsed: with
 * `keys` (this agent authenticates), only metadata signed by one of them passes; without, signed
 * metadata is refused too (this agent could not check it, and its owner expects to authenticate
 * its peers). Returns the id of the key that signed it.
 *
 * @throws KvwireError `ERR_KVWIRE_UNAUTHORIZED` saying what does not match and what to do;
 *   `ERR_KVWIRE_BAD_METADATA` when the frame itself is malformed.
 */
export function verifyMetadata(input: unknown, keys: readonly AuthKey[]): string | undefined {
  const { b, body, signed } = frame(input);
  if (keys.length === 0) {
    if (signed) {
      unauthorized(
        'it is signed, and its agent authenticates its peers; give this agent the same secret (AgentOptions.auth, or the KVWIRE_SECRET environment variable)',
      );
    }
    return undefined;
  }
  if (!signed) {
    unauthorized(
      'it is not signed, and this agent connects only to agents that share its secret; give the peer the same secret (AgentOptions.auth or KVWIRE_SECRET)',
    );
  }
  const id = b.subarray(body, body + 8);
  const mac = b.subarray(body + 8, body + SIGNATURE_BYTES);
  const key = keys.find((k) => k.id.equals(id));
  if (key === undefined) {
    unauthorized(
      `it is signed with key ${keyIdText(id)}, which this agent does not hold (it holds ${keys.map((k) => keyIdText(k.id)).join(', ')}); both agents need the same secret`,
    );
  }
  if (!checkMetadataMac(key, b.subarray(0, body), mac)) {
    unauthorized(`its signature does not match its bytes (altered after agent.metadata() signed it)`);
  }
  return keyIdText(id);
}

/**
 * Parses metadata, refusing anything truncated, oversized, corrupted or of another version. Does
 * not check a signature: call {@link verifyMetadata} first (connect() does).
 */
export function decodeMetadata(input: unknown): AgentDescription {
  const { b, v, body, signed } = frame(input);
  if (crc32(b.subarray(16, body)) !== v.getUint32(12, true)) bad('checksum mismatch (corrupted in transit?)');
  const engineCode = b[16];
  const engine = (Object.keys(ENGINE_CODES) as EngineKind[]).find((k) => ENGINE_CODES[k] === engineCode);
  if (engine === undefined) bad(`unknown engine code ${engineCode}`);
  const pid = v.getUint32(20, true);
  const pidStart = Number(v.getBigUint64(24, true));
  let o = HEADER;
  const need = (n: number, what: string) => {
    if (o + n > body) bad(`truncated while reading ${what} (needs ${n} bytes at offset ${o}, has ${body - o})`);
  };
  const bytes = (lenSize: 2 | 4, limit: number, what: string): Uint8Array => {
    need(lenSize, `${what} length`);
    const n = lenSize === 2 ? v.getUint16(o, true) : v.getUint32(o, true);
    o += lenSize;
    if (n > limit) bad(`${what} of ${n} bytes exceeds the ${limit}-byte limit`);
    need(n, what);
    const out = b.slice(o, o + n);
    o += n;
    return out;
  };
  const text = (limit: number, what: string): string => {
    try {
      return dec.decode(bytes(2, limit, what));
    } catch (e) {
      if (e instanceof KvwireError) throw e;
      return bad(`${what} is not valid UTF-8`);
    }
  };
  const name = text(METADATA_LIMITS.nameBytes, 'name');
  const hostId = text(METADATA_LIMITS.hostIdBytes, 'host id');
  const address = bytes(4, METADATA_LIMITS.addressBytes, 'engine address');
  if (address.length === 0) bad('it carries no engine address');
  need(4, 'region count');
  const count = v.getUint32(o, true);
  o += 4;
  if (count > METADATA_LIMITS.regions) bad(`${count} regions exceed the limit of ${METADATA_LIMITS.regions}`);
  const regions: RegionDescription[] = [];
  const ids = new Set<number>();
  const labels = new Set<string>();
  for (let i = 0; i < count; i++) {
    need(5, `region ${i}`);
    const id = v.getUint32(o, true);
    const kind = b[o + 4]!;
    o += 5;
    if ((kind & ~(3 | MEMORY_CUDA)) !== 0) bad(`region ${i} has unknown kind ${kind}`);
    if ((kind & 3) === 0) bad(`region ${i} has access none, which is never exported`);
    const label = text(METADATA_LIMITS.labelBytes, `region ${i} label`);
    need(8, `region ${i} length`);
    const length = v.getBigUint64(o, true);
    o += 8;
    if (length === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) bad(`region ${i} ('${label}') has length ${length}`);
    if (id === 0 || ids.has(id) || labels.has(label))
      bad(`region ${i} has id ${id} (repeated or 0) or repeats label '${label}'`);
    ids.add(id);
    labels.add(label);
    const memory = (kind & MEMORY_CUDA) !== 0 ? 'cuda' : 'host';
    regions.push({ id, label, access: ACCESS_NAMES[kind & 3]!, length: Number(length), memory });
  }
  if (o !== body) bad(`${body - o} unexpected trailing bytes`);
  const keyId = signed ? keyIdText(b.subarray(body, body + 8)) : undefined;
  return {
    version: METADATA_VERSION,
    engine,
    name,
    pid,
    pidStart,
    hostId,
    address,
    regions,
    ...(keyId ? { keyId } : {}),
  };
}
