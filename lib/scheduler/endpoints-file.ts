/**
 * The endpoints file (JSON or YAML) that both front ends read, and a watcher that reloads it when it
 * changes. Format:
 *
 * ```yaml
 * endpoints:
 *   - { name: decode-0, role: decode, url: http://10.0.0.5:8200, sidecar: http://10.0.0.5:8000,
 *       models: [llama], kvEvents: tcp://10.0.0.5:5557, kvReplay: tcp://10.0.0.5:5558 }
 *   - { name: prefill-0, role: prefill, url: http://10.0.0.9:8200, models: [llama] }
 * ```
 *
 * (a bare list of endpoints is accepted too). A file that no longer parses or checks is reported
 * and ignored: the endpoints in use stay until a good version is written.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, KvwireError } from '../errors.js';
import { checkEndpoints, type EndpointInput, type EndpointSpec } from './endpoint.js';

/**
 * Reads and checks an endpoints file.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the file and what is wrong.
 */
export function loadEndpointsFile(path: string): EndpointSpec[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `cannot read the endpoints file ${path}: ${(e as Error).message}`,
      { field: 'endpoints' },
    );
  }
  let doc: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    doc = parseYaml(text);
  } catch (e) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the endpoints file ${path} is neither JSON nor YAML: ${(e as Error).message}`,
      { field: 'endpoints' },
    );
  }
  const list = Array.isArray(doc) ? doc : (doc as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(list)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the endpoints file ${path} has no list of endpoints: write { endpoints: [ { role, url, ... } ] }`,
      { field: 'endpoints' },
    );
  }
  try {
    return checkEndpoints(list as EndpointInput[], 'endpoints');
  } catch (e) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the endpoints file ${path}: ${(e as Error).message}`,
      (e as KvwireError).details,
    );
  }
}

/** A running watch; `close()` stops it. */
export interface EndpointsFileWatch {
  close(): void;
}

/**
 * Calls `onChange` with the checked endpoints whenever the file's content changes, `onError` when a
 * changed file does not check. Reads the file on a timer and compares its content (robust to editors
 * that replace the file). Not `fs.watchFile`: its first stat runs on the libuv thread pool after the
 * call returns, so a write that lands before that stat (a busy pool) becomes the baseline and is never
 * reported (seen under load: the router kept the old endpoints for good).
 */
export function watchEndpointsFile(
  path: string,
  onChange: (specs: EndpointSpec[]) => void,
  onError: (e: KvwireError) => void,
  intervalMs = 500,
): EndpointsFileWatch {
  let last = '';
  try {
    last = readFileSync(path, 'utf8');
  } catch {
    // Reported on the first change.
  }
  const listener = (): void => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      return;
    }
    if (text === last) return;
    last = text;
    try {
      onChange(loadEndpointsFile(path));
    } catch (e) {
      onError(e as KvwireError);
    }
  };
  const timer = setInterval(listener, intervalMs);
  timer.unref();
  return { close: () => clearInterval(timer) };
}
