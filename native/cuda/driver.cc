#include "cuda/driver.h"

#include <dlfcn.h>

#include <mutex>

namespace kvwire::cuda {

namespace {

Driver* Load() {
  auto* d = new Driver();  // process-lifetime, immutable once loaded: never freed on purpose
#ifndef KVWIRE_HAVE_CUDA_HEADERS
  d->reason = "kvwire was built without the CUDA toolkit headers (cuda.h); rebuild on a machine with the toolkit";
  return d;
#else
  const char* path = getenv("KVWIRE_LIBCUDA");
  void* h = dlopen(path != nullptr ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* err = dlerror();
    d->reason = std::string("the CUDA driver (libcuda.so.1) is not installed or not loadable: ") +
                (err != nullptr ? err : "unknown error");
    return d;
  }
  bool ok = true;
  std::string missing;
  // Optional symbols are loaded with `load` alone; required ones with `sym`, which lists the missing.
  auto load = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)> >(dlsym(h, name));
  };
  auto sym = [&](auto& fn, const char* name) {
    load(fn, name);
    if (fn == nullptr) {
      ok = false;
      if (!missing.empty()) missing += ", ";
      missing += name;
    }
  };
  sym(d->cuInit, "cuInit");
  sym(d->cuDriverGetVersion, "cuDriverGetVersion");
  sym(d->cuDeviceGetCount, "cuDeviceGetCount");
  sym(d->cuDeviceGet, "cuDeviceGet");
  sym(d->cuDeviceGetName, "cuDeviceGetName");
  sym(d->cuDeviceGetAttribute, "cuDeviceGetAttribute");
  sym(d->cuDeviceTotalMem, "cuDeviceTotalMem_v2");
  sym(d->cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId");
  sym(d->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  sym(d->cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  sym(d->cuCtxSetCurrent, "cuCtxSetCurrent");
  sym(d->cuCtxGetCurrent, "cuCtxGetCurrent");
  sym(d->cuMemAlloc, "cuMemAlloc_v2");
  sym(d->cuMemFree, "cuMemFree_v2");
  sym(d->cuMemAllocHost, "cuMemAllocHost_v2");
  sym(d->cuMemHostAlloc, "cuMemHostAlloc");
  sym(d->cuMemFreeHost, "cuMemFreeHost");
  sym(d->cuMemHostRegister, "cuMemHostRegister_v2");
  sym(d->cuMemHostUnregister, "cuMemHostUnregister");
  sym(d->cuMemcpy, "cuMemcpy");
  sym(d->cuMemcpyAsync, "cuMemcpyAsync");
  sym(d->cuMemcpyHtoD, "cuMemcpyHtoD_v2");
  sym(d->cuMemcpyDtoH, "cuMemcpyDtoH_v2");
  sym(d->cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  sym(d->cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  sym(d->cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
  sym(d->cuMemsetD8, "cuMemsetD8_v2");
  sym(d->cuMemGetAddressRange, "cuMemGetAddressRange_v2");
  sym(d->cuPointerGetAttribute, "cuPointerGetAttribute");
  sym(d->cuIpcGetMemHandle, "cuIpcGetMemHandle");
  sym(d->cuIpcOpenMemHandle, "cuIpcOpenMemHandle_v2");
  sym(d->cuIpcCloseMemHandle, "cuIpcCloseMemHandle");
  sym(d->cuStreamCreate, "cuStreamCreate");
  sym(d->cuStreamDestroy, "cuStreamDestroy_v2");
  sym(d->cuStreamSynchronize, "cuStreamSynchronize");
  sym(d->cuStreamQuery, "cuStreamQuery");
  sym(d->cuEventCreate, "cuEventCreate");
  sym(d->cuEventDestroy, "cuEventDestroy_v2");
  sym(d->cuEventRecord, "cuEventRecord");
  sym(d->cuEventQuery, "cuEventQuery");
  sym(d->cuEventSynchronize, "cuEventSynchronize");
  sym(d->cuEventElapsedTime, "cuEventElapsedTime");
  sym(d->cuGetErrorString, "cuGetErrorString");
  sym(d->cuGetErrorName, "cuGetErrorName");
  if (!ok) {
    d->reason = "the CUDA driver is too old or incomplete: missing " + missing;
    return d;
  }
  load(d->cuModuleLoadData, "cuModuleLoadData");
  load(d->cuModuleUnload, "cuModuleUnload");
  load(d->cuModuleGetFunction, "cuModuleGetFunction");
  load(d->cuLaunchKernel, "cuLaunchKernel");
  CUresult r = d->cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    d->cuGetErrorName(r, &name);
    d->reason = std::string("cuInit failed: ") + (name != nullptr ? name : std::to_string(r).c_str()) +
                " (is a GPU visible to this process? check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    return d;
  }
  d->cuDriverGetVersion(&d->version);
  d->cuDeviceGetCount(&d->devices);
  d->loaded = true;
  return d;
#endif
}

}  // namespace

const Driver& GetDriver() {
  static std::once_flag once;
  static Driver* driver = nullptr;
  std::call_once(once, [] { driver = Load(); });
  return *driver;
}

std::string ErrorText(int result) {
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  const Driver& d = GetDriver();
  if (d.cuGetErrorName != nullptr) {
    const char* name = nullptr;
    const char* text = nullptr;
    d.cuGetErrorName(static_cast<CUresult>(result), &name);
    d.cuGetErrorString(static_cast<CUresult>(result), &text);
    return std::string(name != nullptr ? name : "CUDA_ERROR") + ": " + (text != nullptr ? text : "unknown");
  }
#endif
  return "CUDA error " + std::to_string(result);
}

}  // namespace kvwire::cuda
