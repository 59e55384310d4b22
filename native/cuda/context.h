// Primary contexts: the CUDA context kvwire uses on every thread that calls the driver.
//
// kvwire uses each device's primary context (the one the CUDA runtime and PyTorch use), so device
// pointers from the engine's process are valid in it. Each is retained once per process and never
// released: releasing it while another thread (an engine thread, a worker_threads environment)
// still uses it would destroy the allocations made in it, and the runtime keeps it alive anyway.
//
// Hazard guarded: a thread without a current context. Every call into the driver that needs one
// runs inside a ScopedContext, which makes the device's primary context current and restores the
// previous one on exit (a caller's own context, e.g. PyTorch's on the same thread, is left as found).
#pragma once
#include <string>

#ifdef KVWIRE_HAVE_CUDA_HEADERS
#include <cuda.h>

namespace kvwire::cuda {

// The retained primary context of `device`, or nullptr with `error` set.
CUcontext PrimaryContext(int device, std::string* error);

class ScopedContext {
 public:
  explicit ScopedContext(int device);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  CUcontext previous_ = nullptr;
  bool ok_ = false;
  bool switched_ = false;
  std::string error_;
};

// "what failed: CUDA_ERROR_X: text" for a driver result.
std::string Describe(const char* what, CUresult r);

}  // namespace kvwire::cuda
#endif  // KVWIRE_HAVE_CUDA_HEADERS
