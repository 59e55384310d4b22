// The kvwire addon: NativeAgent, capabilities(), processIdentity(), the cuda helpers and bench baselines.
// lib/native.ts is its typed face; everything ergonomic lives in TypeScript above it.
#include <napi.h>
#include <unistd.h>

#include "agent.h"
#include "bench_native.h"
#include "capabilities.h"
#include "cuda/cuda_api.h"
#include "engine/process.h"
#include "engine/ucx_memory_hooks.h"

namespace {

Napi::Value ProcessIdentity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  uint32_t pid = static_cast<uint32_t>(getpid());
  o.Set("pid", pid);
  o.Set("pidStart", static_cast<double>(kvwire::ProcessStartTime(pid)));
  o.Set("hostId", kvwire::HostId());
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeAgent", kvwire::Agent::Init(env));
  exports.Set("capabilities", Napi::Function::New<kvwire::Capabilities>(env, "capabilities"));
  exports.Set("processIdentity", Napi::Function::New<ProcessIdentity>(env, "processIdentity"));
  exports.Set("memcpyBandwidth", Napi::Function::New<kvwire::MemcpyBandwidth>(env, "memcpyBandwidth"));
  exports.Set("cuda", kvwire::cuda::InitApi(env));
  exports.Set("monotonicNs", Napi::Function::New<kvwire::MonotonicNs>(env, "monotonicNs"));
  exports.Set("pageOffset", Napi::Function::New<kvwire::PageOffset>(env, "pageOffset"));
  exports.Set("contract", kvwire::ContractObject(env));
#ifdef KVWIRE_HAVE_UCX
  exports.Set("hasUcx", Napi::Boolean::New(env, true));
  // Read at the process's first module init, before any agent: what UCX did when it loaded.
  exports.Set("ucxMemoryHooks", Napi::Boolean::New(env, kvwire::UcxMemoryHooksAtLoad()));
#else
  exports.Set("hasUcx", Napi::Boolean::New(env, false));
  exports.Set("ucxMemoryHooks", Napi::Boolean::New(env, false));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(kvwire, Init)
