// The `cuda` object of the addon: device queries, allocations, copies and bandwidth baselines for
// tests, the bench and the demo (lib/cuda.ts is its typed face). Every function throws
// ERR_KVWIRE_UNSUPPORTED with the driver's reason when CUDA is unavailable; none ever crashes on a
// bad pointer: each is validated with the driver before use.
#pragma once
#include <napi.h>

namespace kvwire::cuda {

Napi::Object InitApi(Napi::Env env);

}  // namespace kvwire::cuda
