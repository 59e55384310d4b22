// cuda.baseline(kind, device, bytes, iterations) -> Promise<{ seconds, gbps }>: the copy bandwidth
// the bench compares kvwire with, measured in the same run: device-to-device (cuMemcpyDtoDAsync),
// pinned host-to-device and device-to-pinned-host, `iterations` back-to-back copies of `bytes` on
// one stream, timed with CUDA events. Runs on a worker thread: the event loop never waits for it.
//
// The device side rotates over distinct slices of at least 256 MiB in all, as the bench's rows
// move distinct blocks: copying one buffer again and again measures the GPU's L2 cache (50-60 MB
// on an H100 or H200), not its memory. On an H100, 16 MiB copied in place ran at 1.78 TB/s, more
// than its HBM3 can move for a copy (reads plus writes).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "agent.h"
#include "cuda/context.h"
#include "cuda/driver.h"
#include "engine/types.h"

namespace kvwire::cuda {

namespace {

constexpr uint64_t kColdBytes = 256ull << 20;  // the device-side footprint the copies rotate over

#ifdef KVWIRE_HAVE_CUDA_HEADERS
class BaselineWorker : public Napi::AsyncWorker {
 public:
  BaselineWorker(Napi::Env env, std::string kind, int device, uint64_t bytes, uint32_t iterations)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        kind_(std::move(kind)),
        device_(device),
        bytes_(bytes),
        iterations_(iterations) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const Driver& d = GetDriver();
    ScopedContext ctx(device_);
    if (!ctx.ok()) return SetError(ctx.error());
    CUdeviceptr dev[2] = {0, 0};
    void* host = nullptr;
    CUstream stream = nullptr;
    CUevent ev[2] = {nullptr, nullptr};
    std::string err;
    auto check = [&](const char* what, CUresult r) {
      if (r != CUDA_SUCCESS && err.empty()) err = Describe(what, r);
      return r == CUDA_SUCCESS;
    };
    bool dtod = kind_ == "dtod";
    const uint64_t slices = std::min<uint64_t>((kColdBytes + bytes_ - 1) / bytes_, iterations_ + 2ull);
    bool ok =
        check("allocating device memory", d.cuMemAlloc(&dev[0], bytes_ * slices)) &&
        (!dtod || check("allocating device memory", d.cuMemAlloc(&dev[1], bytes_ * slices))) &&
        (dtod || check("allocating pinned host memory", d.cuMemHostAlloc(&host, bytes_, CU_MEMHOSTALLOC_PORTABLE))) &&
        check("creating a stream", d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING)) &&
        check("creating an event", d.cuEventCreate(&ev[0], CU_EVENT_DEFAULT)) &&
        check("creating an event", d.cuEventCreate(&ev[1], CU_EVENT_DEFAULT));
    uint64_t next = 0;
    auto copy = [&]() -> CUresult {
      const uint64_t off = (next++ % slices) * bytes_;
      if (dtod) return d.cuMemcpyDtoDAsync(dev[1] + off, dev[0] + off, bytes_, stream);
      if (kind_ == "htod") return d.cuMemcpyHtoDAsync(dev[0] + off, host, bytes_, stream);
      return d.cuMemcpyDtoHAsync(host, dev[0] + off, bytes_, stream);
    };
    if (ok) {
      for (int i = 0; i < 2 && ok; ++i) ok = check("copying (warmup)", copy());
      ok = ok && check("recording an event", d.cuEventRecord(ev[0], stream));
      for (uint32_t i = 0; i < iterations_ && ok; ++i) ok = check("copying", copy());
      ok = ok && check("recording an event", d.cuEventRecord(ev[1], stream)) &&
           check("waiting for the copies", d.cuEventSynchronize(ev[1]));
      float ms = 0;
      if (ok && check("timing the copies", d.cuEventElapsedTime(&ms, ev[0], ev[1]))) seconds_ = ms / 1000.0;
    }
    if (stream != nullptr) d.cuStreamSynchronize(stream);
    for (CUevent e : ev)
      if (e != nullptr) d.cuEventDestroy(e);
    if (stream != nullptr) d.cuStreamDestroy(stream);
    for (CUdeviceptr p : dev)
      if (p != 0) d.cuMemFree(p);
    if (host != nullptr) d.cuMemFreeHost(host);
    if (!err.empty()) SetError(err);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    double total = static_cast<double>(bytes_) * iterations_;
    o.Set("seconds", seconds_);
    o.Set("gbps", seconds_ > 0 ? total / seconds_ / 1e9 : 0.0);
    deferred_.Resolve(o);
  }

  void OnError(const Napi::Error& e) override {
    Napi::Error out = Napi::Error::New(Env(), e.Message());
    out.Set("code", Napi::String::New(Env(), code::kTransport));
    deferred_.Reject(out.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string kind_;
  int device_;
  uint64_t bytes_;
  uint32_t iterations_;
  double seconds_ = 0;
};
#endif

}  // namespace

Napi::Value Baseline(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Driver& d = GetDriver();
  if (!d.loaded) ThrowCode(env, code::kUnsupported, "CUDA is unavailable: " + d.reason);
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "baseline(kind, device, bytes, iterations): bad arguments");
  }
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  if (kind != "dtod" && kind != "htod" && kind != "dtoh") {
    ThrowCode(env, code::kInvalidArgument, "baseline kind must be dtod, htod or dtoh");
  }
  double device = info[1].As<Napi::Number>().DoubleValue();
  double bytes = info[2].As<Napi::Number>().DoubleValue();
  double iters = info[3].As<Napi::Number>().DoubleValue();
  if (!(device >= 0) || device >= d.devices || std::floor(device) != device) {
    ThrowCode(env, code::kInvalidArgument, "device must be the ordinal of a visible CUDA device");
  }
  if (!(bytes >= 1) || bytes > 9007199254740991.0 || !(iters >= 1) || iters > 1e7) {
    ThrowCode(env, code::kInvalidArgument, "bytes and iterations must be positive integers");
  }
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  auto* w = new BaselineWorker(env, kind, static_cast<int>(device), static_cast<uint64_t>(bytes),
                               static_cast<uint32_t>(iters));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
#else
  return env.Undefined();
#endif
}

}  // namespace kvwire::cuda
