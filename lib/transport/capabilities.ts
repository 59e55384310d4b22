/**
 * capabilities(): what this build and this machine can do, so callers choose without try/catch.
 *
 * @packageDocumentation
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadNative, nativeLoadError, nativePath, packageRoot } from '../native.js';
import { processIdentity } from './identity.js';
import type { TransportCategory } from './types.js';

/** One transport UCX can use here (as `ucx_info -d` lists it). */
export interface UcxTransport {
  /** UCX transport name: tcp, posix, sysv, cma, self, rc_verbs, ... */
  readonly name: string;
  /** Device: lo, eth0, memory, mlx5_0:1, ... */
  readonly device: string;
  /** Device type: net, shm, acc, self. */
  readonly type: string;
  /** How kvwire classifies it. */
  readonly category: TransportCategory;
}

/** What kvwire can do here. Every unavailable thing says why. */
export interface Capabilities {
  /** kvwire's version. */
  readonly version: string;
  /** The native addon. */
  readonly addon: { readonly loaded: boolean; readonly path?: string; readonly reason?: string };
  /** The engines. */
  readonly engines: {
    readonly ucx: {
      readonly available: boolean;
      readonly reason?: string;
      readonly version?: string;
      readonly transports: readonly UcxTransport[];
      /** Distinct categories UCX can reach peers with (e.g. ['tcp', 'sm']). */
      readonly categories: readonly TransportCategory[];
      /** UCX_TLS from the environment, when set. */
      readonly tlsEnv?: string;
      /** Whether this UCX has CUDA transports (cuda_copy, cuda_ipc, gdr_copy). */
      readonly cudaTransports: boolean;
    };
    readonly loopback: { readonly available: true };
    readonly nixl: { readonly available: false; readonly reason: string };
  };
  /** The CUDA driver, loaded at run time (never linked). */
  readonly cuda: {
    readonly driver: boolean;
    readonly headers: boolean;
    readonly devices: number;
    readonly driverVersion?: string;
    readonly reason?: string;
    /**
     * The paths device memory can take here (docs/cuda.md): 'ucx' when UCX moves device memory
     * itself, 'ipc' between processes of this host when the driver sees a device, 'staging' through
     * pinned host buffers wherever the UCX engine runs (device memory here needs the driver too).
     */
    readonly paths: { readonly ucx: boolean; readonly ipc: boolean; readonly staging: boolean };
  };
  /** This process, as peers see it. */
  readonly host: { readonly pid: number; readonly hostId: string };
}

function categoryOf(name: string): TransportCategory {
  if (['posix', 'sysv', 'cma', 'knem', 'xpmem'].includes(name)) return 'sm';
  if (name === 'tcp') return 'tcp';
  if (name === 'self') return 'self';
  if (/^(rc|dc|ud)/.test(name)) return 'rdma';
  if (/^(cuda|gdr)/.test(name)) return 'cuda';
  return 'unknown';
}

let version: string | undefined;

/** kvwire's package version. */
export function kvwireVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

/** Reports what this build and machine can do. */
export function capabilities(): Capabilities {
  const native = loadNative();
  const id = processIdentity();
  const nc = native?.capabilities();
  const transports: UcxTransport[] = (nc?.ucx.transports ?? []).map((t) => ({ ...t, category: categoryOf(t.name) }));
  const categories = [...new Set(transports.map((t) => t.category).filter((c) => c !== 'self'))];
  const ucxReason = native === undefined ? nativeLoadError() : nc?.ucx.built === false ? nc.ucx.reason : undefined;
  const dv = nc?.cuda.driverVersion;
  return {
    version: kvwireVersion(),
    addon:
      native === undefined
        ? { loaded: false, ...(nativeLoadError() ? { reason: nativeLoadError()! } : {}) }
        : { loaded: true, ...(nativePath() ? { path: nativePath()! } : {}) },
    engines: {
      ucx: {
        available: ucxReason === undefined,
        ...(ucxReason !== undefined ? { reason: ucxReason } : {}),
        ...(nc?.ucx.version !== undefined ? { version: nc.ucx.version } : {}),
        transports,
        categories,
        ...(nc?.ucx.tlsEnv !== undefined ? { tlsEnv: nc.ucx.tlsEnv } : {}),
        cudaTransports: transports.some((t) => t.category === 'cuda'),
      },
      loopback: { available: true },
      nixl: {
        available: false,
        reason:
          'NIXL is not supported by this build (it needs UCX >= 1.18 and the NIXL library); kvwire uses UCX directly',
      },
    },
    cuda: {
      driver: nc?.cuda.driver ?? false,
      headers: nc?.cuda.headers ?? false,
      devices: nc?.cuda.devices ?? 0,
      ...(dv !== undefined ? { driverVersion: `${Math.floor(dv / 1000)}.${(dv % 1000) / 10}` } : {}),
      ...(nc?.cuda.driver ? {} : { reason: nc?.cuda.reason ?? nativeLoadError() ?? 'unknown' }),
      paths: {
        ucx: ucxReason === undefined && transports.some((t) => t.category === 'cuda'),
        ipc: ucxReason === undefined && (nc?.cuda.driver ?? false) && (nc?.cuda.devices ?? 0) > 0,
        staging: ucxReason === undefined,
      },
    },
    host: { pid: id.pid, hostId: id.hostId },
  };
}
