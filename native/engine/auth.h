// Authentication of the engine's handshake with a secret the agents share (AgentOptions.auth).
//
// The JavaScript side derives a 32-byte key and an 8-byte key id from each secret (one is the
// signing key, the others are still accepted: rotation) and hands them to the engine. Messages
// are authenticated with HMAC-SHA256 under a per-message domain string, so a MAC of one kind of
// message is never valid as another kind. Hellos carry a timestamp and a nonce: a target accepts
// one only within a window of its own clock, and only once (ReplayWindow).
//
// Pure C++17, no UCX, no Node-API (the reliability suite fuzzes the handshake parsing with it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/sha256.h"

namespace kvwire {

struct AuthKey {
  std::string id;   // 8 bytes
  std::string key;  // 32 bytes
};

// The keys an engine holds: keys[0] signs; any of them verifies.
class AuthKeys {
 public:
  AuthKeys() = default;
  explicit AuthKeys(std::vector<AuthKey> keys) : keys_(std::move(keys)) {}
  bool enabled() const { return !keys_.empty(); }
  const AuthKey& signer() const { return keys_.front(); }
  // The index of the key with this 8-byte id, or -1.
  int Find(const uint8_t* id) const;
  const AuthKey& at(int i) const { return keys_[static_cast<size_t>(i)]; }

 private:
  std::vector<AuthKey> keys_;
};

// HMAC-SHA256 under `key` of `domain` followed by `parts` (pointer, length pairs).
Digest Mac(const std::string& key, const char* domain, std::initializer_list<std::pair<const void*, size_t>> parts);

// Nonces of handshakes seen recently: a replayed hello within the window is refused. Bounded (the
// oldest are forgotten first): only holders of a key can produce entries, so the bound guards
// against bugs, not attackers.
class ReplayWindow {
 public:
  ReplayWindow(uint64_t windowMs, size_t maxEntries) : windowMs_(windowMs), max_(maxEntries) {}
  // True when (nonce, tsMs) is fresh at `nowMs` (within the window and never seen); records it.
  bool Admit(const uint8_t* nonce, size_t len, uint64_t tsMs, uint64_t nowMs);
  uint64_t windowMs() const { return windowMs_; }

 private:
  uint64_t windowMs_;
  size_t max_;
  std::unordered_map<std::string, uint64_t> seen_;  // nonce -> forget after (ms)
  std::deque<std::pair<std::string, uint64_t>> order_;
};

// Random bytes from the kernel (getrandom); false if it failed.
bool RandomBytes(void* out, size_t len);
uint64_t RandomToken();  // never 0

// Milliseconds since the epoch (wall clock: handshake timestamps compare across hosts).
uint64_t WallMs();

}  // namespace kvwire
