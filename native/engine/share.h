// Registered host memory that same-host peers map (issue 15): the whole pages of a registered
// buffer are moved, at registration, onto a memory file (memfd) mapped at the same address with
// the same bytes, and a trusted peer on this host maps that file too. A READ or WRITE of those
// pages is then one memcpy in the peer's process: no system call, no page walk (4 KiB: ~0.04 us
// against 1.2-1.5 us through /proc/<pid>/mem or process_vm_readv on this kind of machine; 256 KiB
// 4.6 against 19.7 us), as for memory agent.allocate() made.
//
// What changes for the owner, while the memory is registered: its whole pages are shared memory
// (MAP_SHARED of a sealed memfd, at the same addresses): a fork()ed child shares them instead of
// copying them on write, and transparent huge pages follow the shmem setting. At release (after
// deregistration, once no operation uses the region) the bytes go back onto private anonymous
// memory at the same addresses. Bytes are never lost: a page is copied, then replaced in one
// mmap(MAP_FIXED) (registration) or mremap(MREMAP_FIXED) (release); writes by another thread of
// the owner into the buffer during those two calls are the one hazard (registering or releasing
// memory that another thread is writing is documented as unsupported).
//
// Only what is safe to move is moved: private, anonymous, read-write memory (a Buffer's, the
// heap's, an anonymous mapping's; never a file mapping, shared memory, the stack or a huge-page
// mapping) whose whole pages no other registration of this process shares differently. Anything
// else stays as it was and peers use cross-memory attach, as before. KVWIRE_SHARE_REGISTERED=0
// turns sharing off.
//
// The peer's side: the grant gives a trusted peer (one-sided access, same host: the ones that may
// use cross-memory attach, which already lets them read and write all of this process's memory)
// the memfd's number and inode. The peer takes a duplicate with pidfd_getfd (the kernel checks the
// same ptrace rights cross-memory attach needs), checks it is that inode, sealed against shrinking
// (a mapping of a file that shrinks faults with SIGBUS), and large enough, and maps it. A record
// that fails any check is ignored: cross-memory attach serves those ranges.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "util/unique_fd.h"

namespace kvwire {

// A shared window of a registered region, as a trusted peer is granted it.
struct ShareRecord {
  static constexpr size_t kBytes = 48;
  uint32_t fd = 0;            // the owner's memfd, by number in the owner's process
  uint64_t inode = 0;         // its inode (the number may be reused once it is closed)
  uint64_t windowOffset = 0;  // region offset of the window's first byte
  uint64_t windowLength = 0;  // whole pages
  uint64_t fileOffset = 0;    // memfd offset of the window's first byte (page aligned)

  std::string Encode() const;
  // False for anything but exactly one well-formed record.
  static bool Decode(const uint8_t* data, size_t length, ShareRecord* out);
};

// The owner's side: the whole pages of one registered buffer on a memfd. Shared by every
// registration of this process whose whole pages lie inside it; restored when the last one goes.
class SharedWindow {
 public:
  // Shares the whole pages of [base, base + length), or returns an existing window that holds
  // them. nullptr (and `why`) when there are none, sharing is off, or the memory cannot be moved.
  static std::shared_ptr<SharedWindow> Share(uint8_t* base, uint64_t length, std::string* why);
  ~SharedWindow();
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;

  // The record of the window's part inside the region at [base, base + length).
  ShareRecord RecordFor(const uint8_t* base, uint64_t length) const;

 private:
  SharedWindow(UniqueFd fd, uint64_t inode, uintptr_t start, uintptr_t end)
      : fd_(std::move(fd)), inode_(inode), start_(start), end_(end) {}
  // Moves [start_, end_) back onto private memory.
  void Restore() noexcept;
  UniqueFd fd_;
  uint64_t inode_;
  uintptr_t start_, end_;
};

// The peer's side: a window of a remote region mapped into this process.
class PeerWindow {
 public:
  // Maps the window `rec` of a region of `regionLength` bytes from the process of `pidfd`.
  // nullptr (and `why`) when the record does not check out or the kernel refuses.
  static std::unique_ptr<PeerWindow> Map(int pidfd, const ShareRecord& rec, uint64_t regionLength, bool writable,
                                         std::string* why);
  ~PeerWindow();
  PeerWindow(const PeerWindow&) = delete;
  PeerWindow& operator=(const PeerWindow&) = delete;

  // Where this process sees region bytes [offset, offset + length), or nullptr when they are not
  // all inside the window.
  uint8_t* At(uint64_t offset, uint64_t length) const noexcept {
    if (offset < lo_ || length > hi_ - lo_ || offset - lo_ > hi_ - lo_ - length) return nullptr;
    return map_ + (offset - lo_);
  }

 private:
  PeerWindow(uint8_t* map, uint64_t lo, uint64_t hi) : map_(map), lo_(lo), hi_(hi) {}
  uint8_t* map_;
  uint64_t lo_, hi_;  // region offsets of the window
};

}  // namespace kvwire
