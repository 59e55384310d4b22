// The gather kernel's table (native/cuda/gather.cu reads it on the device): the ranges, each with
// the index of its first chunk, then a map from every chunk to its range. Plain C++ with no CUDA,
// so test/cuda/gather-kernel.test.ts builds it exactly as the engine does and runs the kernel's own
// source over it on the host.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/gather_op.h"
#include "cuda/plane.h"

namespace kvwire::cuda {

inline constexpr unsigned kGatherMinChunkShift = 16;      // 64 KiB chunks
inline constexpr uint64_t kGatherMaxChunks = 1ull << 20;  // a map of at most 4 MiB

// How a list is cut: chunks of 2^shift bytes, the smallest shift (from 64 KiB) whose chunk count
// stays within `maxChunks` (or, for a list of more ranges than that, one chunk per range); the
// table is `opBytes` of ranges then `chunks` 32-bit map entries.
struct GatherPlan {
  unsigned shift = kGatherMinChunkShift;
  uint64_t chunks = 0;
  uint64_t opBytes = 0;
  uint64_t tableBytes = 0;
};

inline uint64_t GatherChunks(const std::vector<CopyOp>& ops, unsigned shift) {
  uint64_t n = 0;
  for (const CopyOp& op : ops) n += (op.bytes + (1ull << shift) - 1) >> shift;
  return n;
}

inline GatherPlan PlanGather(const std::vector<CopyOp>& ops, uint64_t maxChunks = kGatherMaxChunks) {
  GatherPlan p;
  p.chunks = GatherChunks(ops, p.shift);
  while (p.chunks > maxChunks && p.chunks > ops.size() && p.shift < 62) p.chunks = GatherChunks(ops, ++p.shift);
  p.opBytes = ops.size() * sizeof(GatherOp);
  p.tableBytes = p.opBytes + p.chunks * sizeof(uint32_t);
  return p;
}

// Writes the table of `ops` cut as `plan` says into `table` (plan.tableBytes, 8-byte aligned).
inline void FillGather(const std::vector<CopyOp>& ops, const GatherPlan& plan, void* table) {
  auto* records = static_cast<GatherOp*>(table);
  auto* map = reinterpret_cast<uint32_t*>(static_cast<char*>(table) + plan.opBytes);
  uint64_t first = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const uint64_t n = (ops[i].bytes + (1ull << plan.shift) - 1) >> plan.shift;
    records[i] = GatherOp{ops[i].dst, ops[i].src, ops[i].bytes, first};
    std::fill(map + first, map + first + n, static_cast<uint32_t>(i));
    first += n;
  }
}

}  // namespace kvwire::cuda
