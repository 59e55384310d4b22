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
# CMakeLists.txt reads native/sources.txt when it configures, and cmake-js compile does not
# configure again when that list changes (a source added since the last build is not compiled, and
# the addon fails to load with an undefined symbol): start the build tree afresh when the list differs.
if [ -d "$out" ] && ! cmp -s native/sources.txt "$out/sources.txt"; then rm -rf "$out"; fi
mkdir -p "$out" && cp native/sources.txt "$out/sources.txt"
npx cmake-js compile --out "$out" --config RelWithDebInfo \
  --CDCMAKE_CXX_FLAGS="$flags -g" --CDCMAKE_SHARED_LINKER_FLAGS="${flags%% *}" >&2
echo "$PWD/$out/RelWithDebInfo/kvwire.node"
