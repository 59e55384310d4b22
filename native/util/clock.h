// Monotonic time in nanoseconds, the one clock every deadline and telemetry stamp uses.
#pragma once
#include <time.h>

#include <cstdint>

namespace kvwire {

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace kvwire
