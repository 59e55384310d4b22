#include "cuda/gather.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <algorithm>

#include "cuda/context.h"
#include "cuda/driver.h"
#include "cuda/gather_ptx.h"
#include "cuda/gather_table.h"

namespace kvwire::cuda {

namespace {
constexpr unsigned kThreads = 256;  // __launch_bounds__ of the kernel
constexpr uint64_t kMinSlotBytes = 256 << 10;
}  // namespace

GatherKernel::~GatherKernel() {
  const Driver& d = GetDriver();
  for (Slot& s : slots_) FreeSlot(s);
  if (module_ != nullptr && d.cuModuleUnload != nullptr) d.cuModuleUnload(module_);
}

bool GatherKernel::Load(int device, std::string* error) {
  const Driver& d = GetDriver();
  if (d.cuModuleLoadData == nullptr || d.cuModuleGetFunction == nullptr || d.cuLaunchKernel == nullptr) {
    *error = "the CUDA driver has no module API (cuModuleLoadData, cuLaunchKernel)";
    return false;
  }
  CUresult r = d.cuModuleLoadData(&module_, kGatherPtx);
  if (r != CUDA_SUCCESS) {
    module_ = nullptr;
    *error = Describe("loading the gather kernel's PTX", r);
    return false;
  }
  r = d.cuModuleGetFunction(&function_, module_, "kvwire_gather");
  if (r != CUDA_SUCCESS) {
    *error = Describe("finding kvwire_gather in its module", r);
    return false;
  }
  CUdevice dev = 0;
  int sms = 0;
  if (d.cuDeviceGet(&dev, device) != CUDA_SUCCESS ||
      d.cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev) != CUDA_SUCCESS || sms <= 0) {
    sms = 16;
  }
  blocks_ = static_cast<unsigned>(sms) * 8;
  return true;
}

void GatherKernel::FreeSlot(Slot& s) {
  const Driver& d = GetDriver();
  if (s.host != nullptr) d.cuMemFreeHost(s.host);
  if (s.device != 0) d.cuMemFree(s.device);
  s = Slot{};
}

int GatherKernel::TakeSlot(uint64_t bytes, std::string* error) {
  int spare = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].busy) continue;
    if (slots_[i].capacity >= bytes) {
      slots_[i].busy = true;
      return static_cast<int>(i);
    }
    spare = static_cast<int>(i);
  }
  if (spare < 0) {
    slots_.emplace_back();
    spare = static_cast<int>(slots_.size() - 1);
  }
  Slot& s = slots_[spare];
  FreeSlot(s);  // too small (or new): grown to the next power of two
  uint64_t cap = kMinSlotBytes;
  while (cap < bytes) cap <<= 1;
  const Driver& d = GetDriver();
  CUresult r = d.cuMemHostAlloc(&s.host, cap, 0);
  if (r == CUDA_SUCCESS) r = d.cuMemAlloc(&s.device, cap);
  if (r != CUDA_SUCCESS) {
    FreeSlot(s);
    *error = Describe("allocating the gather kernel's table", r);
    return -1;
  }
  s.capacity = cap;
  s.busy = true;
  return spare;
}

void GatherKernel::Release(int slot) {
  if (slot >= 0 && static_cast<size_t>(slot) < slots_.size()) slots_[slot].busy = false;
}

int GatherKernel::Launch(const std::vector<CopyOp>& ops, CUstream stream, std::string* error) {
  if (function_ == nullptr || ops.empty() || ops.size() > UINT32_MAX) {
    *error = "the gather kernel is not loaded or the list is empty";
    return -1;
  }
  const GatherPlan plan = PlanGather(ops);
  if (plan.chunks == 0) {
    *error = "the list moves no bytes";
    return -1;
  }
  int slot = TakeSlot(plan.tableBytes, error);
  if (slot < 0) return -1;
  Slot& s = slots_[slot];
  FillGather(ops, plan, s.host);
  const Driver& d = GetDriver();
  CUresult r = d.cuMemcpyHtoDAsync(s.device, s.host, plan.tableBytes, stream);
  if (r != CUDA_SUCCESS) {
    Release(slot);
    *error = Describe("copying the gather kernel's table to the device", r);
    return -1;
  }
  CUdeviceptr opsPtr = s.device;
  CUdeviceptr mapPtr = s.device + plan.opBytes;
  unsigned long long chunkCount = plan.chunks;
  unsigned chunkShift = plan.shift;
  void* args[] = {&opsPtr, &mapPtr, &chunkCount, &chunkShift};
  const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(plan.chunks, blocks_));
  r = d.cuLaunchKernel(function_, grid, 1, 1, kThreads, 1, 1, 0, stream, args, nullptr);
  if (r != CUDA_SUCCESS) {
    d.cuStreamSynchronize(stream);  // the table copy may still read the slot
    Release(slot);
    *error = Describe("launching the gather kernel", r);
    return -1;
  }
  return slot;
}

}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
