#include "cuda/plane.h"

#include "cuda/bounce_pool.h"
#include "cuda/ipc_cache.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <deque>

#include "cuda/context.h"
#include "cuda/driver.h"
#include "cuda/gather.h"

namespace kvwire::cuda {

namespace {

class PlaneImpl final : public Plane {
 public:
  PlaneImpl(const PlaneOptions& opts, HostRegistrar registrar, std::function<void(std::string)> warn)
      : opts_(opts),
        registrar_(std::move(registrar)),
        warn_(std::move(warn)),
        initiator_(opts.chunkBytes, opts.buffers, &registrar_),
        target_(opts.chunkBytes, opts.buffers, &registrar_) {}

  ~PlaneImpl() override {
    Drain();
    const Driver& d = GetDriver();
    for (size_t dev = 0; dev < devices_.size(); ++dev) {
      Device& dv = devices_[dev];
      if (dv.stream == nullptr) continue;
      ScopedContext ctx(static_cast<int>(dev));
      dv.gather.reset();
      for (CUevent e : dv.events) d.cuEventDestroy(e);
      d.cuStreamDestroy(dv.stream);
    }
  }

  const PlaneOptions& options() const override { return opts_; }

  bool Submit(int device, const std::vector<CopyOp>& ops, Done done, std::string* error, bool deviceOnly) override {
    Device* dv = DeviceFor(device, error);
    if (dv == nullptr) return false;
    ScopedContext ctx(device);
    if (!ctx.ok()) {
      *error = ctx.error();
      return false;
    }
    const Driver& d = GetDriver();
    std::string failure;
    size_t issued = 0;
    int slot = -1;
    if (deviceOnly && ops.size() >= 2 && Gather(device, *dv) != nullptr) {
      std::string why;
      slot = dv->gather->Launch(ops, dv->stream, &why);
      if (slot >= 0) {
        issued = ops.size();
      } else if (!dv->launchWarned && warn_) {  // this list goes range by range; said once per device
        dv->launchWarned = true;
        warn_("CUDA device " + std::to_string(device) + ": a gather launch failed (" + why +
              "); that list was copied range by range");
      }
    }
    for (size_t i = issued; i < ops.size(); ++i) {
      const CopyOp& op = ops[i];
      CUresult r = d.cuMemcpyAsync(op.dst, op.src, op.bytes, dv->stream);
      if (r != CUDA_SUCCESS) {
        failure = Describe(("queuing a copy of " + std::to_string(op.bytes) + " bytes").c_str(), r);
        break;
      }
      ++issued;
    }
    if (issued == 0) {
      *error = failure;
      return false;
    }
    CUevent ev = TakeEvent(*dv);
    CUresult r = ev == nullptr ? CUDA_ERROR_OUT_OF_MEMORY : d.cuEventRecord(ev, dv->stream);
    if (r != CUDA_SUCCESS) {
      // Copies are queued but cannot be tracked: wait for them here rather than lose them.
      d.cuStreamSynchronize(dv->stream);
      if (ev != nullptr) dv->events.push_back(ev);
      if (slot >= 0) dv->gather->Release(slot);
      *error = Describe("recording a CUDA event", r);
      return false;
    }
    pending_.push_back(Pending{ev, device, std::move(done), std::move(failure), slot});
    return true;
  }

  unsigned Poll() override {
    if (pending_.empty()) return 0;
    const Driver& d = GetDriver();
    std::deque<Pending> batch;
    batch.swap(pending_);
    std::deque<Pending> left;
    unsigned ran = 0;
    for (auto& p : batch) {
      ScopedContext ctx(p.device);  // events belong to their device's context
      CUresult r = d.cuEventQuery(p.event);
      if (r == CUDA_ERROR_NOT_READY) {
        left.push_back(std::move(p));
        continue;
      }
      devices_[p.device].events.push_back(p.event);
      if (p.gatherSlot >= 0) devices_[p.device].gather->Release(p.gatherSlot);
      std::string err = !p.failure.empty() ? p.failure : r == CUDA_SUCCESS ? "" : Describe("a CUDA copy failed", r);
      ++ran;
      p.done(err);  // may Submit: new work lands in pending_, after what is left
    }
    for (auto it = left.rbegin(); it != left.rend(); ++it) pending_.push_front(std::move(*it));
    return ran;
  }

