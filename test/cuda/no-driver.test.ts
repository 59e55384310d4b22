// Without a CUDA driver: capabilities() says why, every CUDA call fails with
// ERR_KVWIRE_UNSUPPORTED carrying that reason, and nothing crashes. The driver path is pointed at
// a file that does not exist, so this holds on GPU machines too.
process.env.KVWIRE_LIBCUDA = '/nonexistent/kvwire-test/libcuda.so.1';

import { describe, expect, it } from 'vitest';
import { Agent, capabilities, cuda, ErrorCode } from '../../lib/index.js';
import { expectCode, expectRejectCode } from '../transport/helpers.js';

const REASON = /CUDA driver \(libcuda\.so\.1\) is not installed or not loadable: .*nonexistent/;

describe('CUDA without a driver', () => {
  it('capabilities() says the driver is absent and why', () => {
    const c = capabilities().cuda;
    expect(c.driver).toBe(false);
    expect(c.devices).toBe(0);
    expect(c.reason).toMatch(REASON);
    expect(c.paths).toEqual({ ucx: capabilities().engines.ucx.cudaTransports, ipc: false, staging: true });
    expect(cuda.available()).toBe(false);
    expect(cuda.unavailableReason()).toMatch(REASON);
  });

  it('every cuda helper throws ERR_KVWIRE_UNSUPPORTED with the reason', async () => {
    const mem = { kind: 'cuda' as const, device: 0, pointer: 0x7000_0000n, length: 4096 };
    expectCode(() => cuda.devices(), ErrorCode.UNSUPPORTED, REASON);
    expectCode(() => cuda.alloc(0, 4096), ErrorCode.UNSUPPORTED, REASON);
    expectCode(() => cuda.copyToDevice(mem, new Uint8Array(16)), ErrorCode.UNSUPPORTED, REASON);
    expectCode(() => cuda.copyFromDevice(mem, new Uint8Array(16)), ErrorCode.UNSUPPORTED, REASON);
    expectCode(() => cuda.memset(mem, 1), ErrorCode.UNSUPPORTED, REASON);
    await expectRejectCode(cuda.baseline('dtod', 0, 1 << 20, 1), ErrorCode.UNSUPPORTED, REASON);
  });

  it('registering device memory throws ERR_KVWIRE_UNSUPPORTED with the reason, on both engines', async () => {
    for (const engine of ['ucx', 'loopback'] as const) {
      const agent = await Agent.create({ engine, name: `no-driver-${engine}` });
      try {
        expectCode(
          () => agent.register({ kind: 'cuda', device: 0, pointer: 0x7000_0000n, length: 4096 }),
          ErrorCode.UNSUPPORTED,
          REASON,
        );
        expect(agent.regions).toHaveLength(0);
      } finally {
        await agent.close();
      }
    }
  });
});
