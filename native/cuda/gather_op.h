// One range of the gather kernel's table, as the kernel (gather.cu, compiled by nvcc) and the host
// code that writes the table (gather_table.h) both read it: one definition for both sides.
#pragma once
#include <cstdint>

namespace kvwire::cuda {

struct GatherOp {
  uint64_t dst;
  uint64_t src;
  uint64_t bytes;
  uint64_t firstChunk;  // chunks of the ranges before this one
};
static_assert(sizeof(GatherOp) == 32, "GatherOp is the kernel's 32-byte record");

}  // namespace kvwire::cuda
