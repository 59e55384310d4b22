// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the engine's handshake: the engine thread
// authenticates peers itself, so it cannot borrow Node's crypto (JavaScript) and must not depend
// on an OpenSSL whose symbols the host process may or may not export. Pure C++17, no UCX, no
// Node-API: the reliability suite compiles it into fuzzers and sanitizer builds as is.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvwire {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t len);
  void Update(const std::string& s) { Update(s.data(), s.size()); }
  Digest Final();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// HMAC-SHA256 with `key`, over the concatenation of the parts given to Update().
class HmacSha256 {
 public:
  explicit HmacSha256(const std::string& key);
  void Update(const void* data, size_t len) { inner_.Update(data, len); }
  void Update(const std::string& s) { inner_.Update(s); }
  Digest Final();

 private:
  Sha256 inner_;
  uint8_t outerPad_[64];
};

// Compares two digests in time independent of where they differ (a MAC check must not tell an
// attacker how many leading bytes of a guess were right).
bool DigestEqual(const uint8_t* a, const uint8_t* b, size_t len);

}  // namespace kvwire
