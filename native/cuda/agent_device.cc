// NativeAgent.registerDevice(id, label, pointer: bigint, length, device, access)
//   -> { base: bigint, rkey: Buffer, allocBase: bigint, allocSize, ipcHandle?: Buffer, ipcError?,
//        busId, stagingChunk }
// Validates the range with the driver (it must lie in one allocation of `device`), exports the IPC
// handle of that allocation for same-host peers, and registers the region with the engine.
// lib/transport/device-key.ts turns the result into the region key peers find in the metadata.
#include <cmath>

#include "agent.h"
#include "cuda/device_memory.h"
#include "cuda/driver.h"
#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include "cuda/context.h"
#endif

namespace kvwire {

Napi::Value Agent::RegisterDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckAgentTag(info);
  if (closed()) ThrowCode(env, code::kClosed, "the agent is closed; create a new one with Agent.create()");
  if (info.Length() < 6 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsBigInt() || !info[3].IsNumber() ||
      !info[4].IsNumber() || !info[5].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "registerDevice(id, label, pointer, length, device, access): bad arguments");
  }
  const cuda::Driver& d = cuda::GetDriver();
  if (!d.loaded) ThrowCode(env, code::kUnsupported, "CUDA is unavailable: " + d.reason);
  bool lossless = false;
  uint64_t pointer = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
  double length = info[3].As<Napi::Number>().DoubleValue();
  double device = info[4].As<Napi::Number>().DoubleValue();
  uint32_t access = info[5].As<Napi::Number>().Uint32Value();
  if (!lossless || !(length >= 1) || length > 9007199254740991.0 || std::floor(length) != length || !(device >= 0) ||
      device > 1024 || std::floor(device) != device || access > kAccessReadWrite) {
    ThrowCode(env, code::kInvalidArgument, "registerDevice: pointer, length, device or access out of range");
  }
  cuda::DeviceRange range;
  std::string error;
  if (!cuda::ValidateDeviceRange(pointer, static_cast<uint64_t>(length), static_cast<int>(device), &range, &error)) {
    ThrowCode(env, code::kInvalidArgument, error);
  }
  Napi::Object out = Napi::Object::New(env);
  cuda::IpcHandle handle;
  std::string ipcError;
  if (access != kAccessNone) {  // only exported regions need a handle
    if (cuda::ExportIpcHandle(range, &handle, &ipcError)) {
      out.Set("ipcHandle", Napi::Buffer<uint8_t>::Copy(env, handle.data(), handle.size()));
    } else {
      out.Set("ipcError", ipcError);
    }
  }
#ifdef KVWIRE_HAVE_UCX
  std::string rkey;
  if (!engine_->RegisterDevice(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::String>().Utf8Value(), range,
                               static_cast<Access>(access), &rkey, &error)) {
    ThrowCode(env, code::kTransport, error);
  }
  out.Set("rkey", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(rkey.data()), rkey.size()));
  out.Set("stagingChunk", static_cast<double>(engine_->stagingChunkBytes()));
#endif
  out.Set("base", Napi::BigInt::New(env, range.pointer));
  out.Set("allocBase", Napi::BigInt::New(env, range.allocBase));
  out.Set("allocSize", static_cast<double>(range.allocSize));
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  CUdevice dev = 0;
  char bus[64] = {0};
  if (d.cuDeviceGet(&dev, range.device) == CUDA_SUCCESS &&
      d.cuDeviceGetPCIBusId(bus, sizeof bus, dev) == CUDA_SUCCESS) {
    out.Set("busId", std::string(bus));
  }
#endif
  return out;
}

}  // namespace kvwire
