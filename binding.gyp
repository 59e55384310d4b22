# One list of sources for both build systems: native/sources.txt (CMakeLists.txt reads it too).
# UCX is optional: found with pkg-config; without it the addon builds with the loopback engine only.
# CUDA is never linked: the driver is loaded at run time (dlopen); only its headers are used.
{
  "variables": {
    "have_ucx%": "<!(pkg-config --exists ucx && echo 1 || echo 0)",
    "cuda_include%": "<!(node -p \"['/usr/local/cuda/include','/usr/local/cuda-13.0/include','/usr/include'].find(d=>require('fs').existsSync(d+'/cuda.h'))||''\")"
  },
  "targets": [
    {
      "target_name": "kvwire",
      "sources": ["<!@(node -p \"require('fs').readFileSync('native/sources.txt','utf8').split(/\\s+/).filter(Boolean).join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["-ldl", "-lpthread"],
      "conditions": [
        ["have_ucx==1", {
          "defines": ["KVWIRE_HAVE_UCX=1"],
          "cflags_cc": ["<!@(pkg-config --cflags ucx)"],
          "libraries": ["<!@(pkg-config --libs ucx)"]
        }],
        ["cuda_include!=''", {
          "defines": ["KVWIRE_HAVE_CUDA_HEADERS=1"],
          "include_dirs": ["<(cuda_include)"]
        }]
      ]
    }
  ]
}
