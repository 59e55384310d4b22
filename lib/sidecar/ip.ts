/**
 * IP addresses as the sidecar's SSRF check sees them: parsed strictly, compared as bytes, and
 * classified (loopback, link-local, cloud metadata, ...).
 *
 * Strictness is the point. Resolvers and URL parsers accept many spellings of one address
 * (`2130706433`, `0x7f000001`, `127.1` and `0177.0.0.1` all reach 127.0.0.1 through getaddrinfo or
 * WHATWG URL parsing); a check that compares text can be walked around with any of them. Here an
 * IPv4 address has exactly one accepted spelling (four decimal octets, no leading zeros), IPv6 is
 * compared as 16 bytes, and every other spelling is refused before anything resolves it.
 *
 * @packageDocumentation
 */

/** An IP address: its family, its bytes (4 or 16) and its canonical text. */
export interface IpAddress {
  /** 4 or 6. */
  readonly family: 4 | 6;
  /** Network-order bytes: 4 for IPv4, 16 for IPv6. */
  readonly bytes: Uint8Array;
  /** Canonical text: dotted quad, or RFC 5952 compressed IPv6 (without brackets). */
  readonly text: string;
}

/** A CIDR block: every address whose first `prefixLength` bits equal those of `base`. */
export interface IpBlock {
  /** The block's first address (host bits are zero). */
  readonly base: IpAddress;
  /** Number of leading bits that must match, 0..32 or 0..128. */
  readonly prefixLength: number;
}

/**
 * What kind of address this is, for the SSRF check.
 *
 * `unicast` and `loopback` can be allowed by an allowlist entry; every other class is refused
 * whatever the allowlist says (see {@link isAlwaysRefused}).
 */
export type AddressClass =
  'unicast' | 'loopback' | 'unspecified' | 'link_local' | 'metadata' | 'multicast' | 'reserved' | 'ipv4_embedded';

const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const CANONICAL_IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/**
 * Parses the one accepted spelling of an IPv4 address: four decimal octets without leading zeros.
 * Returns undefined for anything else (`127.1`, `0x7f.0.0.1`, `2130706433`, `010.0.0.1`).
 */
export function parseIpv4(text: string): IpAddress | undefined {
  if (!CANONICAL_IPV4.test(text)) return undefined;
  const bytes = new Uint8Array(text.split('.').map(Number));
  return { family: 4, bytes, text };
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

function groupsOf(part: string): number[] | undefined {
  if (part === '') return [];
  const out: number[] = [];
  const pieces = part.split(':');
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    // The last 32 bits may be written as a dotted quad (::ffff:1.2.3.4); nowhere else.
    if (i === pieces.length - 1 && piece.includes('.')) {
      const v4 = parseIpv4(piece);
      if (v4 === undefined) return undefined;
      out.push((v4.bytes[0]! << 8) | v4.bytes[1]!, (v4.bytes[2]! << 8) | v4.bytes[3]!);
      continue;
    }
    if (!HEX_GROUP.test(piece)) return undefined;
    out.push(parseInt(piece, 16));
  }
  return out;
}

/**
 * Parses an IPv6 address without brackets (`fd00::1`, `::ffff:127.0.0.1`). Zone ids (`%eth0`) are
 * refused: they name an interface of this host, which no remote target needs.
 */
export function parseIpv6(text: string): IpAddress | undefined {
  if (text.length < 2 || text.length > 45 || text.includes('%')) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0]!);
    const tail = groupsOf(halves[1]!);
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = groupsOf(text);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return { family: 6, bytes, text: formatIpv6(bytes) };
}

/** RFC 5952 text of 16 IPv6 bytes: lowercase, the longest run of zero groups (2+) as `::`. */
export function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Parses a canonical IPv4 address or an unbracketed IPv6 address; undefined otherwise. */
export function parseIp(text: string): IpAddress | undefined {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

/**
 * Parses `a.b.c.d/n` or `ipv6/n`. The base must have no bits set past the prefix (`10.0.0.1/8` is
 * refused: it reads as a typo, and silently widening it would allow more than was written).
 */
export function parseIpBlock(text: string): IpBlock | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const base = parseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (base === undefined || !/^(?:0|[1-9][0-9]{0,2})$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  if (prefixLength > base.bytes.length * 8) return undefined;
  const block = { base, prefixLength };
  for (let bit = prefixLength; bit < base.bytes.length * 8; bit++) {
    if ((base.bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return undefined;
  }
  return block;
}

/** True when `address` lies in `block` (same family, same leading bits). */
export function blockContains(block: IpBlock, address: IpAddress): boolean {
  if (block.base.family !== address.family) return false;
  const full = block.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (block.base.bytes[i] !== address.bytes[i]) return false;
  const rest = block.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (block.base.bytes[full]! & mask) === (address.bytes[full]! & mask);
}

/** True when two addresses are the same (family and bytes). */
export function sameAddress(a: IpAddress, b: IpAddress): boolean {
  if (a.family !== b.family) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}

function block(text: string): IpBlock {
  const parsed = parseIpBlock(text);
  if (parsed === undefined) throw new Error(`bad built-in block ${text}`);
  return parsed;
}

/**
 * Cloud instance-metadata endpoints (AWS, GCP, Azure, OpenStack at 169.254.169.254; AWS ECS task
 * metadata at 169.254.170.2; Alibaba at 100.100.100.200; AWS's IPv6 endpoint). Credentials live
 * there: the classic SSRF prize.
 */
const METADATA_ADDRESSES: readonly IpAddress[] = [
  '169.254.169.254',
  '169.254.170.2',
  '100.100.100.200',
  'fd00:ec2::254',
].map((t) => parseIp(t)!);

/** Address ranges never allowed as a prefill target, with the class they report. */
const REFUSED_BLOCKS: readonly (readonly [IpBlock, AddressClass])[] = [
  [block('0.0.0.0/8'), 'unspecified'], // "this network": 0.0.0.0 reaches this host
  [block('169.254.0.0/16'), 'link_local'],
  [block('224.0.0.0/4'), 'multicast'],
  [block('240.0.0.0/4'), 'reserved'], // includes 255.255.255.255
  [block('::/128'), 'unspecified'],
  [block('fe80::/10'), 'link_local'],
  [block('ff00::/8'), 'multicast'],
  // IPv6 forms that carry an IPv4 address inside them: through them, an IPv4 target the allowlist
  // refuses could be reached under another name (::ffff:127.0.0.1 is 127.0.0.1 on a dual-stack
  // socket; NAT64 and 6to4 gateways forward to the embedded address).
  [block('::ffff:0:0/96'), 'ipv4_embedded'],
  [block('::/96'), 'ipv4_embedded'],
  [block('64:ff9b::/96'), 'ipv4_embedded'],
  [block('64:ff9b:1::/48'), 'ipv4_embedded'],
  [block('2002::/16'), 'ipv4_embedded'],
];

const LOOPBACK_BLOCKS: readonly IpBlock[] = [block('127.0.0.0/8'), block('::1/128')];

/** Classifies an address for the SSRF check. */
export function classifyAddress(address: IpAddress): AddressClass {
  if (METADATA_ADDRESSES.some((m) => sameAddress(m, address))) return 'metadata';
  if (LOOPBACK_BLOCKS.some((b) => blockContains(b, address))) return 'loopback';
  for (const [b, cls] of REFUSED_BLOCKS) if (blockContains(b, address)) return cls;
  return 'unicast';
}

/** True for the classes no allowlist entry can allow. */
export function isAlwaysRefused(cls: AddressClass): boolean {
  return cls !== 'unicast' && cls !== 'loopback';
}
