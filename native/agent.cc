#include "agent.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "engine/process.h"
#include "util/clock.h"

namespace kvwire {

namespace {

// Agents whose engine may still run, closed synchronously by exit(). process.exit() on the main
// thread runs no environment cleanup hook: an engine thread still running then (a close() in
// progress, an agent never closed) raced libucs's own destructors (ThreadSanitizer: a data race in
// ucs_async_remove_handler on a lock exit() had destroyed, and the thread never joined). The
// handler is registered after libucs was loaded, so exit() runs it before libucs's destructors.
// Worker threads are stopped (their cleanup hooks run) before the main thread's exit().
// Never destroyed: used during exit().
std::mutex& OpenAgentsMu() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::unordered_set<Agent*>& OpenAgents() {
  static auto* open = new std::unordered_set<Agent*>;
  return *open;
}

}  // namespace

void Agent::CloseAllAtExit() {
  std::lock_guard lock(OpenAgentsMu());
  for (Agent* a : OpenAgents()) a->CloseEngineAtExit();
}

void Agent::CloseEngineAtExit() {
#ifdef KVWIRE_HAVE_UCX
  if (engine_) (void)engine_->Close();  // joins its thread; JS and N-API are not touched
#endif
}

void Agent::TrackOpen(bool open) {
  static std::once_flag atExit;
  std::call_once(atExit, [] { std::atexit(&Agent::CloseAllAtExit); });
  std::lock_guard lock(OpenAgentsMu());
  if (open) {
    OpenAgents().insert(this);
  } else {
    OpenAgents().erase(this);
  }
}

namespace {

constexpr napi_type_tag kAgentTag = {0x6b7677697265a9e1ULL, 0x4167656e74c0ffeeULL};

void CheckTag(const Napi::CallbackInfo& info) {
  bool ok = false;
  napi_value self = info.This();
  if (napi_check_object_type_tag(info.Env(), self, &kAgentTag, &ok) != napi_ok || !ok) {
    throw Napi::TypeError::New(info.Env(), "kvwire: method called on an object that is not a NativeAgent");
  }
}

// The bytes of an ArrayBuffer, typed array, DataView or Buffer, in place (never copied).
bool MemoryOf(Napi::Value v, uint8_t** data, size_t* length) {
  napi_env env = v.Env();
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *length = ab.ByteLength();
    return true;
  }
  if (v.IsTypedArray()) {
    napi_typedarray_type type;
    size_t count;
    void* ptr;
    napi_value ab;
    size_t offset;
    if (napi_get_typedarray_info(env, v, &type, &count, &ptr, &ab, &offset) != napi_ok) return false;
    *data = static_cast<uint8_t*>(ptr);
    *length = v.As<Napi::TypedArray>().ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    auto dv = v.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.Data());
    *length = dv.ByteLength();
    return true;
  }
  return false;
}

