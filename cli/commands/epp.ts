/**
 * `kvwire epp`: the Gateway API Inference Extension endpoint picker for Envoy (ext_proc gRPC,
 * lib/scheduler/epp). Prints one line `kvwire-epp-ready {"address": ...}` on stdout when it serves,
 * and stops on SIGINT or SIGTERM.
 *
 * @packageDocumentation
 */
import { Option } from 'commander';
import type { EppOptions } from '../../lib/scheduler/epp/server.js';
import { listenError } from '../kit/checks.js';
import { asUsageError, kvwireCommand, type KvwireCommand } from '../kit/command.js';
import { hostPort } from '../kit/values.js';
import {
  addSchedulingFlags,
  SCHEDULING_FLAG_NAMES,
  schedulingOptions,
  untilSignal,
  type SchedulingFlags,
} from './scheduling-flags.js';

interface EppFlags extends SchedulingFlags {
  listen: { host: string; port: number };
  metricsListen?: { host: string; port: number };
}

/** Declares `kvwire epp`. */
export function command(): KvwireCommand {
  const cmd = kvwireCommand('epp')
    .addOption(
      new Option('--listen <host:port>', 'address of the gRPC server (port 0: any free port)')
        .argParser(hostPort)
        .default({ host: '127.0.0.1', port: 9002 }, '127.0.0.1:9002'),
    )
    .addOption(
      new Option(
        '--metrics-listen <host:port>',
        'also serve GET /metrics and GET /health over HTTP there (default: not served)',
      ).argParser(hostPort),
    );
  addSchedulingFlags(cmd).addHelpText(
    'after',
    `
Serves envoy.service.ext_proc.v3.ExternalProcessor (request and response body mode FULL_DUPLEX_STREAMED,
trailers SEND) and grpc.health.v1.Health. For each request it answers x-gateway-destination-endpoint
(and envoy.lb dynamic metadata) with the chosen decode worker's ip:port, x-prefiller-host-port when
it disaggregates, and honours envoy.lb.subset_hint. No endpoint: 503; shedding: 429.`,
  );
  return cmd.run(async (f: EppFlags) => {
    const { startEpp } = await import('../../lib/scheduler/epp/server.js');
    const address = `${f.listen.host}:${f.listen.port}`;
    let options: EppOptions;
    try {
      options = {
        ...schedulingOptions(f),
        host: f.listen.host,
        port: f.listen.port,
        explain: f.explain,
        ...(f.metricsListen !== undefined ? { metrics: f.metricsListen } : {}),
      };
    } catch (e) {
      throw asUsageError(e, SCHEDULING_FLAG_NAMES);
    }
    let epp;
    try {
      epp = await startEpp(options);
    } catch (e) {
      const metricsAddress = f.metricsListen !== undefined ? `${f.metricsListen.host}:${f.metricsListen.port}` : '';
      const flag =
        (e as { details?: { field?: unknown } }).details?.field === 'metrics' ? '--metrics-listen' : '--listen';
      throw asUsageError(listenError(e, flag, flag === '--listen' ? address : metricsAddress), SCHEDULING_FLAG_NAMES);
    }
    process.stdout.write(
      `kvwire-epp-ready ${JSON.stringify({ address: epp.address, metrics: epp.metricsUrl ?? null, endpoints: epp.service.pool.specs.length })}\n`,
    );
    const signal = await untilSignal();
    process.stderr.write(`kvwire epp: ${signal}, stopping\n`);
    await epp.close();
    return 0;
  });
}
