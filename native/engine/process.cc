#include "engine/process.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace kvwire {

uint64_t ProcessStartTime(uint32_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return 0;
  // The command name (field 2) is in parentheses and may contain spaces: parse after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields after the name start at 3; the start time is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

bool SameUser(uint32_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("Uid:", 0) != 0) continue;
    std::istringstream fields(line.substr(4));
    unsigned long real = 0, effective = 0;
    if (!(fields >> real >> effective)) return false;
    return real == geteuid() && effective == geteuid();
  }
  return false;
}

std::string HostId() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string boot;
  std::ifstream b("/proc/sys/kernel/random/boot_id");
  std::getline(b, boot);
  char ns[128] = {0};
  ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
  std::string pidns = n > 0 ? std::string(ns, static_cast<size_t>(n)) : "";
  return std::string(host) + "/" + boot + "/" + pidns;
}

}  // namespace kvwire
