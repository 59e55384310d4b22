// BouncePool: pinned host buffers of one size, registered with the transport once, handed out one
// at a time to the staging pipeline.
//
// The memory is allocated lazily, on first use (an agent that never stages pins nothing), as one
// portable pinned allocation (usable from every device's context) with one transport registration.
// Two ways to use it: whole buffers (Acquire/Release: the initiator packs a stage into one), or
// slots packed into the buffer currently open (Reserve/Free: the target stages descriptors one by
// one, and small ones must not take a whole buffer each, or 4 KiB KV blocks would move 4 at a time).
// Hazard guarded: memory reused while a copy or a network operation still touches it. Release()
// and Free() are called only when both the copy and the transport operation using it are done.
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

  // A slot of `length` (<= chunk) bytes in the open buffer, or in a fresh one. False when none is free.
  struct Slot {
    int buffer = -1;
    uint64_t offset = 0;
    uint8_t* data = nullptr;
  };
  bool Reserve(uint64_t length, Slot* out);
  void Free(const Slot& slot);

 private:
  const uint64_t chunk_;
  const uint32_t count_;
  HostRegistrar* registrar_;
  uint8_t* base_ = nullptr;
  void* memh_ = nullptr;
  std::vector<int> free_;
  std::vector<uint32_t> slots_;  // per buffer: slots not yet freed (Reserve/Free)
  int open_ = -1;                // the buffer Reserve packs into
  uint64_t fill_ = 0;
  std::string failed_;  // a first failure is remembered: not retried on every transfer
};

}  // namespace kvwire::cuda
