import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../cli/main.js';

describe('kvwire demo (arguments)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('is listed, prints its usage, and refuses bad options with exit code 2', async () => {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    expect(await main(['--help'])).toBe(0);
    expect(out.join('\n')).toMatch(/demo\s+P\/D hand-off/);
    expect(await main(['demo', '--help'])).toBe(0);
    expect(out.join('\n')).toContain('Usage: kvwire demo [options]');
    expect(await main(['demo', '--bogus'])).toBe(2);
    expect(await main(['demo', '--requests', '0'])).toBe(2);
    expect(await main(['demo', '--model', 'gpt-17'])).toBe(2);
    expect(err.join('\n')).toMatch(/--requests must be a positive integer/);
    expect(err.join('\n')).toMatch(/no KV preset named "gpt-17"/);
  });
});
