/**
 * The region key of device memory in agent metadata (the key bytes are opaque to the metadata
 * envelope; a region's memory kind there says which format its key has).
 *
 * Layout (version 1, little-endian):
 * ```
 *  0  magic "KVWD"            4 bytes
 *  4  version                 u8 (= 1)
 *  5  flags                   u8: bit 0 an IPC handle follows
 *  6  device                  u16: the owner's ordinal of the device
 *  8  staging chunk           u32: the largest piece the owner stages at once (initiators split to it)
 * 12  PCI bus id              u8 length + ASCII (same-host peers find the same GPU by it)
 *     when flags bit 0:       IPC handle (64 bytes), offset of the region in its allocation (u64)
 *     UCX rkey                u32 length + bytes (empty unless UCX itself moves device memory)
 * ```
 * Parsing is defensive: a short, oversized or unknown key is refused as bad metadata.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { invalid, objectArgument } from './arguments.js';

const MAGIC = 0x4457564b; // "KVWD" read as little-endian u32
const VERSION = 1;
const IPC_HANDLE_BYTES = 64;

/** What a peer needs to reach a region of device memory. */
export interface DeviceKey {
  /** The owner's ordinal of the device. */
  readonly device: number;
  /** The largest piece the owner stages at once. */
  readonly stagingChunk: number;
  /** The device's PCI bus id (e.g. "0000:3b:00.0"), empty when unknown. */
  readonly busId: string;
  /** The CUDA IPC handle of the allocation holding the region, when the owner could export one. */
  readonly ipcHandle?: Uint8Array;
  /** Offset of the region's first byte in that allocation. */
  readonly ipcOffset: number;
  /** The packed UCX rkey (empty unless the owner's UCX moves device memory itself). */
  readonly rkey: Uint8Array;
}

function bad(message: string): never {
  throw new KvwireError(
    ErrorCode.BAD_METADATA,
    `bad metadata: device region key: ${message}; pass the exact bytes agent.metadata() returned`,
  );
}

/** Serializes a device key. */
export function encodeDeviceKey(k: DeviceKey): Uint8Array {
  objectArgument(k, 'device key', 'an object { device, stagingChunk, busId, rkey, ipcHandle?, ipcOffset? }');
  if (!Number.isSafeInteger(k.device) || k.device < 0 || k.device > 0xffff)
    invalid('device', 'a device ordinal', k.device);
  if (!Number.isSafeInteger(k.stagingChunk) || k.stagingChunk < 1 || k.stagingChunk > 0xffffffff) {
    invalid('stagingChunk', 'a positive 32-bit integer', k.stagingChunk);
  }
  if (typeof k.busId !== 'string') invalid('busId', 'a string', k.busId);
  if (!(k.rkey instanceof Uint8Array)) invalid('rkey', 'bytes', k.rkey);
  if (k.ipcHandle !== undefined && !(k.ipcHandle instanceof Uint8Array)) invalid('ipcHandle', 'bytes', k.ipcHandle);
  if (k.ipcHandle !== undefined && (!Number.isSafeInteger(k.ipcOffset) || (k.ipcOffset ?? -1) < 0)) {
    invalid('ipcOffset', 'a non-negative integer', k.ipcOffset);
  }
  const bus = Buffer.from(k.busId, 'ascii');
  if (bus.length > 255) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'PCI bus id longer than 255 bytes');
  const ipc = k.ipcHandle !== undefined;
  if (ipc && k.ipcHandle!.length !== IPC_HANDLE_BYTES)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'an IPC handle has 64 bytes');
  const size = 13 + bus.length + (ipc ? IPC_HANDLE_BYTES + 8 : 0) + 4 + k.rkey.length;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  out[4] = VERSION;
  out[5] = ipc ? 1 : 0;
  v.setUint16(6, k.device, true);
  v.setUint32(8, k.stagingChunk, true);
  out[12] = bus.length;
  out.set(bus, 13);
  let o = 13 + bus.length;
  if (ipc) {
    out.set(k.ipcHandle!, o);
    v.setBigUint64(o + IPC_HANDLE_BYTES, BigInt(k.ipcOffset), true);
    o += IPC_HANDLE_BYTES + 8;
  }
  v.setUint32(o, k.rkey.length, true);
  out.set(k.rkey, o + 4);
  return out;
}

/** Parses a device key, refusing anything truncated, padded or of another version. */
export function decodeDeviceKey(b: Uint8Array): DeviceKey {
  if (!(b instanceof Uint8Array)) bad(`expected bytes, not ${describeValue(b)}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 13) bad(`${b.length} bytes is shorter than its 13-byte header`);
  if (v.getUint32(0, true) !== MAGIC) bad('it does not start with "KVWD"');
  if (b[4] !== VERSION) bad(`version ${b[4]} is not supported (this kvwire reads version ${VERSION})`);
  const flags = b[5]!;
  if ((flags & ~1) !== 0) bad(`unknown flags 0x${flags.toString(16)}`);
  const device = v.getUint16(6, true);
  const stagingChunk = v.getUint32(8, true);
  const busLen = b[12]!;
  let o = 13;
  const need = (n: number, what: string) => {
    if (o + n > b.length) bad(`truncated while reading ${what}`);
  };
  need(busLen, 'the PCI bus id');
  const busId = Buffer.from(b.subarray(o, o + busLen)).toString('ascii');
  if (!/^[0-9A-Fa-f:.]*$/.test(busId)) bad('the PCI bus id is not of the form 0000:3b:00.0');
  o += busLen;
  let ipcHandle: Uint8Array | undefined;
  let ipcOffset = 0;
  if ((flags & 1) !== 0) {
    need(IPC_HANDLE_BYTES + 8, 'the IPC handle');
    ipcHandle = b.slice(o, o + IPC_HANDLE_BYTES);
    const off = v.getBigUint64(o + IPC_HANDLE_BYTES, true);
    if (off > BigInt(Number.MAX_SAFE_INTEGER)) bad(`allocation offset ${off} is out of range`);
    ipcOffset = Number(off);
    o += IPC_HANDLE_BYTES + 8;
  }
  need(4, 'the rkey length');
  const rkLen = v.getUint32(o, true);
  o += 4;
  need(rkLen, 'the rkey');
  const rkey = b.slice(o, o + rkLen);
  o += rkLen;
  if (o !== b.length) bad(`${b.length - o} unexpected trailing bytes`);
  if (stagingChunk === 0) bad('staging chunk of 0 bytes');
  return { device, stagingChunk, busId, ...(ipcHandle !== undefined ? { ipcHandle } : {}), ipcOffset, rkey };
}
