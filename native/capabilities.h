// capabilities(): what this build and this machine can do, and why not where they cannot.
#pragma once
#include <napi.h>

namespace kvwire {

Napi::Value Capabilities(const Napi::CallbackInfo& info);

}  // namespace kvwire
