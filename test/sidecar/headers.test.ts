import { describe, expect, it } from 'vitest';
import { endToEndHeaders, requestIdOf } from '../../lib/sidecar/headers.js';

describe('headers', () => {
  it('drops hop-by-hop headers, those Connection names, host, expect and x-prefiller-host-port', () => {
    const out = endToEndHeaders({
      connection: 'keep-alive, X-Secret',
      'keep-alive': 'timeout=5',
      'x-secret': 's',
      'transfer-encoding': 'chunked',
      upgrade: 'websocket',
      te: 'trailers',
      trailer: 'x',
      'proxy-authorization': 'p',
      'proxy-connection': 'keep-alive',
      host: 'sidecar:8000',
      expect: '100-continue',
      'x-prefiller-host-port': '10.0.0.5:8000',
      authorization: 'Bearer t',
      'content-type': 'application/json',
      'set-cookie': ['a=1', 'b=2'],
    });
    expect(out).toEqual({
      authorization: 'Bearer t',
      'content-type': 'application/json',
      'set-cookie': ['a=1', 'b=2'],
    });
    expect(endToEndHeaders({ a: '1', b: '2' }, new Set(['b']))).toEqual({ a: '1' });
  });

  it("keeps the client's x-request-id when it is printable, else makes a UUID", () => {
    expect(requestIdOf({ 'x-request-id': 'abc-123' })).toBe('abc-123');
    for (const bad of [undefined, '', 'a b', 'é', 'x'.repeat(257)]) {
      expect(requestIdOf(bad === undefined ? {} : { 'x-request-id': bad })).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4/);
    }
  });
});
