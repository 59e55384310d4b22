import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../lib/sidecar/allowlist.js';
import { checkTarget, chooseTarget, splitTargetList, type Resolver } from '../../lib/sidecar/target.js';

const table: Record<string, string[]> = {
  'p.test': ['10.0.0.5'],
  'p6.test': ['fd00::5'],
  'mixed.test': ['10.0.0.5', '10.0.0.6'],
  'weird.test': ['not-an-ip'],
};
const calls: string[] = [];
const resolve: Resolver = async (name) => {
  calls.push(name);
  const a = table[name];
  if (a === undefined) throw new Error(`ENOTFOUND ${name}`);
  return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};
const allowlist = Allowlist.from(['10.0.0.5:8000', '[fd00::5]:8000', '10.0.0.7:8000']);
const ctx = { allowlist, resolve, resolveTimeoutMs: 1000, sampling: false, random: () => 0 };

describe('checkTarget', () => {
  it('pins a literal address, with the address as Host and no TLS server name', async () => {
    expect(await checkTarget('10.0.0.5:8000', ctx)).toMatchObject({
      ok: true,
      port: 8000,
      hostHeader: '10.0.0.5:8000',
      servername: undefined,
      address: { text: '10.0.0.5' },
    });
    expect(await checkTarget('[fd00::5]:8000', ctx)).toMatchObject({
      ok: true,
      hostHeader: '[fd00::5]:8000',
      address: { family: 6 },
    });
  });

  it('resolves a name, checks the answer and keeps the name for Host and SNI', async () => {
    expect(await checkTarget('P.test:8000', ctx)).toMatchObject({
      ok: true,
      hostHeader: 'p.test:8000',
      servername: 'p.test',
      address: { text: '10.0.0.5' },
    });
    expect(await checkTarget('p6.test:8000', ctx)).toMatchObject({ ok: true, address: { text: 'fd00::5' } });
  });

  it('refuses a name when any one of its addresses is not admitted', async () => {
    expect(await checkTarget('mixed.test:8000', ctx)).toMatchObject({ ok: false, reason: 'not_allowed' });
    expect(await checkTarget('weird.test:8000', ctx)).toMatchObject({ ok: false, reason: 'resolve_failed' });
    expect(await checkTarget('none.test:8000', ctx)).toMatchObject({ ok: false, reason: 'resolve_failed' });
    expect(await checkTarget('p.test:8001', ctx)).toMatchObject({ ok: false, reason: 'port_not_allowed' });
  });

  it('gives up on a resolver that does not answer in time', async () => {
    const slow = { ...ctx, resolve: () => new Promise<never>(() => {}), resolveTimeoutMs: 50 };
    const r = await checkTarget('p.test:8000', slow);
    expect(r).toMatchObject({ ok: false, reason: 'resolve_failed' });
    expect(!r.ok && r.message).toMatch(/50 ms/);
  });
});

describe('chooseTarget', () => {
  it('splits the list on commas, trimming only the whitespace around them', () => {
    expect(splitTargetList('a:1, b:2 ,\tc:3')).toEqual(['a:1', 'b:2', 'c:3']);
    expect(splitTargetList('a:1,,b:2')).toEqual(['a:1', '', 'b:2']);
    expect(splitTargetList(' ')).toEqual(['']);
  });

  it('takes the first entry, or the sampled one', async () => {
    const list = '10.0.0.5:8000,10.0.0.7:8000';
    expect(await chooseTarget(list, ctx)).toMatchObject({ ok: true, address: { text: '10.0.0.5' } });
    expect(await chooseTarget(list, { ...ctx, sampling: true, random: () => 0.5 })).toMatchObject({
      ok: true,
      address: { text: '10.0.0.7' },
    });
    expect(await chooseTarget(list, { ...ctx, sampling: true, random: () => 0.9999999 })).toMatchObject({
      ok: true,
      address: { text: '10.0.0.7' },
    });
  });

  it('refuses a malformed entry before resolving any name', async () => {
    calls.length = 0;
    expect(await chooseTarget('p.test:8000, http://10.0.0.5:8000', ctx)).toMatchObject({ ok: false, reason: 'scheme' });
    expect(calls).toEqual([]);
  });
});
