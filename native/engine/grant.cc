#include "engine/grant.h"

#include <algorithm>
#include <cstring>

namespace kvwire {

GrantWriter::GrantWriter(bool oneSided, uint32_t highestId, const std::string& name) {
  uint16_t flags = oneSided ? kGrantOneSided : 0;
  uint32_t zero = 0;
  uint16_t nameLen = static_cast<uint16_t>(std::min<size_t>(name.size(), 1024));
  Put(&kGrantMagic, 4);
  Put(&kGrantVersion, 2);
  Put(&flags, 2);
  Put(&highestId, 4);
  Put(&zero, 4);  // count, patched by Finish
  Put(&nameLen, 2);
  Put(name.data(), nameLen);
}

void GrantWriter::Add(uint32_t id, uint8_t kind, uint64_t length, uint64_t base, const std::string& label,
                      const std::string& key) {
  uint32_t keyLen = static_cast<uint32_t>(key.size());
  uint16_t labelLen = static_cast<uint16_t>(std::min<size_t>(label.size(), 1024));
  Put(&id, 4);
  Put(&kind, 1);
  Put(&length, 8);
  Put(&base, 8);
  Put(&labelLen, 2);
  Put(label.data(), labelLen);
  Put(&keyLen, 4);
  out_ += key;
  ++count_;
}

std::string GrantWriter::Finish() {
  std::memcpy(&out_[12], &count_, 4);
  return out_;
}

}  // namespace kvwire
