// BouncePool: pinned host buffers of one size, registered with the transport once, handed out one
// at a time to the staging pipeline.
//
// The memory is allocated lazily, on first use (an agent that never stages pins nothing), as one
// portable pinned allocation (usable from every device's context) with one transport registration.
// Hazard guarded: a buffer reused while a copy or a network operation still touches it. Release()
// is called only when both the copy and the transport operation using it are done.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/plane.h"

namespace kvwire::cuda {

class BouncePool {
 public:
  BouncePool(uint64_t chunkBytes, uint32_t count, HostRegistrar* registrar)
      : chunk_(chunkBytes), count_(count), registrar_(registrar) {}
  ~BouncePool();
  BouncePool(const BouncePool&) = delete;
  BouncePool& operator=(const BouncePool&) = delete;

  // Allocates and registers the buffers on first use. False (with `error`) when it cannot.
  bool Ensure(std::string* error);
  // A free buffer's index, or -1 when all are in use.
  int Acquire();
  void Release(int index);
  uint8_t* data(int index) const { return base_ + static_cast<uint64_t>(index) * chunk_; }
  void* memh() const { return memh_; }
  uint64_t chunk() const { return chunk_; }
  uint32_t available() const { return static_cast<uint32_t>(free_.size()); }

 private:
  const uint64_t chunk_;
  const uint32_t count_;
  HostRegistrar* registrar_;
  uint8_t* base_ = nullptr;
  void* memh_ = nullptr;
  std::vector<int> free_;
  std::string failed_;  // a first failure is remembered: not retried on every transfer
};

}  // namespace kvwire::cuda
