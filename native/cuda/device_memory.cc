#include "cuda/device_memory.h"

#include <cstdio>
#include <cstring>

#include "cuda/context.h"
#include "cuda/driver.h"

namespace kvwire::cuda {

namespace {
std::string Hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}
}  // namespace

bool ValidateDeviceRange(uint64_t pointer, uint64_t length, int device, DeviceRange* out, std::string* error) {
#ifndef KVWIRE_HAVE_CUDA_HEADERS
  *error = GetDriver().reason;
  return false;
#else
  const Driver& d = GetDriver();
  if (!d.loaded) {
    *error = "CUDA is unavailable: " + d.reason;
    return false;
  }
  if (pointer == 0 || length == 0) {
    *error = "a device range needs a non-null pointer and a positive length";
    return false;
  }
  if (pointer + length < pointer) {
    *error = "pointer " + Hex(pointer) + " + length " + std::to_string(length) + " overflows the address space";
    return false;
  }
  ScopedContext ctx(device);
  if (!ctx.ok()) {
    *error = ctx.error();
    return false;
  }
  const std::string what = "pointer " + Hex(pointer);
  unsigned int memType = 0;
  CUresult r = d.cuPointerGetAttribute(&memType, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, pointer);
  if (r != CUDA_SUCCESS) {
    *error = what + " is not memory the CUDA driver knows (" + ErrorText(r) +
             "); pass the device address of a live allocation (e.g. tensor.data_ptr() as a bigint)";
    return false;
  }
  if (memType != CU_MEMORYTYPE_DEVICE) {
    *error = what + " is " + (memType == CU_MEMORYTYPE_HOST ? "pinned host memory" : "not device memory") +
             ", not device memory; register host memory as a Buffer instead";
    return false;
  }
  unsigned int managed = 0;
  if (d.cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, pointer) == CUDA_SUCCESS && managed != 0) {
    *error = what + " is managed (unified) memory, which kvwire cannot export; allocate it with cudaMalloc";
    return false;
  }
  int ordinal = -1;
  r = d.cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, pointer);
  if (r != CUDA_SUCCESS) {
    *error = "querying the device of " + what + " failed: " + ErrorText(r);
    return false;
  }
  if (ordinal != device) {
    *error = what + " is memory of CUDA device " + std::to_string(ordinal) + ", not of device " +
             std::to_string(device) + "; pass device: " + std::to_string(ordinal);
    return false;
  }
  CUdeviceptr base = 0;
  size_t size = 0;
  r = d.cuMemGetAddressRange(&base, &size, pointer);
  if (r != CUDA_SUCCESS) {
    *error = "finding the allocation of " + what + " failed: " + ErrorText(r);
    return false;
  }
  uint64_t end = static_cast<uint64_t>(base) + size;
  if (pointer + length > end) {
    *error = "the range " + what + " + " + std::to_string(length) + " bytes runs " +
             std::to_string(pointer + length - end) + " bytes past the end of its allocation (" + Hex(base) + ", " +
             std::to_string(size) + " bytes); at most " + std::to_string(end - pointer) +
             " bytes from this pointer lie inside it";
    return false;
  }
  out->pointer = pointer;
  out->length = length;
  out->device = device;
  out->allocBase = base;
  out->allocSize = size;
  return true;
#endif
}

bool ExportIpcHandle(const DeviceRange& range, IpcHandle* handle, std::string* error) {
#ifndef KVWIRE_HAVE_CUDA_HEADERS
  *error = GetDriver().reason;
  return false;
#else
  const Driver& d = GetDriver();
  ScopedContext ctx(range.device);
  if (!ctx.ok()) {
    *error = ctx.error();
    return false;
  }
  CUipcMemHandle h;
  CUresult r = d.cuIpcGetMemHandle(&h, range.allocBase);
  if (r != CUDA_SUCCESS) {
    *error = "the driver cannot export an IPC handle for this allocation (" + ErrorText(r) +
             "); same-host peers will reach it by host staging";
    return false;
  }
  static_assert(sizeof h.reserved == kIpcHandleBytes, "CUipcMemHandle is 64 bytes");
  std::memcpy(handle->data(), h.reserved, kIpcHandleBytes);
  return true;
#endif
}

}  // namespace kvwire::cuda
