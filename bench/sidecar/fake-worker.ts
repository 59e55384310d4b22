/**
 * A fast fake worker for the sidecar benchmark (a child process): answers `POST /v1/completions`
 * at once (or after `--service-ms`), as a prefill (with `kv_transfer_params`) or a decode worker.
 * Prints `ready <port>` on stdout.
 *
 * Usage: node fake-worker.js prefill|decode [service-ms]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const role = process.argv[2] === 'prefill' ? 'prefill' : 'decode';
const serviceMs = Number(process.argv[3] ?? 0);

const prefillAnswer = JSON.stringify({
  id: 'cmpl-bench',
  object: 'text_completion',
  choices: [{ index: 0, text: 'x', finish_reason: 'length' }],
  usage: { prompt_tokens: 64, completion_tokens: 1, total_tokens: 65, prompt_tokens_details: { cached_tokens: 0 } },
  kv_transfer_params: {
    do_remote_prefill: true,
    do_remote_decode: false,
    remote_engine_id: 'prefill-bench',
    remote_request_id: 'bench',
    remote_block_ids: [1, 2, 3, 4],
    remote_host: '127.0.0.1',
    remote_port: 5600,
    tp_size: 1,
  },
});
const decodeAnswer = JSON.stringify({
  id: 'cmpl-bench',
  object: 'text_completion',
  choices: [{ index: 0, text: ' jumps over the lazy dog', finish_reason: 'length' }],
  usage: { prompt_tokens: 64, completion_tokens: 16, total_tokens: 80, prompt_tokens_details: { cached_tokens: 0 } },
});
const answer = role === 'prefill' ? prefillAnswer : decodeAnswer;
const length = Buffer.byteLength(answer);

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume();
  req.on('end', () => {
    const send = (): void => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
      res.end(answer);
    };
    if (serviceMs > 0) setTimeout(send, serviceMs);
    else send();
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`ready ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