std::string StringOf(Napi::Value v) {
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

double NumberOf(Napi::Object o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

bool IsIndex(double d) {
  return d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d;
}

// An argument that must be an integer in [0, max]: one N-API call (napi_get_value_double fails on
// anything but a number), where IsNumber() and a conversion are two.
bool IntegerArg(napi_env env, napi_value v, double max, double* out) {
  return napi_get_value_double(env, v, out) == napi_ok && IsIndex(*out) && *out <= max;
}

}  // namespace

void CheckAgentTag(const Napi::CallbackInfo& info) {
  CheckTag(info);
}

void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

Napi::Function Agent::Init(Napi::Env env) {
  return DefineClass(env, "NativeAgent",
                     {
                         InstanceMethod<&Agent::Register>("register"),
                         InstanceMethod<&Agent::Allocate>("allocate"),
                         InstanceMethod<&Agent::RegisterDevice>("registerDevice"),
                         InstanceMethod<&Agent::Deregister>("deregister"),
                         InstanceMethod<&Agent::Connect>("connect"),
                         InstanceMethod<&Agent::Attach>("attach"),
                         InstanceMethod<&Agent::SetGrantKeys>("setGrantKeys"),
                         InstanceMethod<&Agent::Disconnect>("disconnect"),
                         InstanceMethod<&Agent::Post>("post"),
                         InstanceMethod<&Agent::Cancel>("cancel"),
                         InstanceMethod<&Agent::Notify>("notify"),
                         InstanceMethod<&Agent::Close>("close"),
                         InstanceMethod<&Agent::Ref>("ref"),
                         InstanceMethod<&Agent::Unref>("unref"),
                         InstanceAccessor<&Agent::GetAddress>("address"),
                         InstanceAccessor<&Agent::GetTransports>("transports"),
                     });
}

// new NativeAgent(options, onEvents)
Agent::Agent(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Agent>(info) {
  Napi::Env env = info.Env();
  env_ = env;
  napi_type_tag_object(env, info.This(), &kAgentTag);
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    throw Napi::TypeError::New(env, "NativeAgent(options, onEvents): options object and callback required");
  }
#ifdef KVWIRE_HAVE_UCX
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = StringOf(keys.Get(i));
    if (!IsAgentOption(key)) {
      ThrowCode(env, code::kInvalidArgument,
                "NativeAgent: unknown option '" + key + "' (lib/native.ts and native/agent.h disagree)");
    }
  }
  EngineOptions opts;
  opts.name = StringOf(o.Get(KVWIRE_OPTION("name")));
  opts.transports = StringOf(o.Get(KVWIRE_OPTION("transports")));
  std::string protocol = StringOf(o.Get(KVWIRE_OPTION("protocol")));
  if (!protocol.empty()) opts.protocol = protocol;
  opts.spinUs = static_cast<uint32_t>(NumberOf(o, KVWIRE_OPTION("spinUs"), opts.spinUs));
  opts.rndvThreshold =
      static_cast<uint64_t>(NumberOf(o, KVWIRE_OPTION("rndvThreshold"), static_cast<double>(opts.rndvThreshold)));
  opts.windowOps =
      std::max<uint32_t>(1, static_cast<uint32_t>(NumberOf(o, KVWIRE_OPTION("windowOps"), opts.windowOps)));
  opts.inlineBytes =
      static_cast<uint64_t>(NumberOf(o, KVWIRE_OPTION("inlineBytes"), static_cast<double>(opts.inlineBytes)));
  opts.completionSpinUs = static_cast<uint32_t>(std::min<double>(
      10000, NumberOf(o, KVWIRE_OPTION("completionSpinUs"), static_cast<double>(opts.completionSpinUs))));
  opts.completionSpinBytes = static_cast<uint64_t>(
      NumberOf(o, KVWIRE_OPTION("completionSpinBytes"), static_cast<double>(opts.completionSpinBytes)));
  opts.batchBelow =
      static_cast<uint64_t>(NumberOf(o, KVWIRE_OPTION("batchBelow"), static_cast<double>(opts.batchBelow)));
  opts.batchBytes = std::clamp<uint64_t>(
      static_cast<uint64_t>(NumberOf(o, KVWIRE_OPTION("batchBytes"), static_cast<double>(opts.batchBytes))), 1,
      32ull << 20);  // the target accepts packed messages up to 64 MiB
  if (o.Get(KVWIRE_OPTION("cuda")).IsObject()) {
    Napi::Object c = o.Get("cuda").As<Napi::Object>();
    std::string path = StringOf(c.Get("path"));
    if (!path.empty()) opts.cuda.path = path;
    opts.cuda.chunkBytes =
        static_cast<uint64_t>(NumberOf(c, "stagingChunkBytes", static_cast<double>(opts.cuda.chunkBytes)));
    opts.cuda.buffers = static_cast<uint32_t>(NumberOf(c, "stagingBuffers", opts.cuda.buffers));
  }
  // auth: { keys: [{ id: 8 bytes, key: 32 bytes }, ...] }, derived from the secrets in TypeScript
  // (lib/transport/auth.ts); the first signs. directAccess: false refuses one-sided access to all.
  if (o.Get(KVWIRE_OPTION("auth")).IsObject()) {
    Napi::Value keys = o.Get("auth").As<Napi::Object>().Get("keys");
    std::vector<AuthKey> list;
    if (keys.IsArray()) {
      Napi::Array a = keys.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        if (!a.Get(i).IsObject()) continue;
        Napi::Object k = a.Get(i).As<Napi::Object>();
        uint8_t *id = nullptr, *key = nullptr;
        size_t idLen = 0, keyLen = 0;
        if (!MemoryOf(k.Get("id"), &id, &idLen) || !MemoryOf(k.Get("key"), &key, &keyLen) || idLen != 8 ||
            keyLen != 32) {
          ThrowCode(env, code::kInvalidArgument, "auth keys must be { id: 8 bytes, key: 32 bytes }");
        }
        list.push_back(AuthKey{std::string(reinterpret_cast<const char*>(id), idLen),
                               std::string(reinterpret_cast<const char*>(key), keyLen)});
      }
    }
    if (list.empty()) ThrowCode(env, code::kInvalidArgument, "auth needs at least one key");
    opts.auth = AuthKeys(std::move(list));
  }
  if (o.Get(KVWIRE_OPTION("directAccess")).IsBoolean())
    opts.directAccess = o.Get("directAccess").As<Napi::Boolean>().Value();
  opts.hostId = HostId();
  opts.pidStart = ProcessStartTime(static_cast<uint32_t>(getpid()));

  tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "kvwire-engine-events", 0, 1);
  tsfnLive_ = true;
  tsfn_.Unref(env);  // an idle agent does not keep the process alive; pending work refs it
  Napi::ThreadSafeFunction tsfn = tsfn_;
  Agent* self = this;
  auto sink = [tsfn, self](std::vector<EngineEvent>&& events) mutable {
    const bool last = !events.empty() && events.back().kind == EngineEvent::Kind::kClosed;
    auto* batch = new std::vector<EngineEvent>(std::move(events));
    auto deliver = [self, last](Napi::Env env, Napi::Function cb, std::vector<EngineEvent>* b) {
      std::unique_ptr<std::vector<EngineEvent>> owned(b);
      // Null while the environment is torn down (after the cleanup hook closed the agent): the
      // agent may be gone already, touch nothing. Otherwise `cb` holds the JS engine, which holds
      // this agent's object: `self` is alive.
      if (env == nullptr || cb.IsEmpty()) return;
      // The TypeScript dispatcher never throws (user listeners' errors are rethrown on a later
      // tick); an exception here means the environment is shutting down: drop the batch.
      try {
        cb.Call({EventsToJs(env, *owned)});
      } catch (const Napi::Error&) {
      }
      if (last) self->FinishClose();  // before the close promise's reactions run (microtasks)
    };
    napi_status st = tsfn.NonBlockingCall(batch, deliver);
    if (st != napi_ok) delete batch;  // closing: the JS side is gone
  };
  std::string error;
  engine_ = UcxEngine::Create(opts, std::move(sink), &error);
  if (!engine_) {
    tsfn_.Release();
    tsfnLive_ = false;
    ThrowCode(env, code::kUnsupported, "the UCX engine could not start: " + error);
  }
  napi_add_env_cleanup_hook(env, reinterpret_cast<void (*)(void*)>(&Agent::CleanupHook), this);
  hookLive_ = true;
  TrackOpen(true);
