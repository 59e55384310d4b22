/**
 * `kvwire info [--json]`: capabilities as a table, or as JSON for machines.
 *
 * @packageDocumentation
 */
import { capabilities } from '../transport/capabilities.js';
import { renderTable } from './table.js';

/** Runs `kvwire info`. */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(
      'usage: kvwire info [--json]\n\nPrints what this build and machine can do: engines, UCX version and transports, CUDA.',
    );
    return 0;
  }
  const unknown = argv.filter((a) => a !== '--json');
  if (unknown.length > 0) {
    console.error(`kvwire info: unknown option ${unknown[0]}`);
    return 2;
  }
  const caps = capabilities();
  if (argv.includes('--json')) {
    console.log(JSON.stringify(caps, null, 2));
    return 0;
  }
  const ucx = caps.engines.ucx;
  const yes = (b: boolean) => (b ? 'yes' : 'no');
  console.log(
    `kvwire ${caps.version}  (addon: ${caps.addon.loaded ? (caps.addon.path ?? 'loaded') : `not loaded: ${caps.addon.reason}`})\n`,
  );
  console.log(
    renderTable(
      ['engine', 'available', 'details'],
      [
        [
          'ucx',
          yes(ucx.available),
          ucx.available
            ? `UCX ${ucx.version}; reaches peers over ${ucx.categories.join(', ') || 'nothing'}${ucx.tlsEnv ? `; UCX_TLS=${ucx.tlsEnv}` : ''}`
            : (ucx.reason ?? ''),
        ],
        ['loopback', 'yes', 'in-process mock with fault injection (tests)'],
        [
          'cuda',
          yes(caps.cuda.driver),
          caps.cuda.driver
            ? `${caps.cuda.devices} GPU(s), driver ${caps.cuda.driverVersion}`
            : (caps.cuda.reason ?? ''),
        ],
        ['nixl', 'no', caps.engines.nixl.reason],
      ],
    ),
  );
  if (ucx.transports.length > 0) {
    console.log('\nUCX transports:');
    console.log(
      renderTable(
        ['transport', 'device', 'type', 'category'],
        ucx.transports.map((t) => [t.name, t.device, t.type, t.category]),
      ),
    );
  }
  console.log(
    `\nCUDA: headers at build ${yes(caps.cuda.headers)}, driver ${caps.cuda.driver ? `${caps.cuda.driverVersion} with ${caps.cuda.devices} device(s)` : `absent (${caps.cuda.reason})`}`,
  );
  const p = caps.cuda.paths;
  console.log(
    `CUDA paths: ucx ${yes(p.ucx)}${p.ucx ? '' : ' (this UCX has no CUDA transports)'}, ipc ${yes(p.ipc)}, staging ${yes(p.staging)}`,
  );
  console.log(`host: ${caps.host.hostId} (pid ${caps.host.pid})`);
  return 0;
}
