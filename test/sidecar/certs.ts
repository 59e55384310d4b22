/**
 * Test certificates, made fresh by the openssl CLI for each test file: a CA, a leaf it signs for
 * `prefill.test` and 127.0.0.1, and a self-signed leaf nobody trusts.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM texts. */
export interface TestCerts {
  readonly ca: string;
  /** Signed by `ca`, valid for DNS:prefill.test and IP:127.0.0.1. */
  readonly leaf: { cert: string; key: string };
  /** Self-signed, valid for the same names, trusted by nobody. */
  readonly untrusted: { cert: string; key: string };
}

/** Makes the certificates (EC P-256, valid 2 days). */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'kvwire-sidecar-tls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const san = 'subjectAltName=DNS:prefill.test,IP:127.0.0.1';
  try {
    run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kvwire test CA');
    run('req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=prefill.test');
    writeFileSync(join(dir, 'ext.cnf'), `${san}\n`);
    run(
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'leaf.crt',
      '-days',
      '2',
      '-extfile',
      'ext.cnf',
    );
    run(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'self.key',
      '-out',
      'self.crt',
      '-days',
      '2',
      '-subj',
      '/CN=prefill.test',
      '-addext',
      san,
    );
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    return {
      ca: read('ca.crt'),
      leaf: { cert: read('leaf.crt'), key: read('leaf.key') },
      untrusted: { cert: read('self.crt'), key: read('self.key') },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