#else
  ThrowCode(env, code::kUnsupported,
            "this build of kvwire has no UCX engine (libucx-dev was not found when it was built); install "
            "libucx-dev and run `npm rebuild kvwire`, or use engine: 'loopback'");
#endif
}

Agent::~Agent() {
  CloseNow();
  RemoveCleanupHook();
}

void Agent::CleanupHook(Agent* self) {
  // The environment is going away (process exit, worker termination, or both while a close()
  // still waits for its Closed event): stop the engine thread and free UCX now, synchronously,
  // while the memory registered from JS is still valid. Node removes the hook after running it.
  self->hookLive_ = false;
  self->CloseNow();
}

void Agent::RemoveCleanupHook() {
  if (!hookLive_) return;
  hookLive_ = false;
  napi_remove_env_cleanup_hook(env_, reinterpret_cast<void (*)(void*)>(&Agent::CleanupHook), this);
}

void Agent::CloseNow() {
  closed_ = true;
#ifdef KVWIRE_HAVE_UCX
  if (engine_) {
    TrackOpen(false);  // first: exit() then never closes it at the same time as this thread
    engine_->Close();  // joins the engine thread: waits for its whole shutdown unless it reported Closed
    engine_.reset();
  }
#endif
  if (tsfnLive_) {
    tsfnLive_ = false;
    tsfn_.Release();
  }
}

