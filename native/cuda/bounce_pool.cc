#include "cuda/bounce_pool.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include "cuda/context.h"
#include "cuda/driver.h"

namespace kvwire::cuda {

bool BouncePool::Ensure(std::string* error) {
  if (base_ != nullptr) return true;
  if (!failed_.empty()) {
    *error = failed_;
    return false;
  }
  const Driver& d = GetDriver();
  ScopedContext ctx(0);  // portable pinned memory: any device's context may allocate it
  if (!ctx.ok()) {
    failed_ = ctx.error();
    *error = failed_;
    return false;
  }
  void* p = nullptr;
  uint64_t total = chunk_ * count_;
  CUresult r = d.cuMemHostAlloc(&p, total, CU_MEMHOSTALLOC_PORTABLE);
  if (r != CUDA_SUCCESS) {
    failed_ = Describe(("pinning " + std::to_string(total) + " bytes of staging buffers").c_str(), r) +
              "; lower cuda.stagingBuffers or cuda.stagingChunkBytes";
    *error = failed_;
    return false;
  }
  std::string why;
  void* memh = registrar_->map(p, total, &why);
  if (memh == nullptr) {
    d.cuMemFreeHost(p);
    failed_ = "registering the staging buffers with UCX failed: " + why;
    *error = failed_;
    return false;
  }
  base_ = static_cast<uint8_t*>(p);
  memh_ = memh;
  for (int i = static_cast<int>(count_) - 1; i >= 0; --i) free_.push_back(i);
  slots_.assign(count_, 0);
  return true;
}

bool BouncePool::Reserve(uint64_t length, Slot* out) {
  constexpr uint64_t kAlign = 256;  // copy engines move aligned memory fastest
  if (length == 0 || length > chunk_) return false;
  if (open_ < 0 || fill_ + length > chunk_) {
    int next = Acquire();
    if (next < 0) return false;
    if (open_ >= 0 && slots_[open_] == 0) free_.push_back(open_);  // the one we leave is idle
    open_ = next;
    fill_ = 0;
  }
  out->buffer = open_;
  out->offset = fill_;
  out->data = data(open_) + fill_;
  slots_[open_]++;
  fill_ = (fill_ + length + kAlign - 1) / kAlign * kAlign;
  return true;
}

void BouncePool::Free(const Slot& slot) {
  if (--slots_[slot.buffer] > 0) return;
  if (slot.buffer == open_) {
    fill_ = 0;  // still open, and empty again
  } else {
    free_.push_back(slot.buffer);
  }
}

int BouncePool::Acquire() {
  if (free_.empty()) return -1;
  int i = free_.back();
  free_.pop_back();
  return i;
}

void BouncePool::Release(int index) {
  free_.push_back(index);
}

BouncePool::~BouncePool() {
  if (base_ == nullptr) return;
  registrar_->unmap(memh_);
  ScopedContext ctx(0);
  GetDriver().cuMemFreeHost(base_);
}

}  // namespace kvwire::cuda
#else
namespace kvwire::cuda {
bool BouncePool::Ensure(std::string* error) {
  *error = "built without the CUDA headers";
  return false;
}
int BouncePool::Acquire() {
  return -1;
}
bool BouncePool::Reserve(uint64_t, Slot*) {
  return false;
}
void BouncePool::Free(const Slot&) {}
void BouncePool::Release(int) {}
BouncePool::~BouncePool() = default;
}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
