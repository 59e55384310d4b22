// Device memory that callers register: validation with the driver's pointer attributes, and the
// IPC handle a same-host peer opens to reach it.
//
// Hazard guarded: a bad pointer. A host pointer, a freed or foreign address, a range that runs
// past its allocation, or memory of another device is refused here with the driver's reason,
// before any transport or copy sees it; nothing is ever dereferenced on the host.
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace kvwire::cuda {

inline constexpr size_t kIpcHandleBytes = 64;
using IpcHandle = std::array<uint8_t, kIpcHandleBytes>;

// Where a validated range lives: the allocation that holds it.
struct DeviceRange {
  uint64_t pointer = 0;  // first byte of the range
  uint64_t length = 0;
  int device = -1;
  uint64_t allocBase = 0;  // the allocation holding it (cuMemGetAddressRange)
  uint64_t allocSize = 0;
};

// Checks that [pointer, pointer + length) is device memory of `device` inside one allocation.
// Returns false with a message that says what is wrong and what to pass instead.
bool ValidateDeviceRange(uint64_t pointer, uint64_t length, int device, DeviceRange* out, std::string* error);

// Exports the IPC handle of the allocation holding `range`. False (with the reason) when the
// driver cannot export it (e.g. memory from cuMemCreate or a pool without IPC support): peers then
// reach the region by staging.
bool ExportIpcHandle(const DeviceRange& range, IpcHandle* handle, std::string* error);

}  // namespace kvwire::cuda
