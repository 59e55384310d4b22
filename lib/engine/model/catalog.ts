/**
 * The generated models kvwire serves (`--model tiny|small`) and their cache folder: a model is
 * generated once, checked against its pinned SHA-256, and written atomically (temporary file,
 * then rename), so concurrent engines starting on a cold cache never read a half-written file.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, KvwireError } from '../../errors.js';
import { generateModel, headDim, type GeneratedModelSpec } from './generate.js';

/** Names of the generated models. */
export type GeneratedModelName = 'tiny' | 'small';

/** A catalog entry: the spec and the SHA-256 its GGUF must have. */
export interface CatalogEntry {
  /** Dimensions and seed. */
  readonly spec: GeneratedModelSpec;
  /** SHA-256 (hex) of the generated file: the same on every machine. */
  readonly sha256: string;
  /** What it is for. */
  readonly summary: string;
}

const CATALOG: Readonly<Record<GeneratedModelName, CatalogEntry>> = {
  tiny: {
    spec: {
      name: 'tiny',
      seed: 0x6b767769,
      embedding: 64,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      feedForward: 128,
      contextLength: 4096,
    },
    sha256: '5a34e6af1dda2b68361388a2d8af2d5b1b5fe61a2cbb47a9ea55d3813295a837',
    summary: 'under 1 MB, 256 bytes of KV per token: tests',
  },
  small: {
    spec: {
      name: 'small',
      seed: 0x6b767770,
      embedding: 512,
      layers: 8,
      heads: 8,
      kvHeads: 4,
      feedForward: 1024,
      contextLength: 8192,
    },
    sha256: 'a528cfa9ad9d0aad9ecdb0e95fe68f2a52b734ddfaa21266a352bb9c402d9fb3',
    summary: '77 MB, 8 KiB of KV per token (32 MiB for a 4,096-token prompt): the demo and benchmarks',
  },
};

/** Names of every generated model. */
export const GENERATED_MODEL_NAMES: readonly GeneratedModelName[] = Object.freeze(
  Object.keys(CATALOG) as GeneratedModelName[],
);

/**
 * The catalog entry of a generated model.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for an unknown name.
 */
export function generatedModel(name: string): CatalogEntry {
  const entry = Object.prototype.hasOwnProperty.call(CATALOG, name) ? CATALOG[name as GeneratedModelName] : undefined;
  if (entry === undefined) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `no generated model named ${JSON.stringify(name)}; kvwire generates ${GENERATED_MODEL_NAMES.join(', ')} (--model)`,
      { field: 'model' },
    );
  }
  return entry;
}

/** KV bytes per token of a generated model (f16 K and V, every layer). */
export function kvBytesPerToken(spec: GeneratedModelSpec): number {
  return 2 * spec.layers * spec.kvHeads * headDim(spec) * 2;
}

/** The default cache folder: `$KVWIRE_CACHE_DIR/models`, else `$XDG_CACHE_HOME/kvwire/models`, else `~/.cache/kvwire/models`. */
export function defaultModelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['KVWIRE_CACHE_DIR']) return join(env['KVWIRE_CACHE_DIR'], 'models');
  const xdg = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(xdg, 'kvwire', 'models');
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * The path of a generated model's GGUF in `cacheDir`, generating it on first use.
 *
 * @throws KvwireError `ERR_KVWIRE_CORRUPTED` when the generator no longer produces the pinned bytes
 *   (a change to the generator must change the model's name or version, never silently its weights).
 */
export async function ensureModelFile(name: string, cacheDir = defaultModelCacheDir()): Promise<string> {
  const entry = generatedModel(name);
  const path = join(cacheDir, `kvwire-${entry.spec.name}-v1.gguf`);
  try {
    const st = await stat(path);
    if (st.isFile() && sha256(await readFile(path)) === entry.sha256) return path;
  } catch {
    // not there yet
  }
  const bytes = generateModel(entry.spec);
  const got = sha256(bytes);
  if (got !== entry.sha256) {
    throw new KvwireError(
      ErrorCode.CORRUPTED,
      `generated model '${name}' has SHA-256 ${got}, the catalog pins ${entry.sha256}: the generator changed; give the model a new version instead of changing its weights`,
      { field: 'model' },
    );
  }
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
  return path;
}
