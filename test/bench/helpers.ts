// Shared helpers of the bench tests: run the compiled CLI as a child process (what users run).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { capabilities } from '../../lib/transport/capabilities.js';

/** The repository root. */
export const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

/** True when this build and machine have the UCX engine (two-process tests need it). */
export const hasUcx = capabilities().engines.ucx.available;

/** What a CLI run printed and returned. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `kvwire bench ...args` (compiled, from dist/) with a deadline; never hangs a test. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 50_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'kvwire.js'), 'bench', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kvwire bench ${args.join(' ')} did not finish within ${timeoutMs} ms\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
