// UcxEngine and CUDA device memory: the engine's CUDA plane, registration of device regions, and
// the path chosen for each peer when it connects (and the IPC handles opened for it).
#ifdef KVWIRE_HAVE_UCX
#include <unistd.h>

#include <cstring>

#include "engine/ucx_internal.h"

namespace kvwire {

void UcxEngine::InitCuda() {
  // UCX moves device memory itself only when it was built with CUDA support (cuda_copy, cuda_ipc,
  // gdr_copy): then the context lists CUDA among its memory types. Debian's UCX 1.13.1 does not.
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(context_, &attr) == UCS_OK) {
    ucxCudaMemory_ = (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
  }
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  std::shared_ptr<ContextRef> ctx = ctxRef_;
  cuda::HostRegistrar registrar;
  registrar.map = [ctx](void* base, uint64_t length, std::string* error) -> void* {
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_PROT;
    mp.address = base;
    mp.length = length;
    mp.prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE | UCP_MEM_MAP_PROT_REMOTE_READ |
              UCP_MEM_MAP_PROT_REMOTE_WRITE;  // rendezvous may fetch from it; never exported in metadata
    ucp_mem_h memh = nullptr;
    ucs_status_t st = ucp_mem_map(ctx->context, &mp, &memh);
    if (st != UCS_OK) {
      *error = UcsMessage(st);
      return nullptr;
    }
    return memh;
  };
  registrar.unmap = [ctx](void* memh) { ucp_mem_unmap(ctx->context, static_cast<ucp_mem_h>(memh)); };
  std::string error;
  // The gather kernel is opt-in until it has run on a GPU (test/gpu/RESULTS.md): KVWIRE_CUDA_GATHER=1.
  const char* gather = getenv("KVWIRE_CUDA_GATHER");
  opts_.cuda.gather = gather != nullptr && std::strcmp(gather, "1") == 0;
  auto warn = [this](std::string text) {
    EngineEvent w{EngineEvent::Kind::kWarning};
    w.text = std::move(text);
    Emit(std::move(w));
  };
  cuda_ = cuda::CreatePlane(opts_.cuda, std::move(registrar), warn, &error);  // null without a driver
#endif
}

bool UcxEngine::RegisterDevice(uint32_t id, const std::string& label, const cuda::DeviceRange& range, Access access,
                               std::string* rkey, std::string* error) {
  ucp_mem_h memh = nullptr;
  if (ucxCudaMemory_) {
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_PROT |
                    UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
    mp.address = reinterpret_cast<void*>(range.pointer);
    mp.length = range.length;
    mp.prot = ProtFor(access);
    mp.memory_type = UCS_MEMORY_TYPE_CUDA;
    if (ucp_mem_map(context_, &mp, &memh) != UCS_OK) memh = nullptr;  // IPC and staging still work
  }
  std::shared_ptr<ContextRef> ctx = ctxRef_;
  auto unmap = [ctx](ucp_mem_h m) {
    if (m != nullptr) ucp_mem_unmap(ctx->context, m);
  };
  return AddRegion(id, label, reinterpret_cast<uint8_t*>(range.pointer), range.length, access, memh, rkey, error, unmap,
                   range.device);
}

bool UcxEngine::SetupPeerCuda(Outbound& ob, std::string* error) {
  auto pc = std::make_shared<cuda::PeerCuda>();
  const PeerInfo& info = *ob.info;
  pc->sameProcess = ob.sameHost && info.pid == static_cast<uint32_t>(getpid()) && info.pidStart == opts_.pidStart;
  bool remoteDevice = false, remoteRkeys = true;
  for (auto& [id, rr] : info.regions) {
    if (rr->device < 0) continue;
    remoteDevice = true;
    if (rr->rkey.empty()) remoteRkeys = false;
  }
  const std::string& asked = opts_.cuda.path;
  // UCX moving device memory itself needs its one-sided operations, which kvwire no longer enables
  // (a target cannot check them): that path is gone, whatever this UCX was built with.
  (void)remoteRkeys;
  const bool ucxOk = false;
  const bool ipcOk = cuda_ != nullptr && ob.sameHost;
  if (asked == "ucx" && !ucxOk) {
    *error = !ucxCudaMemory_ ? "cuda path 'ucx' was asked for, but this UCX has no CUDA transports (see kvwire info)"
                             : "cuda path 'ucx' is not available: kvwire does not use UCX's one-sided operations, "
                               "which a target cannot check; use 'ipc' or 'staging'";
    return false;
  }
  if (asked == "ipc" && !ipcOk) {
    *error = cuda_ == nullptr ? "cuda path 'ipc' was asked for, but CUDA is unavailable here"
                              : "cuda path 'ipc' was asked for, but '" + info.name + "' runs on another host";
    return false;
  }
  if (asked == "ucx" || (asked == "auto" && ucxOk)) pc->path = cuda::Path::kUcx;
  else if (asked == "ipc" || (asked == "auto" && ipcOk)) pc->path = cuda::Path::kIpc;
  else pc->path = cuda::Path::kStaging;

#ifdef KVWIRE_HAVE_CUDA_HEADERS
  if (pc->path == cuda::Path::kIpc && remoteDevice && !pc->sameProcess) {
    // Open every exported allocation now: it costs milliseconds, which a transfer should not pay.
    std::string failures;
    for (auto& [id, rr] : info.regions) {
      if (rr->device < 0 || rr->ipcHandle.size() != cuda::kIpcHandleBytes) continue;
      cuda::IpcHandle h;
      std::copy(rr->ipcHandle.begin(), rr->ipcHandle.end(), h.begin());
      int local = cuda_->DeviceByBusId(rr->busId);
      std::string why;
      auto m = cuda_->ipc().Open(h, local >= 0 ? local : 0, &why);
      if (m) {
        pc->mappings[id] = std::move(m);
      } else if (failures.empty()) {
        failures = why;
      }
    }
    if (!failures.empty()) {
      if (asked == "ipc") {
        *error =
            "cuda path 'ipc' was asked for, but the device memory of '" + info.name + "' cannot be mapped: " + failures;
        return false;
      }
      pc->path = cuda::Path::kStaging;
      pc->mappings.clear();
      EngineEvent w{EngineEvent::Kind::kWarning};
      w.text = "peer '" + info.name + "': CUDA IPC is unavailable (" + failures +
               "); its device memory is reached by host staging";
      Emit(std::move(w));
    }
  }
#else
  (void)remoteDevice;
#endif
  ob.cuda = std::move(pc);
  return true;
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX
