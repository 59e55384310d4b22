// Triage of ThreadSanitizer reports from the sanitizer runs (sanitize.ts). Node and UCX are not
// built with TSan; three kinds of report are about code kvwire does not own or about an order TSan
// cannot see, and are counted instead of failing the run. Everything else fails it.
//   'ucx': every frame of both racing accesses lies in UCX's libraries (with libc and the runtime):
//     a race inside UCX between UCX's threads (e.g. UCX's async thread reading a global lock that
//     UCX's library destructor destroys at exit). UCX is stripped: tsan.supp cannot name these.
//   'published-memory': UCX (on kvwire's engine thread, serving a peer) reads or writes a buffer,
//     and the other access is Node allocating that buffer. The buffer reached the peer only after it
//     was allocated and registered, through another process (metadata, then the peer's request over
//     shared memory or tcp): an order no in-process lock shows to TSan.
//   'node': every frame of both racing accesses lies in the node binary (V8, libuv, Node itself, with
//     libc and the runtime): a race between Node's own threads in Node's own code, e.g. V8's garbage
//     collector destroying a parallel job's mutex on a platform worker thread while the main thread's
//     GetMaxConcurrency() last held it (v8::internal::ParallelClearingJob). Node is not built with
//     TSan, so the atomics V8 orders these with are invisible; tsan.supp names the ones known, and
//     new V8 job types appear with each Node release. A report with a kvwire or UCX frame on either
//     side is never counted as 'node'.

/** Why a report is counted and not failed, or undefined when it fails the run. */
export type Triage = 'ucx' | 'published-memory' | 'node' | undefined;

/** Libraries whose frames may appear on UCX's side of a race (UCX's own, libc, the runtime). */
const UCX_SIDE = /^(libucs|libucp|libuct|libucm|libtsan|libc|libpthread|ld-linux)[.-]/;
const UCX_LIB = /^(libucs|libucp|libuct|libucm)[.-]/;
const RUNTIME = /^(libtsan|libc)[.-]/;
/** Node's side of a race: the node binary (V8 and libuv are linked into it), libc, the runtime. */
const NODE_SIDE = /^(node|libtsan|libc|libpthread|libstdc\+\+|ld-linux)([.-]|$)/;

interface Frame {
  fn: string;
  module: string;
}

/** The frames of each racing access in a report (not of its thread-creation stacks). */
export function accesses(block: string): Frame[][] {
  const out: Frame[][] = [];
  let current: Frame[] | undefined;
  for (const line of block.split('\n')) {
    if (/^ {2}(Previous )?(atomic )?(Read|Write|read|write) of size/.test(line)) {
      current = [];
      out.push(current);
      continue;
    }
    if (!line.startsWith('    ')) current = undefined;
    const m = current ? line.match(/^\s+#\d+ (\S+).*\(([^()\s+]+)\+0x[0-9a-f]+\)\s*$/) : null;
    if (m !== null) current!.push({ fn: m[1]!, module: m[2]! });
  }
  return out;
}

function allUcx(frames: Frame[]): boolean {
  return (
    frames.length > 0 && frames.every((f) => UCX_SIDE.test(f.module)) && frames.some((f) => UCX_LIB.test(f.module))
  );
}

function allNode(frames: Frame[]): boolean {
  return frames.length > 0 && frames.every((f) => NODE_SIDE.test(f.module)) && frames.some((f) => f.module === 'node');
}

/** The access is Node's ArrayBuffer allocator zeroing a new buffer (the first frame past the runtime). */
function nodeAllocation(frames: Frame[]): boolean {
  const first = frames.find((f) => !RUNTIME.test(f.module));
  return first !== undefined && first.module === 'node' && first.fn.startsWith('node::NodeArrayBufferAllocator::');
}

/** Classifies one report block (see the file comment). */
export function triage(block: string): Triage {
  if (!/^WARNING: ThreadSanitizer: data race/m.test(block)) return undefined;
  const [a, b] = accesses(block);
  if (a === undefined || b === undefined) return undefined;
  if (allUcx(a) && allUcx(b)) return 'ucx';
  if ((allUcx(a) && nodeAllocation(b)) || (allUcx(b) && nodeAllocation(a))) return 'published-memory';
  if (allNode(a) && allNode(b)) return 'node';
  return undefined;
}
