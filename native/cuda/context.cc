#include "cuda/context.h"

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <mutex>
#include <vector>

#include "cuda/driver.h"

namespace kvwire::cuda {

std::string Describe(const char* what, CUresult r) {
  return std::string(what) + ": " + ErrorText(r);
}

CUcontext PrimaryContext(int device, std::string* error) {
  static std::mutex mu;
  static std::vector<CUcontext>* contexts = new std::vector<CUcontext>();  // process lifetime
  const Driver& d = GetDriver();
  if (!d.loaded) {
    *error = d.reason;
    return nullptr;
  }
  if (device < 0 || device >= d.devices) {
    *error = "CUDA device " + std::to_string(device) + " does not exist (this process sees " +
             std::to_string(d.devices) + " device(s); check CUDA_VISIBLE_DEVICES)";
    return nullptr;
  }
  std::lock_guard lock(mu);
  if (contexts->size() < static_cast<size_t>(d.devices)) contexts->resize(d.devices, nullptr);
  CUcontext& c = (*contexts)[device];
  if (c == nullptr) {
    CUdevice dev = 0;
    CUresult r = d.cuDeviceGet(&dev, device);
    if (r == CUDA_SUCCESS) r = d.cuDevicePrimaryCtxRetain(&c, dev);
    if (r != CUDA_SUCCESS) {
      c = nullptr;
      *error = Describe(("retaining the primary context of CUDA device " + std::to_string(device)).c_str(), r);
      return nullptr;
    }
  }
  return c;
}

ScopedContext::ScopedContext(int device) {
  CUcontext ctx = PrimaryContext(device, &error_);
  if (ctx == nullptr) return;
  const Driver& d = GetDriver();
  d.cuCtxGetCurrent(&previous_);
  if (previous_ != ctx) {
    CUresult r = d.cuCtxSetCurrent(ctx);
    if (r != CUDA_SUCCESS) {
      error_ = Describe("making the CUDA context current", r);
      return;
    }
    switched_ = true;
  }
  ok_ = true;
}

ScopedContext::~ScopedContext() {
  if (switched_) GetDriver().cuCtxSetCurrent(previous_);
}

}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
