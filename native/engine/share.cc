// Registered host memory that same-host peers map: see share.h.
#include "engine/share.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "util/switch.h"
#include "util/unique_fd.h"

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif

namespace kvwire {

namespace {

constexpr uint8_t kMagic[8] = {'k', 'v', 'w', 's', 'h', 'r', 0x01, 0x00};
// Pages are moved (and moved back) this many bytes at a time: one mapping call each, and never
// more than this much memory held twice.
constexpr uint64_t kChunkBytes = uint64_t{2} << 20;
// Sharing costs a copy of the region's touched pages at registration and back at release (about
// 0.4 and 0.5 ms per MiB on this kind of machine: 1 GiB 0.38 s and 0.6 s): by default only regions
// up to this size are shared. Larger ones (a KV cache of gigabytes, moved in batches of blocks)
// keep cross-memory attach, whose cost per system call is spread over up to 1,024 blocks.
constexpr uint64_t kShareLimit = uint64_t{64} << 20;

uintptr_t PageSize() {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

std::string Errno(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// ---- The process's mappings ---------------------------------------------------------------

// The kernel's PROCMAP_QUERY (Linux 6.11, <linux/fs.h>), declared here for older headers.
struct ProcmapQuery {
  uint64_t size;
  uint64_t query_flags;
  uint64_t query_addr;
  uint64_t vma_start;
  uint64_t vma_end;
  uint64_t vma_flags;
  uint64_t vma_page_size;
  uint64_t vma_offset;
  uint64_t inode;
  uint32_t dev_major;
  uint32_t dev_minor;
  uint32_t vma_name_size;
  uint32_t build_id_size;
  uint64_t vma_name_addr;
  uint64_t build_id_addr;
};
constexpr unsigned long kProcmapQuery = _IOWR('f', 17, ProcmapQuery);
constexpr uint64_t kVmaRead = 1, kVmaWrite = 2, kVmaExec = 4, kVmaShared = 8;

// One mapping of this process, as /proc/self/maps describes it.
struct Mapping {
  uintptr_t lo = 0, hi = 0;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;  // in its file, bytes
  uint64_t inode = 0;
  bool device = false;    // a device number other than 0:0
  bool pageSized = true;  // 4 KiB pages (not hugetlbfs)
  std::string name;

  // Private, anonymous, read-write memory: a heap's, a Buffer's, an anonymous mapping's.
  bool PrivateAnonymous() const {
    const bool anonymous =
        inode == 0 && !device && (name.empty() || name == "[heap]" || name.compare(0, 6, "[anon:") == 0);
    return read && write && !exec && !shared && anonymous && pageSized;
  }
};

// Finds the mapping that covers an address: the kernel's query where it has one (a few µs), else
// the text of /proc/self/maps, read once.
class Mappings {
 public:
  Mappings() {
    // KVWIRE_PROCMAP_QUERY=0: the text, as on kernels without the query (so tests cover both).
    static const bool query = SwitchOn("KVWIRE_PROCMAP_QUERY");
    if (query) maps_.reset(open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
  }

  bool Find(uintptr_t at, Mapping* out) {
    if (maps_.valid()) {
      char name[256] = {0};
      ProcmapQuery q{};
      q.size = sizeof q;
      q.query_addr = at;
      q.vma_name_addr = reinterpret_cast<uint64_t>(name);
      q.vma_name_size = sizeof name;
      if (ioctl(maps_.get(), kProcmapQuery, &q) == 0) {
        name[sizeof name - 1] = '\0';
        *out = Mapping{q.vma_start,
                       q.vma_end,
                       (q.vma_flags & kVmaRead) != 0,
                       (q.vma_flags & kVmaWrite) != 0,
                       (q.vma_flags & kVmaExec) != 0,
                       (q.vma_flags & kVmaShared) != 0,
                       q.vma_offset,
                       q.inode,
                       q.dev_major != 0 || q.dev_minor != 0,
                       q.vma_page_size == PageSize(),
                       q.vma_name_size > 0 ? name : ""};
        return out->lo <= at && at < out->hi;
      }
      if (errno != ENOTTY && errno != EINVAL && errno != EOPNOTSUPP) return false;  // ENOENT: nothing there
      maps_.reset();  // no query in this kernel: the text from now on
    }
    if (!parsed_) Parse();
    for (const Mapping& m : text_) {
      if (m.lo <= at && at < m.hi) {
        *out = m;
        return true;
      }
    }
    return false;
  }

 private:
  void Parse() {
    parsed_ = true;
    FILE* f = std::fopen("/proc/self/maps", "re");
    if (f == nullptr) return;
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      Mapping m;
      char perms[8] = {0};
      unsigned long long offset = 0, inode = 0;
      unsigned major = 0, minor = 0;
      int nameAt = 0;
      if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx %x:%x %llu %n", &m.lo, &m.hi, perms, &offset, &major,
                      &minor, &inode, &nameAt) < 7) {
        continue;
      }
      m.read = perms[0] == 'r';
      m.write = perms[1] == 'w';
      m.exec = perms[2] == 'x';
      m.shared = perms[3] == 's';
      m.offset = offset;
      m.inode = inode;
      m.device = major != 0 || minor != 0;
      char* name = line + nameAt;
      name[std::strcspn(name, "\n")] = '\0';
      m.name = name;
      m.pageSized = m.name.compare(0, 16, "/anon_hugepage") != 0;  // hugetlbfs shows its file's name
      text_.push_back(std::move(m));
    }
    std::fclose(f);
  }

  UniqueFd maps_;
  bool parsed_ = false;
  std::vector<Mapping> text_;
};

// Whether [start, end) is private anonymous read-write memory, all of it.
bool PrivateAnonymous(uintptr_t start, uintptr_t end, std::string* why) {
  Mappings maps;
  for (uintptr_t at = start; at < end;) {
    Mapping m;
    if (!maps.Find(at, &m)) {
      *why = "the memory is not mapped as one range";
      return false;
    }
    if (!m.PrivateAnonymous()) {
      *why = "the memory is not private anonymous read-write memory (" + (m.name.empty() ? "a mapping" : m.name) + ")";
      return false;
    }
    at = m.hi;
  }
  return true;
}

// ---- Copies --------------------------------------------------------------------------------

// All of `length` bytes at `offset` of `fd` through pread/pwrite (`io`), short calls continued.
template <typename Io, typename Byte>
bool Whole(Io io, int fd, Byte* p, uint64_t length, uint64_t offset) {
  while (length > 0) {
    ssize_t n = io(fd, p, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  return true;
}
bool WriteAll(int fd, const uint8_t* src, uint64_t length, uint64_t offset) {
  return Whole(pwrite, fd, src, length, offset);
}
bool ReadAll(int fd, uint8_t* dst, uint64_t length, uint64_t offset) {
  return Whole(pread, fd, dst, length, offset);
}

// Copies the pages of [at, at + length) that hold anything (in memory or swapped out, as
// /proc/self/pagemap tells; all of them when it cannot be read) into `fd` at `offset`. Pages
// never touched stay holes: they read as zeros on both sides, and cost no memory.
bool CopyPopulated(int pagemap, uintptr_t at, uint64_t length, int fd, uint64_t offset) {
  const uintptr_t page = PageSize();
  const uint64_t pages = length / page;
  std::vector<uint64_t> entries(pages, uint64_t{1} << 63);
  if (pagemap >= 0) {
    const auto want = static_cast<ssize_t>(pages * sizeof(uint64_t));
    if (pread(pagemap, entries.data(), static_cast<size_t>(want), static_cast<off_t>(at / page * 8)) != want) {
      std::fill(entries.begin(), entries.end(), uint64_t{1} << 63);
    }
  }
  constexpr uint64_t kHolds = (uint64_t{1} << 63) | (uint64_t{1} << 62);  // present, swapped
  for (uint64_t i = 0; i < pages;) {
    if ((entries[i] & kHolds) == 0) {
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < pages && (entries[j] & kHolds) != 0) ++j;
    if (!WriteAll(fd, reinterpret_cast<const uint8_t*>(at + i * page), (j - i) * page, offset + i * page)) return false;
    i = j;
  }
  return true;
}

// Where the data of [offset, offset + length) of `fd` begins, or `offset + length` when the file
// holds nothing there (a hole reads as zeros). SEEK_DATA from the chunk's start only: SEEK_HOLE
// would walk to the file's next hole, the rest of a full file, for every chunk.
uint64_t DataFrom(int fd, uint64_t offset, uint64_t length) {
  const off_t data = lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO ? offset + length : offset;  // ENXIO: nothing from here on
  return std::min<uint64_t>(static_cast<uint64_t>(data), offset + length);
}

// The largest region whose pages are shared: KVWIRE_SHARE_REGISTERED, in bytes (a K, M or G suffix
// allowed; 0 turns sharing off), kShareLimit by default.
uint64_t ShareLimit() {
  const char* v = std::getenv("KVWIRE_SHARE_REGISTERED");
  if (v == nullptr || *v == '\0') return kShareLimit;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  const int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
  if ((shift != 0 && end[1] != '\0') || (shift == 0 && *end != '\0')) return kShareLimit;  // not a size
  return n > (UINT64_MAX >> shift) ? UINT64_MAX : static_cast<uint64_t>(n) << shift;
}

// ---- The process's windows -----------------------------------------------------------------

struct Entry {
  uintptr_t start, end;
  std::weak_ptr<SharedWindow> window;
};
// Recursive: a window that fails half-way is restored by its destructor under the same lock.
std::recursive_mutex& RegistryMutex() {
  static auto* mu = new std::recursive_mutex();  // never destroyed: windows may outlive statics at exit
  return *mu;
}
std::vector<Entry>& Registry() {
  static auto* entries = new std::vector<Entry>();
  return *entries;
}

}  // namespace

// ---- ShareRecord ---------------------------------------------------------------------------

std::string ShareRecord::Encode() const {
  uint8_t b[kBytes] = {0};
  std::memcpy(b, kMagic, sizeof kMagic);
  Put64(b + 8, fd);  // the high half is 0
  Put64(b + 16, inode);
  Put64(b + 24, windowOffset);
  Put64(b + 32, windowLength);
  Put64(b + 40, fileOffset);
  return std::string(reinterpret_cast<const char*>(b), kBytes);
}

bool ShareRecord::Decode(const uint8_t* data, size_t length, ShareRecord* out) {
  if (data == nullptr || length != kBytes || std::memcmp(data, kMagic, sizeof kMagic) != 0) return false;
  const uint64_t fd = Get64(data + 8);
  ShareRecord r;
  r.inode = Get64(data + 16);
  r.windowOffset = Get64(data + 24);
  r.windowLength = Get64(data + 32);
  r.fileOffset = Get64(data + 40);
  const uint64_t page = PageSize();
  if (fd > INT32_MAX || r.windowLength == 0 || r.windowLength % page != 0 || r.fileOffset % page != 0 ||
      r.windowOffset + r.windowLength < r.windowOffset) {
    return false;
  }
  r.fd = static_cast<uint32_t>(fd);
  *out = r;
  return true;
}

// ---- SharedWindow --------------------------------------------------------------------------

std::shared_ptr<SharedWindow> SharedWindow::Share(uint8_t* base, uint64_t length, std::string* why) {
  static const uint64_t limit = ShareLimit();
  if (length > limit) {
    *why = limit == 0 ? "KVWIRE_SHARE_REGISTERED=0" : "it is larger than KVWIRE_SHARE_REGISTERED bytes";
    return nullptr;
  }
  const uintptr_t page = PageSize();
  const auto first = reinterpret_cast<uintptr_t>(base);
  const uintptr_t start = (first + page - 1) & ~(page - 1);
  const uintptr_t end = (first + length) & ~(page - 1);
  if (length == 0 || end <= start || first + length < first) {
    *why = "it holds no whole page";
    return nullptr;
  }
  std::lock_guard lock(RegistryMutex());
  for (const Entry& e : Registry()) {
    if (e.start >= end || start >= e.end) continue;
    if (e.start <= start && end <= e.end) {
      if (auto w = e.window.lock()) return w;  // the pages are shared already: one window for both
    }
    *why = "its pages overlap another registration's shared pages";
    return nullptr;
  }
  if (!PrivateAnonymous(start, end, why)) return nullptr;
  UniqueFd fd(static_cast<int>(syscall(SYS_memfd_create, "kvwire-region", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd.valid()) {
    *why = Errno("memfd_create");
    return nullptr;
  }
  struct stat st {};
  if (ftruncate(fd.get(), static_cast<off_t>(end - start)) != 0 ||
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 || fstat(fd.get(), &st) != 0) {
    *why = Errno("the memory file could not be sized and sealed");
    return nullptr;
  }
  // Nothing is moved yet (end_ == start_): a failure below restores what was moved.
  const auto inode = static_cast<uint64_t>(st.st_ino);
  std::shared_ptr<SharedWindow> w(new SharedWindow(std::move(fd), inode, start, start));
  const int file = w->fd_.get();
  UniqueFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  for (uintptr_t at = start; at < end;) {
    const uint64_t off = at - start;
    const uint64_t n = std::min<uint64_t>(kChunkBytes, end - at);
    // The bytes first, then the pages: mmap(MAP_FIXED) replaces the private pages in one call.
    if (!CopyPopulated(pagemap.get(), at, n, file, off)) {
      *why = Errno("the memory could not be copied to its file");
      return nullptr;  // `w` restores [start, at)
    }
    void* p = mmap(reinterpret_cast<void*>(at), n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, file,
                   static_cast<off_t>(off));
    if (p == MAP_FAILED) {
      *why = Errno("the memory could not be mapped from its file");
      return nullptr;
    }
    at += n;
    w->end_ = at;
  }
  Registry().push_back(Entry{start, end, w});
  return w;
}

SharedWindow::~SharedWindow() {
  std::lock_guard lock(RegistryMutex());
  auto& entries = Registry();
  entries.erase(std::remove_if(entries.begin(), entries.end(), [this](const Entry& e) { return e.start == start_; }),
                entries.end());
  Restore();
}

void SharedWindow::Restore() noexcept {
  // Chunk by chunk: fresh private pages, the file's bytes copied in, then moved over the shared
  // pages in one mremap(MREMAP_FIXED). Where that fails (no memory), the shared pages stay: they
  // hold the right bytes, and the file lives on as long as they do.
  // A chunk that is no longer this file's pages (the memory was unmapped under the registration,
  // by a detach kvwire could not block, and the addresses maybe reused) is left alone.
  Mappings maps;
  for (uintptr_t at = start_; at < end_;) {
    const uint64_t n = std::min<uint64_t>(kChunkBytes, end_ - at);
    const uint64_t off = at - start_;
    at += n;
    Mapping m;
    if (!maps.Find(at - n, &m) || !m.shared || m.inode != inode_ || m.hi < at || m.offset + (at - n - m.lo) != off) {
      continue;
    }
    // Pages that will be written are made at once (a fault per page costs twice as much); a chunk
    // the file holds nothing of stays untouched (zeros, no memory), as it was before registration.
    const uint64_t data = DataFrom(fd_.get(), off, n);
    const int populate = data < off + n ? MAP_POPULATE : 0;
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
    if (p == MAP_FAILED) continue;
    if (!ReadAll(fd_.get(), static_cast<uint8_t*>(p) + (data - off), off + n - data, data) ||
        mremap(p, n, n, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(at - n)) == MAP_FAILED) {
      munmap(p, n);
    }
  }
  end_ = start_;
}

ShareRecord SharedWindow::RecordFor(const uint8_t* base, uint64_t length) const {
  const uintptr_t page = PageSize();
  const auto first = reinterpret_cast<uintptr_t>(base);
  const uintptr_t lo = std::max(start_, (first + page - 1) & ~(page - 1));
  const uintptr_t hi = std::min(end_, (first + length) & ~(page - 1));
  ShareRecord r;
  r.fd = static_cast<uint32_t>(fd_.get());
  r.inode = inode_;
  r.windowOffset = lo - first;
  r.windowLength = hi > lo ? hi - lo : 0;
  r.fileOffset = lo - start_;
  return r;
}

// ---- PeerWindow ----------------------------------------------------------------------------

std::unique_ptr<PeerWindow> PeerWindow::Map(int pidfd, const ShareRecord& rec, uint64_t regionLength, bool writable,
                                            std::string* why) {
  if (rec.windowLength == 0 || rec.windowOffset > regionLength || rec.windowLength > regionLength - rec.windowOffset) {
    *why = "the shared window lies outside the region";
    return nullptr;
  }
  UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, static_cast<int>(rec.fd), 0)));
  if (!fd.valid()) {
    *why = Errno("pidfd_getfd");
    return nullptr;
  }
  struct stat st {};
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_ino) != rec.inode) {
    *why = "the peer's descriptor is not the memory file it named";
    return nullptr;
  }
  // Sealed against shrinking, or the peer could truncate it under the mapping (SIGBUS here).
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    *why = "the peer's memory file is not sealed against shrinking";
    return nullptr;
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (rec.fileOffset > size || rec.windowLength > size - rec.fileOffset) {
    *why = "the peer's memory file is smaller than the window";
    return nullptr;
  }
  void* p = mmap(nullptr, rec.windowLength, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd.get(),
                 static_cast<off_t>(rec.fileOffset));
  if (p == MAP_FAILED) {
    *why = Errno("mmap of the peer's memory file");
    return nullptr;
  }
  return std::unique_ptr<PeerWindow>(
      new PeerWindow(static_cast<uint8_t*>(p), rec.windowOffset, rec.windowOffset + rec.windowLength));
}

PeerWindow::~PeerWindow() {
  munmap(map_, hi_ - lo_);
}

}  // namespace kvwire
