// How long Agent.close() blocks the event loop with transfers in flight (issue 15).
//
//   CLOSE_MIB=64 CLOSE_PEER=local|stopped node bench/close-block.mjs [tcp|sm] [rounds] [packageRoot ...]
//
// Each round: two agents in this process over one transport, 16 READs (CLOSE_MIB in all) in
// flight on the initiator, then close() of the initiator and then of the target. For each close
// it records the synchronous part of the call (what the caller's tick is held for) and the longest
// event-loop delay seen until its promise settles (perf_hooks.monitorEventLoopDelay, 1 ms
// resolution; for the initiator from just before its transfers are posted).
// CLOSE_PEER=stopped: the target is a child process, stopped (SIGSTOP) once the transfers are
// posted, so that close() cannot flush or hear goodbyes and waits out its grace periods (the case
// that held the event loop longest before close() became asynchronous). With several package roots (e.g. a copy of an older build), the roots take turns
// round by round, so that each is measured under the same load (the machine may be shared).
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { setImmediate, setTimeout } from 'node:timers';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const tls = process.argv[2] ?? 'tcp';
const rounds = Number(process.argv[3] ?? 10);
const roots = process.argv.length > 4 ? process.argv.slice(4) : ['.'];
const SIZE = Number(process.env.CLOSE_MIB ?? 64) << 20;
const STOPPED = process.env.CLOSE_PEER === 'stopped';
const INFLIGHT = 16;
const EACH = SIZE / INFLIGHT;

const libs = [];
for (const root of roots) {
  libs.push({ root, lib: await import(pathToFileURL(resolve(root, 'dist/lib/index.js')).href), samples: [] });
}

async function delayMonitor() {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await new Promise((r) => setTimeout(r, 5)); // its timer is running from here on
  return h;
}

async function timedClose(agent, monitor) {
  const h = monitor ?? (await delayMonitor());
  const t0 = performance.now();
  const p = agent.close();
  const sync = performance.now() - t0;
  await p;
  const total = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 5)); // let the histogram see the last tick
  h.disable();
  return { sync, total, maxDelay: h.max / 1e6 };
}

// The target in a child process: prints its metadata (base64), then lives until killed.
const CHILD = `
const { Agent } = await import(process.argv[1]);
const a = await Agent.create({ name: 'close-target', transports: process.argv[2] });
a.register(Buffer.alloc(Number(process.argv[3]), 7), { access: 'read', label: 'kv' });
process.stdout.write(Buffer.from(a.metadata()).toString('base64') + '\\n');
setInterval(() => {}, 1000);
`;

async function childTarget(root) {
  const entry = pathToFileURL(resolve(root, 'dist/lib/index.js')).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, entry, tls, String(SIZE)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  while (!out.includes('\n')) out += (await once(child.stdout, 'data'))[0];
  return { child, metadata: Buffer.from(out.trim(), 'base64') };
}

async function round({ root, lib }) {
  const { Agent } = lib;
  const remote = STOPPED ? await childTarget(root) : undefined;
  const target = STOPPED ? undefined : await Agent.create({ name: 'close-target', transports: tls });
  const initiator = await Agent.create({ name: 'close-initiator', transports: tls });
  target?.register(Buffer.alloc(SIZE, 7), { access: 'read', label: 'kv' });
  const dst = initiator.register(Buffer.alloc(SIZE));
  const peer = await initiator.connect(remote?.metadata ?? target.metadata());
  const monitor = await delayMonitor();
  const transfers = [];
  for (let i = 0; i < INFLIGHT; i++) {
    transfers.push(
      initiator.read(
        peer,
        [{ region: dst, offset: i * EACH, length: EACH }],
        [{ region: peer.region('kv'), offset: i * EACH, length: EACH }],
      ),
    );
  }
  const settled = Promise.allSettled(transfers.map((t) => t.done));
  await new Promise((r) => setImmediate(r)); // posted: the engine thread has them
  remote?.child.kill('SIGSTOP');
  const a = await timedClose(initiator, monitor);
  const outcomes = await settled;
  const failed = outcomes.filter((o) => o.status === 'rejected').length;
  if (remote !== undefined) {
    remote.child.kill('SIGKILL');
    remote.child.kill('SIGCONT');
    await once(remote.child, 'exit');
    return { initiator: a, failed };
  }
  const b = await timedClose(target);
  return { initiator: a, target: b, failed };
}

function pct(values, q) {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

for (let r = 0; r < rounds; r++) {
  for (const l of libs) l.samples.push(await round(l));
}

console.log(
  `close() with ${INFLIGHT} READs of ${EACH >> 20} MiB in flight over ${tls}${STOPPED ? ' to a stopped peer' : ''}, ${rounds} rounds (ms)`,
);
console.log('package | who | sync p50 | sync max | loop delay p50 | loop delay max | close total p50 | failed');
for (const l of libs) {
  for (const who of STOPPED ? ['initiator'] : ['initiator', 'target']) {
    const s = l.samples.map((x) => x[who]);
    const f = (v) => v.toFixed(2);
    console.log(
      [
        l.root,
        who,
        f(
          pct(
            s.map((x) => x.sync),
            0.5,
          ),
        ),
        f(Math.max(...s.map((x) => x.sync))),
        f(
          pct(
            s.map((x) => x.maxDelay),
            0.5,
          ),
        ),
        f(Math.max(...s.map((x) => x.maxDelay))),
        f(
          pct(
            s.map((x) => x.total),
            0.5,
          ),
        ),
        who === 'initiator' ? String(l.samples.reduce((n, x) => n + x.failed, 0)) : '',
      ].join(' | '),
    );
  }
}
