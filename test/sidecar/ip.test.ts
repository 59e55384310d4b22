import { describe, expect, it } from 'vitest';
import {
  blockContains,
  classifyAddress,
  formatIpv6,
  isAlwaysRefused,
  parseIp,
  parseIpBlock,
  parseIpv4,
  parseIpv6,
  sameAddress,
} from '../../lib/sidecar/ip.js';

describe('IPv4: one spelling per address', () => {
  it('accepts four decimal octets without leading zeros', () => {
    expect(parseIpv4('10.0.0.5')?.bytes).toEqual(new Uint8Array([10, 0, 0, 5]));
    expect(parseIpv4('255.255.255.255')?.text).toBe('255.255.255.255');
    expect(parseIpv4('0.0.0.0')?.bytes).toEqual(new Uint8Array(4));
  });

  it('refuses every other spelling a resolver or URL parser would accept', () => {
    for (const t of [
      '127.1',
      '127.0.1',
      '2130706433',
      '0x7f000001',
      '0x7f.0.0.1',
      '0177.0.0.1',
      '127.000.000.001',
      '01.2.3.4',
      '256.0.0.1',
      '1.2.3.4.',
      ' 1.2.3.4',
      '1.2.3',
      '1..2.3',
      '+1.2.3.4',
      '1.2.3.4 ',
    ]) {
      expect({ t, parsed: parseIpv4(t) }).toEqual({ t, parsed: undefined });
    }
  });
});

describe('IPv6', () => {
  it('parses compressed, full and dotted-tail forms to the same bytes and RFC 5952 text', () => {
    const a = parseIpv6('0:0:0:0:0:0:0:1')!;
    const b = parseIpv6('::1')!;
    expect(sameAddress(a, b)).toBe(true);
    expect(a.text).toBe('::1');
    expect(parseIpv6('::ffff:127.0.0.1')!.text).toBe('::ffff:7f00:1');
    expect(parseIpv6('FD00:0:0:0:0:0:0:5')!.text).toBe('fd00::5');
    expect(parseIpv6('2001:db8:0:0:1:0:0:1')!.text).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(new Uint8Array(16))).toBe('::');
  });

  it('refuses zone ids, too many groups, bad hex and a dotted quad anywhere but the tail', () => {
    for (const t of [
      'fe80::1%eth0',
      '1:2:3:4:5:6:7:8:9',
      '1::2::3',
      '12345::',
      'g::1',
      '::127.0.0.1:1',
      '::ffff:127.1',
      ':1',
      '1:',
      '',
    ]) {
      expect({ t, parsed: parseIpv6(t) }).toEqual({ t, parsed: undefined });
    }
  });
});

describe('CIDR blocks', () => {
  it('match by leading bits, per family', () => {
    const b = parseIpBlock('10.1.0.0/16')!;
    expect(blockContains(b, parseIp('10.1.255.3')!)).toBe(true);
    expect(blockContains(b, parseIp('10.2.0.1')!)).toBe(false);
    expect(blockContains(parseIpBlock('10.0.0.0/9')!, parseIp('10.127.0.1')!)).toBe(true);
    expect(blockContains(parseIpBlock('10.0.0.0/9')!, parseIp('10.128.0.1')!)).toBe(false);
    expect(blockContains(parseIpBlock('fd00::/8')!, parseIp('fdff::1')!)).toBe(true);
    expect(blockContains(parseIpBlock('fd00::/8')!, parseIp('10.0.0.1')!)).toBe(false);
    expect(blockContains(parseIpBlock('0.0.0.0/0')!, parseIp('8.8.8.8')!)).toBe(true);
  });

  it('refuses host bits past the prefix, lengths out of range and bad bases', () => {
    for (const t of [
      '10.0.0.1/8',
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/08',
      '10.0.0.0',
      '127.1/8',
      '::1/129',
      'x/8',
    ]) {
      expect({ t, parsed: parseIpBlock(t) }).toEqual({ t, parsed: undefined });
    }
  });
});

describe('classification', () => {
  it.each([
    ['10.0.0.5', 'unicast'],
    ['8.8.8.8', 'unicast'],
    ['fd00::5', 'unicast'],
    ['127.0.0.1', 'loopback'],
    ['127.9.9.9', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.255.0.1', 'unspecified'],
    ['::', 'unspecified'],
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['169.254.0.1', 'link_local'],
    ['fe80::1', 'link_local'],
    ['febf::1', 'link_local'],
    ['224.0.0.251', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['::ffff:10.0.0.1', 'ipv4_embedded'],
    ['::10.0.0.1', 'ipv4_embedded'],
    ['64:ff9b::a9fe:a9fe', 'ipv4_embedded'],
    ['2002:a9fe:a9fe::', 'ipv4_embedded'],
  ])('%s is %s', (text, cls) => {
    expect(classifyAddress(parseIp(text)!)).toBe(cls);
  });

  it('only unicast and loopback can ever be allowed', () => {
    expect(isAlwaysRefused('unicast')).toBe(false);
    expect(isAlwaysRefused('loopback')).toBe(false);
    for (const c of ['unspecified', 'link_local', 'metadata', 'multicast', 'reserved', 'ipv4_embedded'] as const)
      expect(isAlwaysRefused(c)).toBe(true);
  });
});