void Agent::FinishClose() {
  CloseNow();
  RemoveCleanupHook();
}

#define KVWIRE_REQUIRE_OPEN(info) \
  CheckTag(info);                 \
  if (closed_) ThrowCode((info).Env(), code::kClosed, "the agent is closed; create a new one with Agent.create()")

Napi::Value Agent::GetAddress(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
#ifdef KVWIRE_HAVE_UCX
  const std::string& a = engine_->workerAddress();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(a.data()), a.size());
#else
  return info.Env().Undefined();
#endif
}

Napi::Value Agent::GetTransports(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
#ifdef KVWIRE_HAVE_UCX
  return Napi::String::New(info.Env(), engine_->transportsConfigured());
#else
  return info.Env().Undefined();
#endif
}

// register(id, label, memory, access) -> Buffer (packed rkey; empty for access none)
Napi::Value Agent::Register(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t length = 0;
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !MemoryOf(info[2], &data, &length) ||
      !info[3].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "register(id, label, memory, access): bad arguments");
  }
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  uint32_t access = info[3].As<Napi::Number>().Uint32Value();
  if (access > kAccessReadWrite) ThrowCode(env, code::kInvalidArgument, "access must be 0..3");
  if (length == 0 || data == nullptr) {
    ThrowCode(env, code::kInvalidArgument, "cannot register an empty (or detached) buffer");
  }
#ifdef KVWIRE_HAVE_UCX
  std::string rkey, error;
  if (!engine_->Register(id, info[1].As<Napi::String>().Utf8Value(), data, length, static_cast<Access>(access), &rkey,
                         &error)) {
    ThrowCode(env, code::kTransport, error);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("rkey", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(rkey.data()), rkey.size()));
  out.Set("base", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data))));
  return out;
#else
  return env.Undefined();
#endif
}

// allocate(id, label, length, access) -> { rkey, base, buffer: ArrayBuffer over the memory }
Napi::Value Agent::Allocate(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "allocate(id, label, length, access): bad arguments");
  }
  double length = info[2].As<Napi::Number>().DoubleValue();
  if (!(length >= 1) || length > 9007199254740991.0 || std::floor(length) != length) {
    ThrowCode(env, code::kInvalidArgument, "length must be a positive integer");
  }
  uint32_t access = info[3].As<Napi::Number>().Uint32Value();
  if (access > kAccessReadWrite) ThrowCode(env, code::kInvalidArgument, "access must be 0..3");
