import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { createSidecar } from '../../lib/sidecar/index.js';
import { resolveSidecarOptions, type SidecarOptions } from '../../lib/sidecar/options.js';
import { createRegistry } from '../../lib/metrics.js';
import { expectCode, expectRejectCode } from '../transport/helpers.js';

describe('sidecar options', () => {
  it('applies the documented defaults', () => {
    const o = resolveSidecarOptions({ decode: 'http://127.0.0.1:8200' });
    expect(o).toMatchObject({
      host: '127.0.0.1',
      port: 0,
      prefillerSampling: false,
      prefillMaxRetries: 2,
      prefillRetryBackoffMs: 100,
      onPrefillFailure: 'decode',
      prefillTimeoutMs: 30_000,
      decodeTimeoutMs: 600_000,
      maxBodyBytes: 16 << 20,
      maxHeaderBytes: 16 << 10,
      metricsPath: '/sidecar/metrics',
    });
    expect(o.allowlist.empty).toBe(true);
  });

  it.each<[Partial<SidecarOptions>, string]>([
    [{ decode: 'not a url' }, 'decode'],
    [{ decode: 'ftp://h:1' }, 'decode'],
    [{ decode: 'http://h:1/v1' }, 'decode'],
    [{ decode: 'http://u:p@h:1' }, 'decode'],
    [{ port: 70000 }, 'port'],
    [{ prefillMaxRetries: -1 }, 'prefillMaxRetries'],
    [{ prefillMaxRetries: 1.5 }, 'prefillMaxRetries'],
    [{ prefillTimeoutMs: 0 }, 'prefillTimeoutMs'],
    [{ decodeTimeoutMs: Number.NaN }, 'decodeTimeoutMs'],
    [{ maxBodyBytes: 0 }, 'maxBodyBytes'],
    [{ onPrefillFailure: 'retry' as 'fail' }, 'onPrefillFailure'],
    [{ metricsPath: '/metrics' }, 'metricsPath'],
    [{ metricsPath: 'x' }, 'metricsPath'],
    [{ allow: ['10.0.0.1/8'] }, 'allow'],
    [{ allow: 'x' as unknown as string[] }, 'allow'],
  ])('refuses %j naming %s', (bad, field) => {
    const e = expectCode(
      () => resolveSidecarOptions({ decode: 'http://127.0.0.1:1', ...bad }),
      ErrorCode.INVALID_ARGUMENT,
    );
    expect(e.details.field).toBe(field);
  });

  it('says the port is in use when it is', async () => {
    const first = await createSidecar({ decode: 'http://127.0.0.1:1', registry: createRegistry() });
    try {
      const e = await expectRejectCode(
        createSidecar({ decode: 'http://127.0.0.1:1', port: first.port, registry: createRegistry() }),
        ErrorCode.INVALID_ARGUMENT,
        /in use/,
      );
      expect(e.details.engineStatus).toBe('EADDRINUSE');
    } finally {
      await first.close();
    }
  });

  it('refuses a TLS certificate and key it cannot use', async () => {
    await expectRejectCode(
      createSidecar({ decode: 'http://127.0.0.1:1', tls: { cert: 'nope', key: 'nope' }, registry: createRegistry() }),
      ErrorCode.INVALID_ARGUMENT,
      /certificate/,
    );
  });
});
