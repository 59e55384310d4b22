#include <napi.h>
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("hello", Napi::String::New(env, "kvwire"));
  return exports;
}
NODE_API_MODULE(kvwire, Init)
