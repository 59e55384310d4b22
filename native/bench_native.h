#pragma once
#include <napi.h>

namespace kvwire {

Napi::Value MemcpyBandwidth(const Napi::CallbackInfo& info);
Napi::Value MonotonicNs(const Napi::CallbackInfo& info);
Napi::Value PageOffset(const Napi::CallbackInfo& info);

}  // namespace kvwire
