import { it } from 'vitest';
import { fuzz } from './fuzz-runner.js';
it('x', async () => {
  const s = await fuzz('handshake', 0x4a5e, 10000, { stallMs: 20000 });
  console.log(
    JSON.stringify({ hangs: s.hangs, crashes: s.crashes.map((c) => c.index), children: s.children, ms: s.durationMs }),
  );
}, 600000);
