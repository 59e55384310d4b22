#include "cuda/cuda_api.h"

#include <cmath>
#include <mutex>
#include <unordered_map>

#include "agent.h"
#include "cuda/context.h"
#include "cuda/device_memory.h"
#include "cuda/driver.h"
#include "engine/types.h"

namespace kvwire::cuda {

namespace {

void RequireDriver(Napi::Env env) {
  const Driver& d = GetDriver();
  if (!d.loaded) ThrowCode(env, code::kUnsupported, "CUDA is unavailable: " + d.reason);
}

int DeviceArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    ThrowCode(info.Env(), code::kInvalidArgument, "device must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 1024 || std::floor(v) != v) {
    ThrowCode(info.Env(), code::kInvalidArgument, "device must be a non-negative integer");
  }
  return static_cast<int>(v);
}

uint64_t PointerArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsBigInt())
    ThrowCode(info.Env(), code::kInvalidArgument, "pointer must be a bigint");
  bool lossless = false;
  uint64_t p = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowCode(info.Env(), code::kInvalidArgument, "pointer does not fit in 64 bits");
  return p;
}

uint64_t LengthArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    ThrowCode(info.Env(), code::kInvalidArgument, "length must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 1) || v > 9007199254740991.0 || std::floor(v) != v) {
    ThrowCode(info.Env(), code::kInvalidArgument, "length must be a positive integer");
  }
  return static_cast<uint64_t>(v);
}

// Allocations made through cuda.alloc, so free() never frees what it did not allocate (or twice).
std::mutex g_mu;
std::unordered_map<uint64_t, int>& Allocations() {
  static auto* m = new std::unordered_map<uint64_t, int>();  // process lifetime
  return *m;
}

#ifdef KVWIRE_HAVE_CUDA_HEADERS
// Validates [pointer, pointer + length) as device memory of `device` and enters its context.
void RequireRange(Napi::Env env, int device, uint64_t pointer, uint64_t length) {
  DeviceRange range;
  std::string error;
  if (!ValidateDeviceRange(pointer, length, device, &range, &error)) ThrowCode(env, code::kInvalidArgument, error);
}

void Check(Napi::Env env, const char* what, CUresult r) {
  if (r != CUDA_SUCCESS) ThrowCode(env, code::kTransport, Describe(what, r));
}
#endif

Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireDriver(env);
  Napi::Array out = Napi::Array::New(env);
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  const Driver& d = GetDriver();
  for (int i = 0; i < d.devices; ++i) {
    CUdevice dev = 0;
    if (d.cuDeviceGet(&dev, i) != CUDA_SUCCESS) continue;
    char name[256] = {0};
    char bus[64] = {0};
    size_t total = 0;
    d.cuDeviceGetName(name, sizeof name, dev);
    d.cuDeviceGetPCIBusId(bus, sizeof bus, dev);
    d.cuDeviceTotalMem(&total, dev);
    Napi::Object o = Napi::Object::New(env);
    o.Set("ordinal", i);
    o.Set("name", name);
    o.Set("pciBusId", bus);
    o.Set("totalBytes", static_cast<double>(total));
    out.Set(out.Length(), o);
  }
#endif
  return out;
}

// alloc(device, bytes) -> bigint
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireDriver(env);
  int device = DeviceArg(info, 0);
  uint64_t bytes = LengthArg(info, 1);
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  ScopedContext ctx(device);
  if (!ctx.ok()) ThrowCode(env, code::kInvalidArgument, ctx.error());
  CUdeviceptr p = 0;
  CUresult r = GetDriver().cuMemAlloc(&p, bytes);
  if (r != CUDA_SUCCESS) {
    ThrowCode(
        env, r == CUDA_ERROR_OUT_OF_MEMORY ? code::kCapacity : code::kTransport,
        Describe(("allocating " + std::to_string(bytes) + " bytes on CUDA device " + std::to_string(device)).c_str(),
                 r));
  }
  {
    std::lock_guard lock(g_mu);
    Allocations()[p] = device;
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(p));
#else
  (void)device;
  (void)bytes;
  return env.Undefined();
#endif
}

// free(pointer): only pointers cuda.alloc returned, once.
Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireDriver(env);
  uint64_t p = PointerArg(info, 0);
  int device = -1;
  {
    std::lock_guard lock(g_mu);
    auto it = Allocations().find(p);
    if (it == Allocations().end()) {
      ThrowCode(env, code::kInvalidArgument,
                "cuda.free: this pointer was not returned by cuda.alloc (or was freed already)");
    }
    device = it->second;
    Allocations().erase(it);
  }
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  ScopedContext ctx(device);
  if (!ctx.ok()) ThrowCode(env, code::kTransport, ctx.error());
  Check(env, "freeing device memory", GetDriver().cuMemFree(p));
#endif
  return env.Undefined();
}

// copy(direction, device, pointer, bytes): direction 0 host -> device, 1 device -> host. Synchronous.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireDriver(env);
  if (info.Length() < 4 || !info[0].IsNumber() || !info[3].IsTypedArray()) {
    ThrowCode(env, code::kInvalidArgument, "copy(direction, device, pointer, bytes: Uint8Array): bad arguments");
  }
  int toHost = info[0].As<Napi::Number>().Int32Value();
  int device = DeviceArg(info, 1);
  uint64_t p = PointerArg(info, 2);
  Napi::TypedArray ta = info[3].As<Napi::TypedArray>();
  size_t n = ta.ByteLength();
  if (n == 0) return env.Undefined();
  uint8_t* host = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  RequireRange(env, device, p, n);
  ScopedContext ctx(device);
  const Driver& d = GetDriver();
  if (toHost != 0) Check(env, "copying device memory to the host", d.cuMemcpyDtoH(host, p, n));
  else Check(env, "copying host memory to the device", d.cuMemcpyHtoD(p, host, n));
#else
  (void)toHost;
  (void)host;
#endif
  return env.Undefined();
}

// memset(device, pointer, value, length). Synchronous.
Napi::Value Memset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireDriver(env);
  int device = DeviceArg(info, 0);
  uint64_t p = PointerArg(info, 1);
  if (info.Length() < 4 || !info[2].IsNumber()) ThrowCode(env, code::kInvalidArgument, "value must be a number 0..255");
  uint32_t value = info[2].As<Napi::Number>().Uint32Value();
  if (value > 255) ThrowCode(env, code::kInvalidArgument, "value must be a number 0..255");
  uint64_t n = LengthArg(info, 3);
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  RequireRange(env, device, p, n);
  ScopedContext ctx(device);
  Check(env, "setting device memory", GetDriver().cuMemsetD8(p, static_cast<unsigned char>(value), n));
#endif
  return env.Undefined();
}

}  // namespace

Napi::Value Baseline(const Napi::CallbackInfo& info);  // cuda/baseline.cc

Napi::Object InitApi(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("devices", Napi::Function::New<Devices>(env, "devices"));
  o.Set("alloc", Napi::Function::New<Alloc>(env, "alloc"));
  o.Set("free", Napi::Function::New<Free>(env, "free"));
  o.Set("copy", Napi::Function::New<Copy>(env, "copy"));
  o.Set("memset", Napi::Function::New<Memset>(env, "memset"));
  o.Set("baseline", Napi::Function::New<Baseline>(env, "baseline"));
  return o;
}

}  // namespace kvwire::cuda
