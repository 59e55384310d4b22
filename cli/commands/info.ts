/**
 * `kvwire info [--json]`: capabilities as a table, or as JSON for machines.
 *
 * @packageDocumentation
 */
import type { Command } from 'commander';
import { capabilities } from '../../lib/transport/capabilities.js';
import { kvwireCommand } from '../kit/command.js';
import { renderTable } from '../kit/table.js';

/** Declares `kvwire info`. */
export function command(): Command {
  return kvwireCommand('info')
    .option('--json', 'print the capabilities as JSON, for machines')
    .run((opts: { json?: boolean }) => {
      print(opts.json === true);
      return 0;
    });
}

function print(json: boolean): void {
  const caps = capabilities();
  if (json) {
    console.log(JSON.stringify(caps, null, 2));
    return;
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
}