#ifdef KVWIRE_HAVE_UCX
  std::string rkey, error;
  uint8_t* base = nullptr;
  std::shared_ptr<UcpMemory> allocation;
  if (!engine_->Allocate(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::String>().Utf8Value(),
                         static_cast<uint64_t>(length), static_cast<Access>(access), &rkey, &base, &allocation,
                         &error)) {
    ThrowCode(env, code::kTransport, error);
  }
  // The ArrayBuffer co-owns the memory: it stays valid as long as JavaScript can reach it, even
  // after the region is deregistered or the agent closed.
  auto* owner = new std::shared_ptr<UcpMemory>(std::move(allocation));
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
      env, base, static_cast<size_t>(length), [](Napi::Env, void*, std::shared_ptr<UcpMemory>* o) { delete o; }, owner);
  Napi::Object out = Napi::Object::New(env);
  out.Set("rkey", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(rkey.data()), rkey.size()));
  out.Set("base", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(base))));
  out.Set("buffer", buffer);
  return out;
#else
  return env.Undefined();
#endif
}

// deregister(id) -> 0 when done, N > 0 when N local transfers still use it, -1 when unknown
Napi::Value Agent::Deregister(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
#ifdef KVWIRE_HAVE_UCX
  uint32_t busy = 0;
  bool known = false;
  bool ok = engine_->Deregister(info[0].As<Napi::Number>().Uint32Value(), &busy, &known);
  return Napi::Number::New(info.Env(), ok ? 0 : known ? static_cast<double>(busy) : -1);
#else
  return info.Env().Undefined();
#endif
}

// connect(peerId, { name, address, pid, pidStart, hostId }, timeoutMs): starts the handshake.
// The worker address is checked here (address_check.h) before UCX sees it: a bad one throws.
Napi::Value Agent::Connect(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsObject() || !info[2].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "connect(peerId, info, timeoutMs): bad arguments");
  }
#ifdef KVWIRE_HAVE_UCX
  Napi::Object o = info[1].As<Napi::Object>();
  auto peer = std::make_shared<PeerInfo>();
  peer->name = StringOf(o.Get("name"));
  peer->hostId = StringOf(o.Get("hostId"));
  peer->pid = static_cast<uint32_t>(NumberOf(o, "pid", 0));
  peer->pidStart = static_cast<uint64_t>(NumberOf(o, "pidStart", 0));
  uint8_t* addr = nullptr;
  size_t addrLen = 0;
  if (!MemoryOf(o.Get("address"), &addr, &addrLen) || addrLen == 0) {
    ThrowCode(env, code::kBadMetadata, "the metadata carries no UCX worker address");
  }
  std::string why;
  if (!engine_->CheckPeerAddress(addr, addrLen, &why)) {
    ThrowCode(env, code::kBadMetadata,
              "bad metadata: its UCX worker address is malformed (" + why +
                  "); pass the exact bytes agent.metadata() returned");
  }
  peer->address.assign(reinterpret_cast<const char*>(addr), addrLen);
  uint32_t timeoutMs = info[2].As<Napi::Number>().Uint32Value();
  engine_->Connect(info[0].As<Napi::Number>().Uint32Value(), std::move(peer), timeoutMs);
#endif
  return env.Undefined();
}

// attach(peerId, [{ id, base (bigint), length, access, rkey?, device?, ipcHandle?, ipcOffset?, busId?,
//   stagingChunk? }]): after the handshake, the regions of the grant, checked against the metadata
// in lib/transport/grant.ts. The engine maps what it may and reports the peer connected.
Napi::Value Agent::Attach(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArray()) {
    ThrowCode(env, code::kInvalidArgument, "attach(peerId, regions): bad arguments");
  }
