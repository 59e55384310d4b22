import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { parseIp } from '../../lib/sidecar/ip.js';
import { Allowlist, parseAllowEntry } from '../../lib/sidecar/allowlist.js';
import { expectCode } from '../transport/helpers.js';

const ip = (t: string) => parseIp(t)!;

describe('allowlist entries', () => {
  it('parses every form', () => {
    expect(parseAllowEntry('10.0.0.5:8000')).toMatchObject({ kind: 'address', port: 8000 });
    expect(parseAllowEntry('10.0.0.5')).toMatchObject({ kind: 'address', port: undefined });
    expect(parseAllowEntry('10.0.0.0/24')).toMatchObject({ kind: 'block', port: undefined });
    expect(parseAllowEntry('10.0.0.0/24:8000')).toMatchObject({ kind: 'block', port: 8000 });
    expect(parseAllowEntry('[fd00::5]:8000')).toMatchObject({ kind: 'address', port: 8000 });
    expect(parseAllowEntry('[fd00::/64]:8000')).toMatchObject({ kind: 'block', port: 8000 });
    expect(parseAllowEntry('Prefill-0.svc:8000')).toMatchObject({ kind: 'name', name: 'prefill-0.svc', port: 8000 });
    expect(parseAllowEntry('127.0.0.1:9000')).toMatchObject({ kind: 'address', port: 9000 });
  });

  it.each([
    'http://10.0.0.5:80',
    'a@10.0.0.5',
    '10.0.0.5:0',
    '127.1',
    '0x7f000001:80',
    '10.0.0.1/8',
    '10.0.0.0/24:x',
    '0.0.0.0',
    '0.0.0.0/0',
    '169.254.169.254',
    '169.254.0.0/16',
    '[fe80::1]',
    '[::ffff:10.0.0.1]:80',
    'metadata.google.internal',
    ' 10.0.0.5',
    '',
  ])('refuses %j with a message naming the entry', (text) => {
    const e = expectCode(() => parseAllowEntry(text), ErrorCode.INVALID_ARGUMENT);
    expect(e.message).toContain(`'${text}'`);
    expect(e.details.field).toBe('allow');
  });
});

describe('Allowlist', () => {
  const list = Allowlist.from(['10.0.0.5:8000', '10.0.1.0/24', '127.0.0.1:9000', 'prefill.svc:8100']);

  it('admits an address only on the port its entry names (llm-d bug #979)', () => {
    expect(list.admitsAddress(ip('10.0.0.5'), 8000)).toBe(true);
    expect(list.admitsAddress(ip('10.0.0.5'), 8001)).toBe(false);
    expect(list.admitsAddress(ip('10.0.0.5'), 22)).toBe(false);
    expect(list.admitsAddress(ip('10.0.0.5'), undefined)).toBe(true);
    expect(list.admitsAddress(ip('10.0.1.77'), 22)).toBe(true);
    expect(list.admitsAddress(ip('10.0.2.1'), 8000)).toBe(false);
    expect(list.admitsAddress(ip('127.0.0.1'), 9000)).toBe(true);
    expect(list.admitsAddress(ip('127.0.0.1'), 9001)).toBe(false);
  });

  it('admits names by name and port', () => {
    expect(list.admitsName('prefill.svc', 8100)).toBe(true);
    expect(list.admitsName('prefill.svc', 8101)).toBe(false);
    expect(list.admitsName('other.svc', 8100)).toBe(false);
  });

  it('with allowAny admits unicast on any port, but never loopback unless listed', () => {
    const any = Allowlist.from([], { allowAny: true });
    expect(any.admitsAddress(ip('10.9.9.9'), 1)).toBe(true);
    expect(any.admitsAddress(ip('127.0.0.1'), 80)).toBe(false);
    expect(any.admitsAddress(ip('::1'), 80)).toBe(false);
    expect(any.empty).toBe(false);
    expect(Allowlist.from([]).empty).toBe(true);
  });
});