  bool busy() const override { return !pending_.empty(); }

  void Drain() override {
    const Driver& d = GetDriver();
    while (!pending_.empty()) {
      for (auto& p : pending_) {
        ScopedContext ctx(p.device);
        d.cuEventSynchronize(p.event);
      }
      Poll();
    }
  }

  BouncePool& initiatorPool() override { return initiator_; }
  BouncePool& targetPool() override { return target_; }
  IpcCache& ipc() override { return ipc_; }

  int DeviceByBusId(const std::string& busId) override {
    if (busId.empty()) return -1;
    for (int i = 0; i < GetDriver().devices; ++i) {
      if (BusIdOf(i) == busId) return i;
    }
    return -1;
  }

  std::string BusIdOf(int device) override {
    const Driver& d = GetDriver();
    CUdevice dev = 0;
    char bus[64] = {0};
    if (d.cuDeviceGet(&dev, device) != CUDA_SUCCESS || d.cuDeviceGetPCIBusId(bus, sizeof bus, dev) != CUDA_SUCCESS)
      return "";
    return bus;
  }

 private:
  struct Device {
    CUstream stream = nullptr;
    std::vector<CUevent> events;  // completed events, for reuse
    std::unique_ptr<GatherKernel> gather;
    bool gatherTried = false;   // Load() ran (and gather is null when it failed)
    bool launchWarned = false;  // a failed launch was reported
  };
  struct Pending {
    CUevent event;
    int device;
    Done done;
    std::string failure;  // a copy after the first ones failed to queue
    int gatherSlot;       // the gather kernel's table slot, or -1
  };

  // The device's gather kernel, loaded on first use (its context current); nullptr where it is
  // off or the driver cannot load it (said once, as a warning: copies go one by one instead).
  GatherKernel* Gather(int device, Device& dv) {
    if (!opts_.gather) return nullptr;
    if (!dv.gatherTried) {
      dv.gatherTried = true;
      auto g = std::make_unique<GatherKernel>();
      std::string why;
      if (g->Load(device, &why)) dv.gather = std::move(g);
      else if (warn_) warn_("CUDA device " + std::to_string(device) + ": copying range by range (" + why + ")");
    }
    return dv.gather.get();
  }

  Device* DeviceFor(int device, std::string* error) {
    if (device < 0 || device >= GetDriver().devices) {
      *error = "CUDA device " + std::to_string(device) + " does not exist here";
      return nullptr;
    }
    if (devices_.size() <= static_cast<size_t>(device)) devices_.resize(device + 1);
    Device& dv = devices_[device];
    if (dv.stream == nullptr) {
      ScopedContext ctx(device);
      if (!ctx.ok()) {
        *error = ctx.error();
        return nullptr;
      }
      CUresult r = GetDriver().cuStreamCreate(&dv.stream, CU_STREAM_NON_BLOCKING);
      if (r != CUDA_SUCCESS) {
        dv.stream = nullptr;
        *error = Describe("creating a CUDA stream", r);
        return nullptr;
      }
    }
    return &dv;
  }

  CUevent TakeEvent(Device& dv) {
    if (!dv.events.empty()) {
      CUevent e = dv.events.back();
      dv.events.pop_back();
      return e;
    }
    CUevent e = nullptr;
    if (GetDriver().cuEventCreate(&e, CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS) return nullptr;
    return e;
  }

  PlaneOptions opts_;
  HostRegistrar registrar_;
  std::function<void(std::string)> warn_;
  BouncePool initiator_, target_;
  IpcCache ipc_;
  std::vector<Device> devices_;
  std::deque<Pending> pending_;
};

}  // namespace

PlanePtr CreatePlane(const PlaneOptions& opts, HostRegistrar registrar, std::function<void(std::string)> warn,
                     std::string* error) {
  const Driver& d = GetDriver();
  if (!d.loaded) {
    *error = d.reason;
    return nullptr;
  }
  return PlanePtr(new PlaneImpl(opts, std::move(registrar), std::move(warn)));
}

void PlaneDeleter::operator()(Plane* p) const {
  delete p;
}

}  // namespace kvwire::cuda
#else
namespace kvwire::cuda {
void PlaneDeleter::operator()(Plane* p) const {
  delete p;
}
}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
