// CopyHelper: a second thread for the engine's large one-sided copies (native/engine/ucx_initiator.cc,
// PostOneSided). A copy of a few MiB by process_vm_readv/writev or memcpy keeps one core busy for
// hundreds of microseconds; split in two halves, one on the engine thread and one here, it takes
// about half as long where a second core is free (4 MiB: 325 -> 176 µs measured on 2 vCPUs).
//
// One job at a time, from one thread (the engine thread): Start() hands a job over and returns,
// Wait() blocks until it ran and returns its result. After a job the thread keeps looking for the
// next one for a moment (consecutive pieces of one transfer follow each other closely: a sleeping
// thread takes tens of microseconds to wake on a VM), then sleeps. Started on first use, so an
// agent that never moves large one-sided transfers has no extra thread; joined by the destructor.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kvwire {

class CopyHelper {
 public:
  CopyHelper() = default;
  ~CopyHelper();
  CopyHelper(const CopyHelper&) = delete;
  CopyHelper& operator=(const CopyHelper&) = delete;

  // Hands `job` to the helper thread (starting it on first use). The previous job must have been
  // waited for. Returns false when the thread could not be started: run the job yourself.
  bool Start(std::function<int()> job);
  // Blocks until the job handed over by Start() ran; returns what it returned. A job the helper has
  // not taken yet is taken back and run by the caller.
  int Wait();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  std::function<int()> job_;
  std::atomic<bool> pending_{false};  // a job is handed over and not taken yet
  std::atomic<bool> done_{false};     // the job ran: result_ holds its result
  bool sleeping_ = false;             // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  int result_ = 0;                    // guarded by mu_
};

}  // namespace kvwire
