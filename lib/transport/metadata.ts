/**
 * Agent metadata: the opaque bytes a peer passes to `connect()`.
 *
 * Layout (version 1, little-endian):
 * ```
 *  0  magic "KVWM"             4 bytes
 *  4  version                  u16 (= 1)
 *  6  flags                    u16 (0)
 *  8  total length             u32 (the whole blob)
 * 12  crc32 of bytes 16..end   u32 (IEEE 802.3 polynomial, as zlib)
 * 16  engine                   u8  (1 = ucx, 2 = loopback), then 3 reserved bytes
 * 20  pid                      u32
 * 24  process start time       u64 (clock ticks since boot; guards pid reuse)
 * 32  name                     u16 length + UTF-8
 *     host id                  u16 length + UTF-8
 *     engine address           u32 length + bytes (UCX worker address; loopback: an id)
 *     region count             u32
 *     per region: id u32, access u8, label (u16 length + UTF-8), length u64, base u64,
 *                 key (u32 length + bytes: the packed UCX rkey)
 *     The access byte: bits 0-1 the access (0 none, 1 read, 2 write, 3 readwrite), bit 2 the
 *     memory (0 host, 1 CUDA device memory: base is a device address and the key is a device key,
 *     lib/transport/device-key.ts). Other bits are 0; an older kvwire refuses device regions as
 *     bad metadata rather than misreading them.
 * ```
 * Parsing is defensive: every length is checked against the bytes present and against hard
 * limits, and the checksum rejects corrupted or random bytes before anything reaches the engine.
 * A crafted blob with a valid checksum is not caught by it: metadata must come over an
 * authenticated channel (lib/pd's handshake is one).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { invalid, objectArgument } from './arguments.js';
import { decodeDeviceKey } from './device-key.js';
import type { Access, EngineKind } from './types.js';

/** The metadata format version this build writes and reads. */
export const METADATA_VERSION = 1;
const MAGIC = 0x4d57564b; // "KVWM" read as little-endian u32
const HEADER = 32;

/** Hard limits: anything larger is refused as bad metadata. */
export const METADATA_LIMITS = {
  totalBytes: 64 * 1024 * 1024,
  nameBytes: 1024,
  hostIdBytes: 1024,
  addressBytes: 1024 * 1024,
  regions: 1 << 20,
  labelBytes: 1024,
  keyBytes: 64 * 1024,
} as const;

/** A region as metadata describes it. */
export interface RegionDescription {
  readonly id: number;
  readonly label: string;
  readonly access: Access;
  readonly length: number;
  /** The owner's virtual address of byte 0 (used by one-sided RMA). */
  readonly base: bigint;
  /** Engine-specific key (UCX: the packed rkey; device memory: a device key). */
  readonly key: Uint8Array;
  /** Host memory (the default) or CUDA device memory. */
  readonly memory?: 'host' | 'cuda';
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

/** Serializes an agent description. */
export function encodeMetadata(d: Omit<AgentDescription, 'version'>): Uint8Array {
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
  let size = HEADER + 2 + name.length + 2 + host.length + 4 + d.address.length + 4;
  d.regions.forEach((r, i) => {
    size += 4 + 1 + 2 + labels[i]!.length + 8 + 8 + 4 + r.key.length;
  });
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint16(4, METADATA_VERSION, true);
  v.setUint16(6, 0, true);
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
    v.setBigUint64(o + 8, r.base, true);
    o += 16;
    bytes(r.key, 4);
  });
  v.setUint32(12, crc32(out.subarray(16)), true);
  return out;
}

function bad(message: string): never {
  throw new KvwireError(
    ErrorCode.BAD_METADATA,
    `bad metadata: ${message}; pass the exact bytes agent.metadata() returned`,
  );
}

/** Parses metadata, refusing anything truncated, oversized, corrupted or of another version. */
export function decodeMetadata(input: unknown): AgentDescription {
  if (!(input instanceof Uint8Array)) {
    throw new KvwireError(
      ErrorCode.BAD_METADATA,
      'bad metadata: expected a Uint8Array (or Buffer) from agent.metadata()',
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
  if (flags !== 0) bad(`unknown flags 0x${flags.toString(16)} (written by a newer kvwire?)`);
  const total = v.getUint32(8, true);
  if (total > METADATA_LIMITS.totalBytes)
    bad(`declared size ${total} exceeds the ${METADATA_LIMITS.totalBytes}-byte limit`);
  if (total !== b.length) bad(`declared size ${total} but ${b.length} bytes were given (truncated or padded)`);
  if (crc32(b.subarray(16)) !== v.getUint32(12, true)) bad('checksum mismatch (corrupted in transit?)');
  const engineCode = b[16];
  const engine = (Object.keys(ENGINE_CODES) as EngineKind[]).find((k) => ENGINE_CODES[k] === engineCode);
  if (engine === undefined) bad(`unknown engine code ${engineCode}`);
  const pid = v.getUint32(20, true);
  const pidStart = Number(v.getBigUint64(24, true));
  let o = HEADER;
  const need = (n: number, what: string) => {
    if (o + n > b.length) bad(`truncated while reading ${what} (needs ${n} bytes at offset ${o}, has ${b.length - o})`);
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
    const accessByte = b[o + 4]!;
    const accessCode = accessByte & 3;
    o += 5;
    if ((accessByte & ~(3 | MEMORY_CUDA)) !== 0) bad(`region ${i} has unknown access code ${accessByte}`);
    const memory = (accessByte & MEMORY_CUDA) !== 0 ? 'cuda' : 'host';
    const label = text(METADATA_LIMITS.labelBytes, `region ${i} label`);
    need(16, `region ${i} extent`);
    const length = v.getBigUint64(o, true);
    const base = v.getBigUint64(o + 8, true);
    o += 16;
    if (length === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) bad(`region ${i} ('${label}') has length ${length}`);
    const key = bytes(4, METADATA_LIMITS.keyBytes, `region ${i} key`);
    if (ids.has(id) || labels.has(label)) bad(`region ${i} repeats id ${id} or label '${label}'`);
    ids.add(id);
    labels.add(label);
    if (memory === 'cuda') decodeDeviceKey(key); // refused here, before anything reaches the engine
    regions.push({ id, label, access: ACCESS_NAMES[accessCode]!, length: Number(length), base, key, memory });
  }
  if (o !== b.length) bad(`${b.length - o} unexpected trailing bytes`);
  return { version, engine, name, pid, pidStart, hostId, address, regions };
}
