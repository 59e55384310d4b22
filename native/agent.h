// Agent: the JS class `NativeAgent` (lib/native.ts), one per engine instance.
//
// It owns a UcxEngine and a ThreadSafeFunction that carries engine events to JS. Descriptor lists
// arrive as one flat Float64Array (stride 5: local region, local offset, remote region, remote
// offset, length) and are resolved and bounds-checked here, again, before anything is posted:
// TypeScript validated them with friendly messages; this is the last line of defence.
//
// Closing: close() asks the engine thread to shut down and returns; the thread reports Closed as
// its last event, and the agent then joins it (it has ended: immediate) and lets the callback go.
// The JS thread never waits for the shutdown itself (which flushes, says goodbye and may wait up
// to ~1.5 s for UCX), except in the cleanup hook below.
//
// Lifetime hazards guarded:
//  - process exit or worker_threads termination with transfers in flight, or before a close()
//    in progress reported Closed: an environment cleanup hook closes the engine synchronously
//    (joins its thread, frees UCX) before the environment goes away; process.exit() on the main
//    thread runs no cleanup hook, so an atexit handler does the same there (agent.cc);
//  - an agent that was never closed: it is never collected while its environment lives (tsfn_
//    holds the JS callback, which holds the agent): close() is required; the cleanup hook closes
//    it at exit (test/transport/lifecycle.test.ts "never collects agents dropped without close()");
//  - a foreign object passed as `this`: the class is type-tagged, unwrap checks the tag;
//  - a call interrupted by worker.terminate(): node-addon-api cannot throw into a terminating
//    environment, and without NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp, CMakeLists)
//    it would rethrow in C++ and abort the whole process.
#pragma once
#include <napi.h>

#include <memory>
#include <string_view>

#include "engine/types.h"
#ifdef KVWIRE_HAVE_UCX
#include "engine/ucx_engine.h"
#endif

// The options `new NativeAgent(options, onEvents)` reads: lib/native.ts NativeAgentOptions has
// exactly these keys (test/transport/native-contract.test.ts compares the lists), and the
// constructor refuses any other, so an option one side adds and the other ignores cannot go
// unnoticed. Read them with KVWIRE_OPTION("name"): it does not compile for a name not listed.
#define KVWIRE_AGENT_OPTIONS(X) \
  X(name)                       \
  X(transports)                 \
  X(protocol)                   \
  X(directAccess)               \
  X(auth)                       \
  X(spinUs)                     \
  X(rndvThreshold)              \
  X(windowOps)                  \
  X(inlineBytes)                \
  X(completionSpinUs)           \
  X(completionSpinBytes)        \
  X(batchBelow)                 \
  X(batchBytes)                 \
  X(cuda)

namespace kvwire {

#define KVWIRE_OPTION_NAME(n) #n,
inline constexpr std::string_view kAgentOptionNames[] = {KVWIRE_AGENT_OPTIONS(KVWIRE_OPTION_NAME)};
#undef KVWIRE_OPTION_NAME

constexpr bool IsAgentOption(std::string_view key) {
  for (std::string_view n : kAgentOptionNames) {
    if (n == key) return true;
  }
  return false;
}

#define KVWIRE_OPTION(n) ([] { static_assert(::kvwire::IsAgentOption(n), "not in KVWIRE_AGENT_OPTIONS: " n); }(), n)

// The contract lists (event kinds, error codes, agent options) as one JS object, for the parity test.
Napi::Object ContractObject(Napi::Env env);

class Agent : public Napi::ObjectWrap<Agent> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Agent(const Napi::CallbackInfo& info);
  ~Agent() override;

 private:
  Napi::Value Register(const Napi::CallbackInfo& info);
  Napi::Value Allocate(const Napi::CallbackInfo& info);
  Napi::Value RegisterDevice(const Napi::CallbackInfo& info);  // native/cuda/agent_device.cc
  Napi::Value Deregister(const Napi::CallbackInfo& info);
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value SetGrantKeys(const Napi::CallbackInfo& info);
  Napi::Value Disconnect(const Napi::CallbackInfo& info);
  Napi::Value Post(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Notify(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value GetAddress(const Napi::CallbackInfo& info);
  Napi::Value GetTransports(const Napi::CallbackInfo& info);

  // Synchronous close (cleanup hook, destructor, the end of an asynchronous close): idempotent.
  void CloseNow();
  // The engine reported Closed: join its (ended) thread, release the callback, drop the hook.
  void FinishClose();
  void RemoveCleanupHook();
  // exit() on the main thread runs no cleanup hook: agents still open are closed by an atexit
  // handler (engine only: N-API cannot be used then). See agent.cc.
  void TrackOpen(bool open);
  void CloseEngineAtExit();
  static void CloseAllAtExit();
  bool closed() const { return closed_; }
  static void CleanupHook(Agent* self);
  static Napi::Array EventsToJs(Napi::Env env, std::vector<EngineEvent>& events);

#ifdef KVWIRE_HAVE_UCX
  std::unique_ptr<UcxEngine> engine_;
#endif
  Napi::ThreadSafeFunction tsfn_;
  bool tsfnLive_ = false;
  bool refed_ = false;
  bool closed_ = false;    // close() was called (or the agent was closed synchronously): calls are refused
  bool hookLive_ = false;  // the environment cleanup hook is registered
  napi_env env_ = nullptr;
};

// Throws a JS Error with a kvwire error code (lib/native.ts turns it into a KvwireError).
[[noreturn]] void ThrowCode(Napi::Env env, const char* code, const std::string& message);

// Throws a TypeError unless `this` is a NativeAgent (a foreign object must never be unwrapped).
void CheckAgentTag(const Napi::CallbackInfo& info);

// Unwraps a NativeAgent, checking its type tag: anything else is a TypeError, never a crash.
Agent* UnwrapAgent(Napi::Env env, Napi::Value v);

}  // namespace kvwire