#ifdef KVWIRE_HAVE_UCX
  uint32_t peerId = info[0].As<Napi::Number>().Uint32Value();
  std::shared_ptr<PeerInfo> peer = engine_->peerInfo(peerId);
  if (!peer) ThrowCode(env, code::kClosed, "the peer is disconnected");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::unordered_map<uint32_t, std::unique_ptr<RemoteRegion>> regions;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value rv = arr.Get(i);
    if (!rv.IsObject()) ThrowCode(env, code::kBadMetadata, "region entry is not an object");
    Napi::Object r = rv.As<Napi::Object>();
    auto rr = std::make_unique<RemoteRegion>();
    rr->id = static_cast<uint32_t>(NumberOf(r, "id", 0));
    Napi::Value base = r.Get("base");
    bool lossless = false;
    rr->base = base.IsBigInt() ? base.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    rr->length = static_cast<uint64_t>(NumberOf(r, "length", 0));
    rr->access = static_cast<Access>(static_cast<uint32_t>(NumberOf(r, "access", 0)) & 3u);
    uint8_t* rk = nullptr;
    size_t rkLen = 0;
    const bool device = r.Get("device").IsNumber();
    if (MemoryOf(r.Get("rkey"), &rk, &rkLen) && rkLen > 0) {
      // Host memory's key: a shared window of registered memory (share.h), else UCX's rkey.
      rr->hasShare = !device && ShareRecord::Decode(rk, rkLen, &rr->share);
      if (!rr->hasShare) rr->rkey.assign(reinterpret_cast<const char*>(rk), rkLen);
    }
    if (device) {  // device memory (lib/transport/device-key.ts decoded its key)
      rr->device = static_cast<int>(NumberOf(r, "device", -1));
      uint8_t* ih = nullptr;
      size_t ihLen = 0;
      if (MemoryOf(r.Get("ipcHandle"), &ih, &ihLen) && ihLen > 0)
        rr->ipcHandle.assign(reinterpret_cast<const char*>(ih), ihLen);
      rr->ipcOffset = static_cast<uint64_t>(NumberOf(r, "ipcOffset", 0));
      rr->busId = StringOf(r.Get("busId"));
      rr->stagingChunk = static_cast<uint64_t>(NumberOf(r, "stagingChunk", 0));
    }
    regions[rr->id] = std::move(rr);
  }
  // Filled before the engine thread is told: it reads them only after the attach command.
  peer->regions = std::move(regions);
  engine_->Attach(peerId);
#endif
  return env.Undefined();
}

// setGrantKeys(regionId, trusted: Buffer, restricted: Buffer): the device keys a region is granted with.
Napi::Value Agent::SetGrantKeys(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  uint8_t *t = nullptr, *r = nullptr;
  size_t tl = 0, rl = 0;
  if (info.Length() < 3 || !info[0].IsNumber() || !MemoryOf(info[1], &t, &tl) || !MemoryOf(info[2], &r, &rl)) {
    ThrowCode(env, code::kInvalidArgument, "setGrantKeys(regionId, trusted, restricted): bad arguments");
  }
#ifdef KVWIRE_HAVE_UCX
  engine_->SetGrantKeys(info[0].As<Napi::Number>().Uint32Value(), std::string(reinterpret_cast<const char*>(t), tl),
                        std::string(reinterpret_cast<const char*>(r), rl));
#endif
  return env.Undefined();
}

Napi::Value Agent::Disconnect(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
#ifdef KVWIRE_HAVE_UCX
  engine_->Disconnect(info[0].As<Napi::Number>().Uint32Value());
#endif
  return info.Env().Undefined();
}

