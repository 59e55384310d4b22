#!/usr/bin/env bash
# Packs what a GPU machine without Node needs to run kvwire's GPU checks (tools/gpu/run.sh) into
# .dev/ (ignored by git; name it in the device tool's `carry` with dist and build/Release):
# this machine's Node binary, the runtime closure of node_modules (the package's dependencies
# and vitest, other platforms' prebuilt binaries left out), and the UCX libraries the addon links
# (Debian's libucx0 1.13 and libnuma). Build first: `npm install && npm run compile && tsc -p
# tsconfig.test.json` (dist/test/fixtures holds the forked peers). The GPU machine must be x86-64
# Linux with a glibc at least this machine's.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.dev
rm -rf "$out" && mkdir -p "$out/ucx/ucx"
test -f build/Release/kvwire.node || { echo "build/Release/kvwire.node is missing: npm install first" >&2; exit 1; }
test -f dist/test/fixtures/cuda-peer.js || { echo "dist/test is missing: npx tsc -p tsconfig.test.json" >&2; exit 1; }
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" >"$out/node.xz"
node tools/gpu/closure.mjs vitest @sinclair/typebox cli-progress >"$out/node_modules.txt"
tar -cf - --exclude='node_modules/zeromq/build/darwin' --exclude='node_modules/zeromq/build/win32' \
  --exclude='node_modules/zeromq/build/linux/arm64' --exclude='node_modules/@types' \
  -T "$out/node_modules.txt" | xz -T0 -6 >"$out/node_modules.tar.xz"
for lib in $(ldd build/Release/kvwire.node | awk '/libuc[pstm]\.so|libnuma\.so/ { print $3 }'); do
  cp -L "$lib" "$out/ucx/"
done
cp -L "$(dirname "$(ldd build/Release/kvwire.node | awk '/libuct\.so/ { print $3 }')")"/ucx/libuct_cma.so.0 "$out/ucx/ucx/"
du -sh "$out" dist build/Release
