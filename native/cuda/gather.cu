// kvwire's gather copy (the device side of native/cuda/gather.cc): one launch moves a list of
// (dst, src, bytes) ranges between device addresses, local allocations and peers' memory mapped by
// CUDA IPC, where a cuMemcpyAsync per range would pay a launch per range (a 4,096-token
// Llama-3-8B hand-off is 16,384 ranges of 32 KiB).
//
// The host cuts every range into chunks of 2^chunkShift bytes (the last one shorter) and uploads
// the ranges with a map from chunk to range; each thread block copies whole chunks, 16 bytes per
// load where both ends are 16-byte aligned, one byte at a time otherwise.
//
// Not compiled by the addon's build: tools/gen-gather-ptx.sh turns it into PTX (gather_ptx.h),
// which the driver compiles for the GPU at hand when the module is first loaded.
#include "gather_op.h"

using kvwire::cuda::GatherOp;

extern "C" __global__ void __launch_bounds__(256)
    kvwire_gather(const GatherOp* __restrict__ ops, const unsigned int* __restrict__ chunkOp,
                  unsigned long long chunks, unsigned int chunkShift) {
  for (unsigned long long c = blockIdx.x; c < chunks; c += gridDim.x) {
    const GatherOp op = ops[chunkOp[c]];
    const unsigned long long off = (c - op.firstChunk) << chunkShift;
    const unsigned long long left = op.bytes - off;
    const unsigned long long n = left < (1ull << chunkShift) ? left : (1ull << chunkShift);
    char* dst = reinterpret_cast<char*>(op.dst + off);
    const char* src = reinterpret_cast<const char*>(op.src + off);
    if (((op.dst | op.src) & 15) == 0) {
      const unsigned long long n16 = n >> 4;
      uint4* d4 = reinterpret_cast<uint4*>(dst);
      const uint4* s4 = reinterpret_cast<const uint4*>(src);
      const unsigned long long step = blockDim.x;
      unsigned long long i = threadIdx.x;
      for (; i + 3 * step < n16; i += 4 * step) {  // four loads in flight per thread
        const uint4 a = s4[i], b = s4[i + step], e = s4[i + 2 * step], f = s4[i + 3 * step];
        d4[i] = a;
        d4[i + step] = b;
        d4[i + 2 * step] = e;
        d4[i + 3 * step] = f;
      }
      for (; i < n16; i += step) d4[i] = s4[i];
      for (unsigned long long j = (n16 << 4) + threadIdx.x; j < n; j += step) dst[j] = src[j];
    } else {
      for (unsigned long long j = threadIdx.x; j < n; j += blockDim.x) dst[j] = src[j];
    }
  }
}
