// Owners of UCX handles: each frees its handle exactly once, when it is destroyed or reset, and
// none can be copied (a copy would free twice). Move them to hand a handle on.
//
// They convert implicitly to the raw handle, so that a UCX call reads as the call it is
// (`ucp_am_send_nbx(ob.ep, ...)`); the conversion never gives ownership away.
//
// Each has `release()`: the handle is forgotten, not freed. The engine uses it when shutdown
// cannot finish (UcxEngine::leaked_): freeing a worker, a request or an endpoint that UCX still
// works on aborts the process inside UCX, so such handles are deliberately left allocated.
#pragma once
#ifdef KVWIRE_HAVE_UCX
#include <ucp/api/ucp.h>

#include <memory>
#include <utility>

namespace kvwire {

// The common part: one handle, moved never copied, freed by `Free` (a function object type).
template <typename Handle, typename Free>
class UcxOwned {
 public:
  UcxOwned() = default;
  explicit UcxOwned(Handle h) : h_(h) {}
  ~UcxOwned() { reset(); }
  UcxOwned(const UcxOwned&) = delete;
  UcxOwned& operator=(const UcxOwned&) = delete;
  UcxOwned(UcxOwned&& o) noexcept : h_(o.release()) {}
  UcxOwned& operator=(UcxOwned&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = o.release();
    }
    return *this;
  }
  Handle get() const { return h_; }
  operator Handle() const { return h_; }  // NOLINT(google-explicit-constructor): reads as the UCX call
  explicit operator bool() const { return h_ != nullptr; }
  Handle release() { return std::exchange(h_, nullptr); }
  void reset(Handle h = nullptr) {
    Handle old = std::exchange(h_, h);
    if (old != nullptr) Free{}(old);
  }

 private:
  Handle h_ = nullptr;
};

struct UcpWorkerDestroy {
  void operator()(ucp_worker_h w) const { ucp_worker_destroy(w); }
};
struct UcpRkeyDestroy {
  void operator()(ucp_rkey_h k) const { ucp_rkey_destroy(k); }
};
struct UcpRequestFree {
  void operator()(void* r) const { ucp_request_free(r); }
};
struct UcpConfigRelease {
  void operator()(ucp_config_t* c) const { ucp_config_release(c); }
};
struct UcpRkeyBufferRelease {
  void operator()(void* b) const { ucp_rkey_buffer_release(b); }
};

// The configuration read to create the context (released once the context exists).
using UcpConfig = UcxOwned<ucp_config_t*, UcpConfigRelease>;
// A packed remote key (ucp_rkey_pack), released once copied.
using UcpRkeyBuffer = UcxOwned<void*, UcpRkeyBufferRelease>;

// The UCX context: cleaned up when the last owner lets go (the engine, memory registered or
// allocated with it that a region or a JS ArrayBuffer still holds). Shared for that reason; after
// a shutdown that could not finish, the engine leaks one reference on purpose (leaked_).
struct ContextRef {
  explicit ContextRef(ucp_context_h c) : context(c) {}
  ~ContextRef() { ucp_cleanup(context); }
  ContextRef(const ContextRef&) = delete;
  ContextRef& operator=(const ContextRef&) = delete;
  ucp_context_h context;
};

// Memory mapped with the context (ucp_mem_map: registered, or allocated by UCX): unmapped when
// the last owner (the region, the JS ArrayBuffer over allocated memory) drops its shared_ptr, and
// always before the context it holds is cleaned up.
struct UcpMemory {
  UcpMemory(std::shared_ptr<ContextRef> c, ucp_mem_h m) : ctx(std::move(c)), memh(m) {}
  ~UcpMemory() { ucp_mem_unmap(ctx->context, memh); }
  UcpMemory(const UcpMemory&) = delete;
  UcpMemory& operator=(const UcpMemory&) = delete;
  std::shared_ptr<ContextRef> ctx;
  ucp_mem_h memh;
};

// The worker. Destroyed only once every endpoint was closed and every request it ran was freed:
// destroying it under an operation still in flight aborts inside UCX (UcxEngine shutdown waits,
// and leaves it allocated when it cannot). The engine destroys it on its own thread
// (ShutdownOnThread) while the endpoints' error-handler arguments (EpOwner) still live.
using UcpWorker = UcxOwned<ucp_worker_h, UcpWorkerDestroy>;

// A remote key unpacked on an endpoint: destroyed with the connection that unpacked it (Outbound),
// always before the worker.
using UcpRkey = UcxOwned<ucp_rkey_h, UcpRkeyDestroy>;

// A request returned by a ucp_*_nbx call (a flush, a close, an operation in flight): given back
// to UCX on destruction. Freeing a request that is still in progress is allowed (the operation
// goes on, its callback is never called); its memory must then stay valid until it completes.
class UcpRequest : public UcxOwned<void*, UcpRequestFree> {
 public:
  UcpRequest() = default;
  // Takes what a ucp_*_nbx call returned: a request to own, or an immediate status (nothing).
  static UcpRequest From(void* status_ptr) {
    return UCS_PTR_IS_PTR(status_ptr) ? UcpRequest(status_ptr) : UcpRequest();
  }
  explicit UcpRequest(void* r) : UcxOwned(r) {}
  bool inProgress() const { return get() != nullptr && ucp_request_check_status(get()) == UCS_INPROGRESS; }
};

// An endpoint. It is never closed by its destructor: closing runs the callbacks of the requests
// still on it, and a close from wherever an owner happens to be dropped re-entered the code ending
// the connection (F12: a SIGSEGV in UCX after a partition). Endpoints are closed by the engine loop
// only (UcxEngine::RetireEp queues them, ProgressRetiring closes them); one dropped without being
// retired is left to the worker, whose destruction destroys every endpoint still on it.
class UcpEndpoint {
 public:
  UcpEndpoint() = default;
  explicit UcpEndpoint(ucp_ep_h ep) : ep_(ep) {}
  UcpEndpoint(const UcpEndpoint&) = delete;
  UcpEndpoint& operator=(const UcpEndpoint&) = delete;
  UcpEndpoint(UcpEndpoint&& o) noexcept : ep_(std::exchange(o.ep_, nullptr)) {}
  UcpEndpoint& operator=(UcpEndpoint&& o) noexcept {
    ep_ = std::exchange(o.ep_, nullptr);  // an endpoint overwritten unretired is the worker's (see above)
    return *this;
  }
  ~UcpEndpoint() = default;
  ucp_ep_h get() const { return ep_; }
  operator ucp_ep_h() const { return ep_; }  // NOLINT(google-explicit-constructor): reads as the UCX call
  explicit operator bool() const { return ep_ != nullptr; }

  // Asks UCX to flush what was sent on it (the goodbye gets out before the close).
  UcpRequest Flush() const {
    ucp_request_param_t p{};
    return UcpRequest::From(ucp_ep_flush_nbx(ep_, &p));
  }
  // Closes it by FORCE, the only close after which UCX 1.13 destroys an endpoint its peer
  // connected to (a flushing close keeps it, and its socket, until the worker is destroyed); the
  // requests still on it complete with an error. The endpoint is gone after this; the returned
  // request (if any) completes when UCX is done with it. Engine loop only (see above).
  UcpRequest CloseByForce() {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    return UcpRequest::From(ucp_ep_close_nbx(std::exchange(ep_, nullptr), &p));
  }
  ucp_ep_h release() { return std::exchange(ep_, nullptr); }

 private:
  ucp_ep_h ep_ = nullptr;
};

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX
