#ifdef KVWIRE_HAVE_UCX
#include "engine/ucx_memory_hooks.h"

#include <ucm/api/ucm.h>

#include <cstdlib>
#include <mutex>

namespace kvwire {

bool UcxMemoryHooksAtLoad() {
  static const bool atLoad =
      ucm_global_opts.enable_events != 0 && ucm_global_opts.mmap_hook_mode == UCM_MMAP_HOOK_BISTRO;
  return atLoad;
}

void KeepUcxMemoryHooksOff() {
  static std::once_flag once;
  std::call_once(once, [] {
    (void)UcxMemoryHooksAtLoad();  // read before it changes
    if (getenv("UCX_MEM_EVENTS") != nullptr || ucm_global_opts.enable_events == 0) return;
    ucm_global_config_t opts = ucm_global_opts;
    opts.enable_events = 0;
    ucm_set_global_opts(&opts);
  });
}

}  // namespace kvwire
#endif  // KVWIRE_HAVE_UCX
