#!/usr/bin/env bash
# `npm run lint:native`: clang-format (check only) and clang-tidy (.clang-tidy) over native/.
# clang-tidy needs the compile commands, which node-gyp cannot write: cmake-js configures the same
# addon (CMakeLists.txt, from native/sources.txt) into build-tidy/ with CMAKE_EXPORT_COMPILE_COMMANDS,
# which takes seconds and compiles nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(find native -name '*.cc' -o -name '*.h' | sort)
echo "clang-format: ${#files[@]} files"
clang-format --dry-run --Werror "${files[@]}"

if [ ! -f build-tidy/compile_commands.json ] || [ CMakeLists.txt -nt build-tidy/compile_commands.json ] \
  || [ native/sources.txt -nt build-tidy/compile_commands.json ]; then
  npx cmake-js configure --out build-tidy --CDCMAKE_EXPORT_COMPILE_COMMANDS=ON > build-tidy.log 2>&1 \
    || { cat build-tidy.log; exit 1; }
  rm -f build-tidy.log
fi
tidy=$(command -v run-clang-tidy || command -v run-clang-tidy-14 || true)
if [ -z "$tidy" ]; then
  echo "run-clang-tidy not found: apt-get install clang-tidy" >&2
  exit 1
fi
echo "clang-tidy: $(grep -c '"file"' build-tidy/compile_commands.json) translation units"
status=0
"$tidy" -j "$(nproc)" -p build-tidy -quiet "$(pwd)/native/" > build-tidy/clang-tidy.log 2>&1 || status=$?
sed 's/\x1b\[[0-9;]*m//g' build-tidy/clang-tidy.log \
  | grep -v -E '^(clang-tidy |[0-9]+ warnings? generated|Suppressed [0-9]+ warnings|Use -header-filter|Running clang-tidy|Enabled checks|$)' \
  || true
if [ "$status" -ne 0 ]; then echo "clang-tidy found errors (see above)" >&2; fi
exit "$status"
