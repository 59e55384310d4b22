// Native baselines for the benchmark: memcpy bandwidth on the same sizes the bench moves, so shared
// memory results can be quoted as a ratio of what one core's copy achieves.
#include "bench_native.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "util/clock.h"

namespace kvwire {

// memcpyBandwidth(bytes, iterations) -> bytes per second
Napi::Value MemcpyBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "memcpyBandwidth(bytes, iterations)");
  }
  size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  int iters = info[1].As<Napi::Number>().Int32Value();
  if (bytes == 0 || bytes > (size_t{1} << 32) || iters <= 0) throw Napi::RangeError::New(env, "bad size or iterations");
  std::vector<uint8_t> src(bytes, 0x5a), dst(bytes, 0);
  std::memcpy(dst.data(), src.data(), bytes);  // fault pages in before timing
  uint64_t t0 = NowNs();
  for (int i = 0; i < iters; ++i) {
    std::memcpy(dst.data(), src.data(), bytes);
    asm volatile("" ::: "memory");
  }
  uint64_t t1 = NowNs();
  double seconds = static_cast<double>(t1 - t0) / 1e9;
  return Napi::Number::New(env, static_cast<double>(bytes) * iters / seconds);
}

// pageOffset(memory: ArrayBuffer | TypedArray | Buffer) -> where its first byte lies in its page,
// so that the bench can register page-aligned host memory, as nixlbench does (posix_memalign).
Napi::Value PageOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* data = nullptr;
  if (info.Length() >= 1 && info[0].IsTypedArray()) {
    Napi::TypedArray t = info[0].As<Napi::TypedArray>();
    data = static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
  } else if (info.Length() >= 1 && info[0].IsArrayBuffer()) {
    data = info[0].As<Napi::ArrayBuffer>().Data();
  } else {
    throw Napi::TypeError::New(env, "pageOffset(memory): an ArrayBuffer or a typed array");
  }
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(data) % page));
}

// monotonicNs() -> the engine's clock, so JS telemetry lines up with engine timestamps
Napi::Value MonotonicNs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(NowNs()));
}

}  // namespace kvwire
