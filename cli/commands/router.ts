/**
 * `kvwire router`: the KV-cache-aware HTTP gateway (lib/scheduler/router). Prints one line
 * `kvwire-router-ready {"url": ...}` on stdout when it serves, and stops on SIGINT or SIGTERM.
 *
 * @packageDocumentation
 */
import { Option } from 'commander';
import type { RouterOptions } from '../../lib/scheduler/router/router.js';
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

interface RouterFlags extends SchedulingFlags {
  listen: { host: string; port: number };
  eventsToken?: string;
}

/** Declares `kvwire router`. */
export function command(): KvwireCommand {
  const cmd = kvwireCommand('router')
    .addOption(
      new Option('--listen <host:port>', 'address to serve on (port 0: any free port)')
        .argParser(hostPort)
        .default({ host: '127.0.0.1', port: 8080 }, '127.0.0.1:8080'),
    )
    .addOption(new Option('--events-token <token>', 'require Authorization: Bearer <token> on POST /v1/kv-events'));
  addSchedulingFlags(cmd).addHelpText(
    'after',
    `
Routes POST /v1/completions and /v1/chat/completions to the decode worker holding the longest cached
prefix (or the least loaded), names a prefill worker in x-prefiller-host-port when the uncached part
reaches --pd-threshold, and streams the answer back. Other paths go to the least loaded decode worker;
GET /health, GET /metrics and POST /v1/kv-events are the router's own.

Example:
  kvwire router --listen 0.0.0.0:8080 --model llama \\
    --decode http://10.0.0.5:8000 --kv-events tcp://10.0.0.5:5557 --kv-replay tcp://10.0.0.5:5558 --pod decode-0 \\
    --decode http://10.0.0.6:8000 --kv-events tcp://10.0.0.6:5557 --kv-replay tcp://10.0.0.6:5558 --pod decode-1 \\
    --prefill http://10.0.0.9:8200`,
  );
  return cmd.run(async (f: RouterFlags) => {
    const { startRouter } = await import('../../lib/scheduler/router/router.js');
    const address = `${f.listen.host}:${f.listen.port}`;
    let options: RouterOptions;
    try {
      options = {
        ...schedulingOptions(f),
        host: f.listen.host,
        port: f.listen.port,
        explain: f.explain,
        ...(f.eventsToken !== undefined ? { eventsAuthToken: f.eventsToken } : {}),
      };
    } catch (e) {
      throw asUsageError(e, SCHEDULING_FLAG_NAMES);
    }
    let router;
    try {
      router = await startRouter(options);
    } catch (e) {
      throw asUsageError(listenError(e, '--listen', address), SCHEDULING_FLAG_NAMES);
    }
    process.stdout.write(
      `kvwire-router-ready ${JSON.stringify({ url: router.url, endpoints: router.service.pool.specs.length })}\n`,
    );
    const signal = await untilSignal();
    process.stderr.write(`kvwire router: ${signal}, stopping\n`);
    await router.close();
    return 0;
  });
}
