#include "cuda/ipc_cache.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <cstring>

#include "cuda/context.h"
#include "cuda/driver.h"

namespace kvwire::cuda {

IpcMapping::~IpcMapping() {
  ScopedContext ctx(device_);
  if (ctx.ok()) GetDriver().cuIpcCloseMemHandle(base_);
}

std::shared_ptr<IpcMapping> IpcCache::Open(const IpcHandle& handle, int device, std::string* error) {
  auto it = open_.find(handle);
  if (it != open_.end()) {
    if (auto m = it->second.lock()) return m;
    open_.erase(it);
  }
  ScopedContext ctx(device);
  if (!ctx.ok()) {
    *error = ctx.error();
    return nullptr;
  }
  CUipcMemHandle h;
  std::memcpy(h.reserved, handle.data(), kIpcHandleBytes);
  CUdeviceptr p = 0;
  CUresult r = GetDriver().cuIpcOpenMemHandle(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
  if (r != CUDA_SUCCESS) {
    *error = Describe("opening the peer's CUDA IPC handle", r);
    return nullptr;
  }
  auto m = std::make_shared<IpcMapping>(p, device);
  open_[handle] = m;
  return m;
}

}  // namespace kvwire::cuda
#else
namespace kvwire::cuda {
IpcMapping::~IpcMapping() = default;
std::shared_ptr<IpcMapping> IpcCache::Open(const IpcHandle&, int, std::string* error) {
  *error = "built without the CUDA headers";
  return nullptr;
}
}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