// post(xferId, op, peerId, descs: Float64Array (stride 5), notify: Uint8Array | null, timeoutMs,
// alone?: boolean)
// -> true when the transfer completed here and now (small, one-sided), false when it was handed to
// the engine thread. Throws (with a code) when the engine refuses it (UcxEngine::Submit).
Napi::Value Agent::Post(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  // A small transfer's whole post is a few µs: each argument is looked at by one N-API call.
  double id = 0, op = 0, peerId = 0, timeoutMs = 0;
  if (info.Length() < 6 || !IntegerArg(env, info[0], 9007199254740991.0, &id) || !IntegerArg(env, info[1], 1, &op) ||
      !IntegerArg(env, info[2], UINT32_MAX, &peerId) || !IntegerArg(env, info[5], UINT32_MAX, &timeoutMs)) {
    ThrowCode(env, code::kInvalidArgument, "post(xferId, op, peerId, descs, notify, timeoutMs): bad arguments");
  }
#ifdef KVWIRE_HAVE_UCX
  // One look at the list (type, length, data): napi_get_typedarray_info fails on anything else.
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, info[3], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || length % 5 != 0 || length == 0) {
    ThrowCode(env, code::kInvalidArgument, "descriptors must be a non-empty Float64Array of stride 5");
  }
  TransferOrder order;
  napi_valuetype notifyType = napi_undefined;
  napi_typeof(env, info[4], &notifyType);
  if (notifyType != napi_null && notifyType != napi_undefined) {
    uint8_t* nd = nullptr;
    if (!MemoryOf(info[4], &nd, &order.notifyLength)) ThrowCode(env, code::kInvalidArgument, "notify must be bytes");
    order.notify = nd;
    order.hasNotify = true;
  }
  const double* d = static_cast<const double*>(data);
  const size_t n = length / 5;
  // Reused by every post of this thread: converting a list allocates nothing once it has grown.
  thread_local std::vector<DescriptorRef> descs;
  descs.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const double* e = d + i * 5;
    for (int k = 0; k < 5; ++k) {
      if (!IsIndex(e[k])) {
        ThrowCode(env, code::kInvalidArgument, "descriptor " + std::to_string(i) + " has a non-integer field");
      }
    }
    descs[i] = DescriptorRef{static_cast<uint32_t>(e[0]), static_cast<uint64_t>(e[1]), static_cast<uint32_t>(e[2]),
                             static_cast<uint64_t>(e[3]), static_cast<uint64_t>(e[4])};
  }
  order.id = static_cast<uint64_t>(id);
  order.op = op == 1 ? Op::kWrite : Op::kRead;
  order.peerId = static_cast<uint32_t>(peerId);
  order.timeoutMs = static_cast<uint32_t>(timeoutMs);
  // alone (optional, default true): no other transfer of the agent is pending.
  order.alone = info.Length() < 7 || !info[6].IsBoolean() || info[6].As<Napi::Boolean>().Value();
  order.descs = descs.data();
  order.count = n;
  SubmitResult r = engine_->Submit(order);
  if (r.code != nullptr) ThrowCode(env, r.code, r.message);
  // Completed on this thread: when (the clock of process.hrtime), so JavaScript need not read it.
  return Napi::Number::New(env, r.completed ? static_cast<double>(NowNs()) : 0.0);
#else
  return Napi::Number::New(env, 0);
#endif
}

Napi::Value Agent::Cancel(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
#ifdef KVWIRE_HAVE_UCX
  std::string c = info.Length() > 1 ? StringOf(info[1]) : "";
  const char* codeStr = c == code::kTimeout ? code::kTimeout : code::kCancelled;
  engine_->Cancel(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()), codeStr);
#endif
  return info.Env().Undefined();
}

// notify(peerId, message: Uint8Array, token)
Napi::Value Agent::Notify(const Napi::CallbackInfo& info) {
  KVWIRE_REQUIRE_OPEN(info);
  Napi::Env env = info.Env();
  uint8_t* data = nullptr;
  size_t len = 0;
  if (info.Length() < 3 || !info[0].IsNumber() || !MemoryOf(info[1], &data, &len) || !info[2].IsNumber()) {
    ThrowCode(env, code::kInvalidArgument, "notify(peerId, message, token): bad arguments");
  }
  if (len > wire::kMaxNotifyBytes) ThrowCode(env, code::kInvalidArgument, "notification larger than 1 MiB");
#ifdef KVWIRE_HAVE_UCX
  engine_->Notify(info[0].As<Napi::Number>().Uint32Value(), std::string(reinterpret_cast<const char*>(data), len),
                  static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()));
#endif
  return env.Undefined();
}

