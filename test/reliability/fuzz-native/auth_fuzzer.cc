// libFuzzer harness for the native handshake authentication (native/engine/auth.cc): the replay
// window a target admits hellos through, the MAC every handshake message carries, and the lookup
// of a key by the id a peer names. Built by ../native-fuzz.test.ts with clang
// -fsanitize=fuzzer,address,undefined from the project's own source.
//
// The input is a script of operations (FuzzedDataProvider): hellos with a nonce and a timestamp
// around a clock that moves forward, replays of hellos admitted before, MACs of split data, key
// lookups. Besides "no crash, no hang, no sanitizer report", every operation checks a property:
//   - a hello whose timestamp is outside the window of the clock is refused;
//   - a hello admitted once is never admitted again (a replay), whenever it comes back (the
//     window holds more entries than one input can make, so no entry is forgotten for room);
//   - a MAC is the same however the data is split into parts, and differs under another domain;
//   - a key is found by its id, and an id no key has finds none.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "engine/auth.h"

namespace {

void Require(bool ok) {
  // A broken property is a finding: trap so libFuzzer saves the input as a crash.
  if (!ok) __builtin_trap();
}

struct Admitted {
  std::string nonce;
  uint64_t ts;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const uint64_t window = in.ConsumeIntegralInRange<uint64_t>(1, 120'000);
  kvwire::ReplayWindow replay(window, 1 << 20);
  uint64_t now = in.ConsumeIntegralInRange<uint64_t>(window * 2, uint64_t{1} << 50);
  std::vector<Admitted> admitted;

  while (in.remaining_bytes() > 0) {
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: {  // a hello
        std::string nonce = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(0, 32));
        const int64_t offset =
            in.ConsumeIntegralInRange<int64_t>(-3 * static_cast<int64_t>(window), 3 * static_cast<int64_t>(window));
        const uint64_t ts = static_cast<uint64_t>(static_cast<int64_t>(now) + offset);
        const uint64_t skew = ts > now ? ts - now : now - ts;
        bool replayed = false;  // this very hello (nonce and timestamp) was admitted before
        for (const Admitted& a : admitted) replayed = replayed || (a.nonce == nonce && a.ts == ts);
        const bool ok = replay.Admit(reinterpret_cast<const uint8_t*>(nonce.data()), nonce.size(), ts, now);
        if (skew > window) Require(!ok);
        if (replayed) Require(!ok);
        if (ok) admitted.push_back({std::move(nonce), ts});
        break;
      }
      case 1: {  // time passes, and a hello admitted before comes back unchanged (a replay)
        now += in.ConsumeIntegralInRange<uint64_t>(0, 3 * window);
        if (admitted.empty()) break;
        const Admitted& a = admitted[in.ConsumeIntegralInRange<size_t>(0, admitted.size() - 1)];
        Require(!replay.Admit(reinterpret_cast<const uint8_t*>(a.nonce.data()), a.nonce.size(), a.ts, now));
        break;
      }
      case 2: {  // a MAC of data split in two parts equals the MAC of the whole, and only under its domain
        const std::string key = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(0, 100));
        const std::string whole = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(0, 300));
        const size_t cut = in.ConsumeIntegralInRange<size_t>(0, whole.size());
        const kvwire::Digest one = kvwire::Mac(key, "kvwire-fuzz", {{whole.data(), whole.size()}});
        const kvwire::Digest two =
            kvwire::Mac(key, "kvwire-fuzz", {{whole.data(), cut}, {whole.data() + cut, whole.size() - cut}});
        const kvwire::Digest other = kvwire::Mac(key, "kvwire-fuzz2", {{whole.data(), whole.size()}});
        Require(one == two);
        Require(one != other);
        break;
      }
      default: {  // keys by id
        std::vector<kvwire::AuthKey> keys;
        const size_t n = in.ConsumeIntegralInRange<size_t>(0, 4);
        for (size_t i = 0; i < n; ++i) keys.push_back({in.ConsumeBytesAsString(8), std::string(32, 'k')});
        const std::string id = in.ConsumeBytesAsString(8);
        if (id.size() != 8) break;
        const kvwire::AuthKeys set(keys);
        const int found = set.Find(reinterpret_cast<const uint8_t*>(id.data()));
        int expected = -1;
        for (size_t i = 0; i < keys.size() && expected < 0; ++i)
          if (keys[i].id == id) expected = static_cast<int>(i);
        Require(found == expected);
        break;
      }
    }
  }
  return 0;
}
