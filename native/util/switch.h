// KVWIRE_* switches read from the environment: one rule for all of them.
#pragma once
#include <cstdlib>
#include <cstring>

namespace kvwire {

// A KVWIRE_* switch: on unless the environment sets it to "0".
inline bool SwitchOn(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}

}  // namespace kvwire