// close() -> true: the engine is closing, and Closed will be its last event (the transfers it
// failed and the regions it released come before it); false: closed already, no event follows.
// Returns at once: the shutdown runs on the engine thread.
Napi::Value Agent::Close(const Napi::CallbackInfo& info) {
  CheckTag(info);
  Napi::Env env = info.Env();
  if (closed_) return Napi::Boolean::New(env, false);
  closed_ = true;  // every other call is refused from here on
#ifdef KVWIRE_HAVE_UCX
  if (engine_ && tsfnLive_) {
    // The Closed event keeps the process alive until it arrives (an idle agent's callback is
    // unref'd; `await agent.close()` at the end of a script must still see it).
    if (!refed_) {
      tsfn_.Ref(env);
      refed_ = true;
    }
    engine_->BeginClose();
    return Napi::Boolean::New(env, true);
  }
#endif
  FinishClose();
  return Napi::Boolean::New(env, false);
}

Napi::Value Agent::Ref(const Napi::CallbackInfo& info) {
  CheckTag(info);
  if (!closed_ && tsfnLive_ && !refed_) {
    tsfn_.Ref(info.Env());
    refed_ = true;
  }
  return info.Env().Undefined();
}

Napi::Value Agent::Unref(const Napi::CallbackInfo& info) {
  CheckTag(info);
  if (!closed_ && tsfnLive_ && refed_) {
    tsfn_.Unref(info.Env());
    refed_ = false;
  }
  return info.Env().Undefined();
}

Napi::Array Agent::EventsToJs(Napi::Env env, std::vector<EngineEvent>& events) {
  Napi::Array out = Napi::Array::New(env, events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EngineEvent& e = events[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", static_cast<double>(e.kind));
    o.Set("id", static_cast<double>(e.id));
    if (e.aux != 0) o.Set("aux", static_cast<double>(e.aux));
    if (!e.code.empty()) o.Set("code", e.code);
    if (!e.text.empty()) o.Set("text", e.text);
    if (e.kind == EngineEvent::Kind::kNotification || e.kind == EngineEvent::Kind::kHandshaked) {
      o.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, e.bytes.data(), e.bytes.size()));
    }
    if ((e.kind == EngineEvent::Kind::kConnected && e.code.empty()) || e.kind == EngineEvent::Kind::kHandshaked) {
      Napi::Object c = Napi::Object::New(env);
      c.Set("transport", e.connection.transport);
      c.Set("lanes", e.connection.lanes);
      c.Set("protocol", e.connection.protocol);
      if (!e.connection.cudaPath.empty()) c.Set("cudaPath", e.connection.cudaPath);
      if (!e.connection.liveness.empty()) c.Set("liveness", e.connection.liveness);
      o.Set("connection", c);
    }
    if (e.kind == EngineEvent::Kind::kTransferDone) {
      o.Set("startNs", static_cast<double>(e.startNs));
      o.Set("postedNs", static_cast<double>(e.postedNs));
      o.Set("doneNs", static_cast<double>(e.doneNs));
    }
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Object ContractObject(Napi::Env env) {
  Napi::Object contract = Napi::Object::New(env);
  Napi::Object kinds = Napi::Object::New(env);
#define KVWIRE_KIND_ENTRY(name) kinds.Set(#name, static_cast<double>(EngineEvent::Kind::k##name));
  KVWIRE_EVENT_KINDS(KVWIRE_KIND_ENTRY)
#undef KVWIRE_KIND_ENTRY
  contract.Set("eventKinds", kinds);
  Napi::Array codes = Napi::Array::New(env);
#define KVWIRE_CODE_ENTRY(name, suffix) codes.Set(codes.Length(), Napi::String::New(env, code::name));
  KVWIRE_ERROR_CODES(KVWIRE_CODE_ENTRY)
#undef KVWIRE_CODE_ENTRY
  contract.Set("errorCodes", codes);
  Napi::Array options = Napi::Array::New(env);
  for (std::string_view n : kAgentOptionNames) {
    options.Set(options.Length(), Napi::String::New(env, n.data(), n.size()));
  }
  contract.Set("agentOptions", options);
  return contract;
}

}  // namespace kvwire
