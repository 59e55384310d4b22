/**
 * The sidecar under benchmark, in its own process: `createSidecar()` in front of the fake decode
 * worker, allowing the fake prefill worker. Prints `ready <port>` on stdout.
 *
 * Usage: node sidecar-process.js <decode-url> <prefill-host:port>
 */
import { createSidecar } from '../../lib/sidecar/index.js';

const sidecar = await createSidecar({ decode: process.argv[2]!, allow: [process.argv[3]!] });
process.stdout.write(`ready ${sidecar.port}\n`);
process.on('SIGTERM', () => void sidecar.close().then(() => process.exit(0)));
