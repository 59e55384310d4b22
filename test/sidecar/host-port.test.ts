import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHost, parseHostPort } from '../../lib/sidecar/host-port.js';

describe('host:port syntax', () => {
  it('parses names, dotted quads and bracketed IPv6 with a port', () => {
    expect(parseHostPort('Prefill-0.Pool.svc.:8000', false)).toEqual({
      ok: true,
      value: { host: { kind: 'name', name: 'prefill-0.pool.svc' }, port: 8000 },
    });
    const v4 = parseHostPort('10.0.0.5:1', false);
    expect(v4.ok && v4.value.host.kind === 'ip' && v4.value.host.ip.text).toBe('10.0.0.5');
    const v6 = parseHostPort('[FD00::5]:65535', false);
    expect(v6.ok && v6.value.port).toBe(65535);
    expect(v6.ok && formatHostPort(v6.value.host, 65535)).toBe('[fd00::5]:65535');
  });

  it('leaves the port optional only when asked (allowlist entries)', () => {
    expect(parseHostPort('10.0.0.5', true)).toMatchObject({ ok: true, value: { port: undefined } });
    expect(parseHostPort('[fd00::5]', true)).toMatchObject({ ok: true, value: { port: undefined } });
    expect(parseHostPort('10.0.0.5', false)).toMatchObject({ ok: false, reason: 'missing_port' });
  });

  it.each([
    ['', 'empty'],
    [' a:1', 'whitespace'],
    ['a:1\n', 'whitespace'],
    ['a\u0000:1', 'whitespace'],
    ['http://a:1', 'scheme'],
    ['HTTP://a:1', 'scheme'],
    ['//a:1', 'scheme'],
    ['u@a:1', 'userinfo'],
    ['u:p@a:1', 'userinfo'],
    ['a:1/x', 'malformed'],
    ['a%2e:1', 'malformed'],
    ['a\\b:1', 'malformed'],
    ['é.test:1', 'malformed'],
    ['[::1:1', 'malformed'],
    ['[::1]x:1', 'malformed'],
    ['[127.0.0.1]:1', 'malformed'],
    ['::1:80', 'malformed'],
    ['-a.test:1', 'malformed'],
    ['a_b:1', 'malformed'],
    [`${'a'.repeat(64)}.test:1`, 'malformed'],
    ['a:0', 'bad_port'],
    ['a:65536', 'bad_port'],
    ['a:08', 'bad_port'],
    ['a:1e3', 'bad_port'],
    ['a:', 'bad_port'],
    ['1.2.3:1', 'non_canonical_ip'],
    ['host.0x10:1', 'non_canonical_ip'],
    ['host.123:1', 'non_canonical_ip'],
    ['metadata.google.internal:80', 'metadata'],
    ['instance-data:80', 'metadata'],
  ])('refuses %j (%s)', (text, reason) => {
    expect(parseHostPort(text, false)).toMatchObject({ ok: false, reason });
  });

  it('parses a bare host', () => {
    expect(parseHost('localhost')).toEqual({ ok: true, value: { kind: 'name', name: 'localhost' } });
    expect(parseHost('.')).toMatchObject({ ok: false, reason: 'malformed' });
  });
});
