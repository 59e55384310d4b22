#include "engine/copy_helper.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cstdint>
#include <system_error>

namespace kvwire {
namespace {

uint64_t MonoNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
}

// How long the helper keeps looking for the next job before it sleeps.
constexpr uint64_t kLingerNs = 300000;

}  // namespace

CopyHelper::~CopyHelper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool CopyHelper::Start(std::function<int()> job) {
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { Run(); });
      pthread_setname_np(thread_.native_handle(), "kvwire-copy");  // as top -H, perf and gdb show it
    } catch (const std::system_error&) {
      return false;
    }
  }
  done_.store(false, std::memory_order_relaxed);
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    job_ = std::move(job);
    pending_.store(true, std::memory_order_release);
    wake = sleeping_;
  }
  if (wake) cv_.notify_one();
  return true;
}

int CopyHelper::Wait() {
  // The caller has just done its own half. A job the helper has not taken by now would wait for the
  // helper to be scheduled again (on 2 busy cores, a time slice: ~2 ms, once in a few hundred
  // transfers): the caller takes it back and runs it itself.
  {
    std::unique_lock lock(mu_);
    if (pending_.load(std::memory_order_relaxed)) {
      std::function<int()> job = std::move(job_);
      job_ = nullptr;
      pending_.store(false, std::memory_order_relaxed);
      lock.unlock();
      return job();
    }
  }
  // The helper is running it: its half is about as long as the caller's, so look often.
  while (!done_.load(std::memory_order_acquire)) sched_yield();
  // The helper set done_ under mu_ and released it: taking mu_ once orders its copy before what the
  // caller does next in a way every tool sees (ThreadSanitizer did not follow the atomic alone here).
  std::lock_guard lock(mu_);
  return result_;
}

void CopyHelper::Run() {
  uint64_t idleSince = MonoNs();
  for (;;) {
    if (pending_.load(std::memory_order_acquire)) {
      std::function<int()> job;
      {
        std::lock_guard lock(mu_);
        if (pending_.load(std::memory_order_relaxed)) {  // not taken back by Wait() meanwhile
          job = std::move(job_);
          job_ = nullptr;
          pending_.store(false, std::memory_order_relaxed);
        }
      }
      if (!job) continue;
      const int result = job();
      {
        std::lock_guard lock(mu_);
        result_ = result;
        done_.store(true, std::memory_order_release);
      }
      idleSince = MonoNs();
      continue;
    }
    if (MonoNs() - idleSince < kLingerNs) {
      sched_yield();
      continue;
    }
    std::unique_lock lock(mu_);
    if (stop_) return;
    if (pending_.load(std::memory_order_relaxed)) continue;
    sleeping_ = true;
    cv_.wait(lock, [this] { return stop_ || pending_.load(std::memory_order_relaxed); });
    sleeping_ = false;
    if (stop_) return;
    idleSince = MonoNs();
  }
}

}  // namespace kvwire
