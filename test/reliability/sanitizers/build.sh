#!/usr/bin/env bash
# Builds the addon with a sanitizer into build-sanitize/<kind>/ (its own build tree: build/ and
# prebuilds/ stay untouched), with cmake-js from the same CMakeLists.txt and native/sources.txt as
# the release build. Incremental: a second run rebuilds only what changed.
#   test/reliability/sanitizers/build.sh asan|tsan
# Prints the path of the built kvwire.node on its last line.
set -euo pipefail
kind="${1:?usage: build.sh asan|tsan}"
cd "$(dirname "$0")/../../.."
case "$kind" in
  asan) flags="-fsanitize=address -fno-omit-frame-pointer -fno-sanitize-recover=address" ;;
  tsan) flags="-fsanitize=thread -fno-omit-frame-pointer" ;;
  *) echo "unknown sanitizer '$kind' (asan or tsan)" >&2; exit 2 ;;
esac
# node-gyp and cmake-js build offline against Node's own headers where the distribution has them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ]; then export npm_config_nodedir=/usr; fi
out="build-sanitize/$kind"
# -O1 -g1: what sanitizer builds usually run at (reports keep function names and lines), and lighter
# to compile than -O2 -g: on the 2-core CI machine these two builds are much of the suite's CI part.
# cmake-js compile configures only a new build tree: start afresh when the flags changed.
stamp="$flags -O1 -g1"
if [ -d "$out" ] && [ "$(cat "$out/flags.txt" 2>/dev/null)" != "$stamp" ]; then rm -rf "$out"; fi
mkdir -p "$out" && printf '%s' "$stamp" > "$out/flags.txt"
npx cmake-js compile --out "$out" --config RelWithDebInfo \
  --CDCMAKE_CXX_FLAGS="$flags" --CDCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  --CDCMAKE_SHARED_LINKER_FLAGS="${flags%% *}" >&2
echo "$PWD/$out/RelWithDebInfo/kvwire.node"
