// The native/TypeScript contract (lib/native.ts against the addon's own lists in native/agent.h
// and native/engine/types.h): event kinds by name and number, error codes, agent options. Each
// list has one source per side and this test holds the two sides equal; the addon also refuses an
// option it does not know instead of ignoring it.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../lib/errors.js';
import { loadNative, NATIVE_AGENT_OPTION_KEYS, NativeEventKind } from '../lib/native.js';
import type { NativeAgentOptions } from '../lib/native.js';

const native = loadNative();

describe.runIf(native !== undefined)('native contract', () => {
  const contract = native!.contract;

  it('has the same event kinds, by name and number, as lib/native.ts', () => {
    expect(contract.eventKinds).toEqual({ ...NativeEventKind });
    // Numbers are dense from 0, in list order (new kinds are appended).
    expect(Object.values(contract.eventKinds)).toEqual(Object.keys(contract.eventKinds).map((_, i) => i));
  });

  it('reports only error codes lib/errors.ts knows', () => {
    const known = new Set<string>(Object.values(ErrorCode));
    expect(contract.errorCodes.length).toBeGreaterThan(10);
    expect(new Set(contract.errorCodes).size).toBe(contract.errorCodes.length);
    for (const c of contract.errorCodes) expect(known.has(c), c).toBe(true);
  });

  it('accepts exactly the options lib/native.ts sends', () => {
    expect(contract.agentOptions).toEqual([...NATIVE_AGENT_OPTION_KEYS]);
  });

  it.runIf(native?.hasUcx === true)('refuses an option the addon does not know, naming it', () => {
    const bogus = { name: 'contract', spinUs: 0, busySpinUs: 5 } as NativeAgentOptions;
    let caught: unknown;
    try {
      new native!.NativeAgent(bogus, () => {});
    } catch (e) {
      caught = e;
    }
    expect((caught as { code?: string }).code).toBe(ErrorCode.INVALID_ARGUMENT);
    expect((caught as Error).message).toMatch(/unknown option 'busySpinUs'/);
  });
});
