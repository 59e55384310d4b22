#include "capabilities.h"

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "cuda/driver.h"
#ifdef KVWIRE_HAVE_UCX
#include <ucp/api/ucp.h>
#include <uct/api/uct.h>
#endif

namespace kvwire {

namespace {

#ifdef KVWIRE_HAVE_UCX
struct TlResource {
  std::string name, device, type;
};

const char* DeviceType(uct_device_type_t t) {
  switch (t) {
    case UCT_DEVICE_TYPE_NET:
      return "net";
    case UCT_DEVICE_TYPE_SHM:
      return "shm";
    case UCT_DEVICE_TYPE_ACC:
      return "acc";
    case UCT_DEVICE_TYPE_SELF:
      return "self";
    default:
      return "other";
  }
}

// The transports UCX can use on this machine, as `ucx_info -d` lists them.
std::vector<TlResource> ListTransports(std::string* error) {
  std::vector<TlResource> out;
  uct_component_h* components = nullptr;
  unsigned count = 0;
  if (uct_query_components(&components, &count) != UCS_OK) {
    *error = "uct_query_components failed";
    return out;
  }
  for (unsigned c = 0; c < count; ++c) {
    uct_component_attr_t attr{};
    attr.field_mask = UCT_COMPONENT_ATTR_FIELD_NAME | UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
    if (uct_component_query(components[c], &attr) != UCS_OK) continue;
    std::vector<uct_md_resource_desc_t> mds(attr.md_resource_count);
    attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
    attr.md_resources = mds.data();
    if (attr.md_resource_count == 0 || uct_component_query(components[c], &attr) != UCS_OK) continue;
    for (auto& md : mds) {
      uct_md_config_t* cfg = nullptr;
      if (uct_md_config_read(components[c], nullptr, nullptr, &cfg) != UCS_OK) continue;
      uct_md_h mdh = nullptr;
      ucs_status_t st = uct_md_open(components[c], md.md_name, cfg, &mdh);
      uct_config_release(cfg);
      if (st != UCS_OK) continue;
      uct_tl_resource_desc_t* tls = nullptr;
      unsigned ntl = 0;
      if (uct_md_query_tl_resources(mdh, &tls, &ntl) == UCS_OK) {
        for (unsigned t = 0; t < ntl; ++t) {
          out.push_back({tls[t].tl_name, tls[t].dev_name, DeviceType(tls[t].dev_type)});
        }
        uct_release_tl_resource_list(tls);
      }
      uct_md_close(mdh);
    }
  }
  uct_release_component_list(components);
  return out;
}
#endif

}  // namespace

Napi::Value Capabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);

  Napi::Object ucx = Napi::Object::New(env);
#ifdef KVWIRE_HAVE_UCX
  ucx.Set("built", true);
  ucx.Set("version", ucp_get_version_string());
  std::string error;
  auto tls = ListTransports(&error);
  Napi::Array arr = Napi::Array::New(env, tls.size());
  for (size_t i = 0; i < tls.size(); ++i) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("name", tls[i].name);
    t.Set("device", tls[i].device);
    t.Set("type", tls[i].type);
    arr.Set(static_cast<uint32_t>(i), t);
  }
  ucx.Set("transports", arr);
  if (!error.empty()) ucx.Set("reason", error);
  const char* envTls = getenv("UCX_TLS");
  if (envTls != nullptr) ucx.Set("tlsEnv", envTls);
#else
  ucx.Set("built", false);
  ucx.Set("reason",
          "kvwire was built without UCX (libucx-dev was not found by pkg-config); install libucx-dev and run "
          "`npm rebuild kvwire`");
  ucx.Set("transports", Napi::Array::New(env));
#endif
  out.Set("ucx", ucx);

  Napi::Object cuda = Napi::Object::New(env);
  const cuda::Driver& d = cuda::GetDriver();
#ifdef KVWIRE_HAVE_CUDA_HEADERS
  cuda.Set("headers", true);
#else
  cuda.Set("headers", false);
#endif
  cuda.Set("driver", d.loaded);
  cuda.Set("devices", d.devices);
  if (d.version != 0) cuda.Set("driverVersion", d.version);
  if (!d.loaded) cuda.Set("reason", d.reason);
  out.Set("cuda", cuda);
  return out;
}

}  // namespace kvwire
