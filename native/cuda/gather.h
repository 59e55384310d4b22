// GatherKernel: copies a list of device-to-device ranges with one kernel launch (gather.cu).
//
// A cuMemcpyAsync per range costs a few microseconds of launch each: a 4,096-token Llama-3-8B
// hand-off, 16,384 ranges of 32 KiB, took 56 ms that way on an H100 (8.8 GB/s) where the bytes
// alone take well under a millisecond. The gather kernel takes the whole list at once: the ranges
// and a map from chunk to range are written into pinned host memory, copied to the device and
// read by the kernel, all on the caller's stream, so ordering with the copies around it holds.
//
// Owned by the engine thread's Plane, one per device, used with that device's context current.
// The module is loaded on first use; where the driver cannot load it (too old for the PTX, or no
// module API) Load() says why and the Plane copies range by range as before.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/plane.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <cuda.h>

namespace kvwire::cuda {

class GatherKernel {
 public:
  GatherKernel() = default;
  ~GatherKernel();  // the device's context must be current
  GatherKernel(const GatherKernel&) = delete;
  GatherKernel& operator=(const GatherKernel&) = delete;

  // Loads the module for the current context's device; false (with `error`) where it cannot.
  bool Load(int device, std::string* error);

  // Queues one launch that copies every range of `ops` (device addresses at both ends, none
  // empty) on `stream`. Returns the table slot to Release() once an event recorded after it has
  // completed, or -1 with `error` when nothing was queued.
  int Launch(const std::vector<CopyOp>& ops, CUstream stream, std::string* error);
  void Release(int slot);

 private:
  struct Slot {
    void* host = nullptr;  // pinned: the copy to the device reads it asynchronously
    CUdeviceptr device = 0;
    uint64_t capacity = 0;
    bool busy = false;
  };
  int TakeSlot(uint64_t bytes, std::string* error);
  void FreeSlot(Slot& s);

  CUmodule module_ = nullptr;
  CUfunction function_ = nullptr;
  unsigned blocks_ = 0;  // the most blocks one launch uses (8 per multiprocessor)
  std::vector<Slot> slots_;
};

}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
