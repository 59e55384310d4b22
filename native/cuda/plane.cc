#include "cuda/plane.h"

#include "cuda/bounce_pool.h"
#include "cuda/ipc_cache.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <deque>

#include "cuda/context.h"
#include "cuda/driver.h"

namespace kvwire::cuda {

namespace {

class PlaneImpl final : public Plane {
 public:
  PlaneImpl(const PlaneOptions& opts, HostRegistrar registrar)
      : opts_(opts),
        registrar_(std::move(registrar)),
        initiator_(opts.chunkBytes, opts.buffers, &registrar_),
        target_(opts.chunkBytes, opts.buffers, &registrar_) {}

  ~PlaneImpl() override {
    Drain();
    const Driver& d = GetDriver();
    for (size_t dev = 0; dev < devices_.size(); ++dev) {
      Device& dv = devices_[dev];
      if (dv.stream == nullptr) continue;
      ScopedContext ctx(static_cast<int>(dev));
      for (CUevent e : dv.events) d.cuEventDestroy(e);
      d.cuStreamDestroy(dv.stream);
    }
  }

  const PlaneOptions& options() const override { return opts_; }

  bool Submit(int device, const std::vector<CopyOp>& ops, Done done, std::string* error) override {
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
    for (const CopyOp& op : ops) {
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
      *error = Describe("recording a CUDA event", r);
      return false;
    }
    pending_.push_back(Pending{ev, device, std::move(done), std::move(failure)});
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
  };
  struct Pending {
    CUevent event;
    int device;
    Done done;
    std::string failure;  // a copy after the first ones failed to queue
  };

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
  BouncePool initiator_, target_;
  IpcCache ipc_;
  std::vector<Device> devices_;
  std::deque<Pending> pending_;
};

}  // namespace

PlanePtr CreatePlane(const PlaneOptions& opts, HostRegistrar registrar, std::string* error) {
  const Driver& d = GetDriver();
  if (!d.loaded) {
    *error = d.reason;
    return nullptr;
  }
  return PlanePtr(new PlaneImpl(opts, std::move(registrar)));
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
