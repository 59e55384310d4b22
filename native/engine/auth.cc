#include "engine/auth.h"

#include <sys/random.h>

#include <chrono>
#include <algorithm>
#include <cstring>

namespace kvwire {

int AuthKeys::Find(const uint8_t* id) const {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].id.size() == 8 && std::memcmp(keys_[i].id.data(), id, 8) == 0) return static_cast<int>(i);
  }
  return -1;
}

Digest Mac(const std::string& key, const char* domain, std::initializer_list<std::pair<const void*, size_t>> parts) {
  HmacSha256 h(key);
  h.Update(domain, std::strlen(domain) + 1);  // the terminating NUL separates the domain from the data
  for (const auto& [p, n] : parts) h.Update(p, n);
  return h.Final();
}

bool ReplayWindow::Admit(const uint8_t* nonce, size_t len, uint64_t tsMs, uint64_t nowMs) {
  uint64_t skew = tsMs > nowMs ? tsMs - nowMs : nowMs - tsMs;
  if (skew > windowMs_) return false;
  // Forgotten only once strictly past its window: a timestamp exactly windowMs_ old still passes
  // the skew check above, so its nonce must still be remembered then (a replay at that very
  // millisecond was admitted: reliability finding F11).
  while (!order_.empty() && (order_.front().second < nowMs || order_.size() >= max_)) {
    seen_.erase(order_.front().first);
    order_.pop_front();
  }
  std::string key(reinterpret_cast<const char*>(nonce), len);
  if (seen_.count(key) != 0) return false;
  // Remembered until its timestamp leaves the window: a replay after that is refused as stale.
  uint64_t forget = std::max(tsMs, nowMs) + windowMs_;
  seen_.emplace(key, forget);
  order_.emplace_back(std::move(key), forget);
  return true;
}

bool RandomBytes(void* out, size_t len) {
  auto* p = static_cast<uint8_t*>(out);
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

uint64_t RandomToken() {
  uint64_t t = 0;
  while (t == 0) {
    if (!RandomBytes(&t, sizeof t)) {
      // No kernel randomness (never seen on Linux >= 3.17): fall back to the clock mixed by SHA-256.
      Sha256 s;
      uint64_t now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      s.Update(&now, sizeof now);
      Digest d = s.Final();
      std::memcpy(&t, d.data(), sizeof t);
    }
  }
  return t;
}

uint64_t WallMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace kvwire
