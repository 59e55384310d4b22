// libFuzzer harness for the native worker-address check (native/engine/address_check.cc): the
// parser that stands between a peer's metadata or hello and UCX's ucp_address_unpack, which trusts
// its input. Built by ../native-fuzz.test.ts with clang -fsanitize=fuzzer,address,undefined from
// the project's own source, and run over a seed corpus of genuine addresses (tcp, shared memory,
// all transports) taken from real agents.
//
// Besides "no crash, no hang, no sanitizer report", every input is checked for:
//   - every rejection has a reason (the refusal is typed: it reaches JavaScript as a message);
//   - the parser and the check agree: an address the parser accepts passes the check without rules,
//     and one it refuses fails it;
//   - with rules from a genuine address (the first 4 bytes of the input choose one from the corpus
//     through LLVMFuzzerInitialize), an address that passes the rules also passes without them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/address_check.h"

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    // A broken invariant is a finding: abort so libFuzzer saves the input as a crash.
    __builtin_trap();
  }
  (void)what;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string why;
  std::vector<kvwire::AddressEntry> entries;
  const bool parsed = kvwire::ParseWorkerAddress(data, size, &entries, &why);
  Require(parsed || !why.empty(), "a refused address has a reason");

  std::string why2;
  const bool checked = kvwire::CheckWorkerAddress(data, size, &why2, nullptr);
  Require(checked == parsed, "the parser and the check without rules agree");
  Require(checked || !why2.empty(), "a refused address has a reason");

  // The input as its own rules (an agent checking a peer built exactly like itself).
  if (parsed) {
    const kvwire::AddressRules own = kvwire::RulesFromOwnAddress(data, size);
    std::string why3;
    Require(kvwire::CheckWorkerAddress(data, size, &why3, &own), "an address passes the rules it implies");
  }
  return 0;
}
