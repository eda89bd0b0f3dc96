#!/usr/bin/env bash
# Installs what this machine lacks (Debian packages, NuGet packages), builds
# everything and runs every test project, then a 30-second fuzz smoke run per fuzz target.
# Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")"
scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

results=.test-results
rm -rf "$results"; mkdir -p "$results"
if ! dotnet build Gateway.sln -c Release --nologo -v quiet -tl:off "-clp:ErrorsOnly;NoSummary"; then
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi

passed=0 failed=0 skipped=0 rc=0
for proj in tests/*/*.csproj; do
  name=$(basename "$proj" .csproj)
  dotnet test "$proj" -c Release --no-build --nologo \
      --blame-hang-timeout 10m \
      --logger "trx;LogFileName=$name.trx" --results-directory "$results" 2>&1 | tee "$results/$name.log"
  status=${PIPESTATUS[0]}
  trx="$results/$name.trx"
  if [[ -f "$trx" ]]; then
    counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
    get() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
    p=$(get passed) f=$(get failed) t=$(get total) e=$(get executed)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${t:-0} - ${e:-0}))
    if [[ $status -ne 0 && ${f:-0} -eq 0 ]]; then failed=$((failed + 1)); fi
  else
    echo "$name: no test results (exit $status)"; failed=$((failed + 1))
  fi
  [[ $status -ne 0 ]] && rc=1
done
# Fuzz smoke: 30 s of AFL++ per target (scripts/fuzz.sh), each target counted as one test;
# a crash fails it and leaves the input in .build/fuzz-findings/TARGET/.
for target in flow engine vxlan uapi wgquick yaml capture; do
  scripts/fuzz.sh "$target" "${FUZZ_SMOKE_SECONDS:-30}" 2>&1 | tee "$results/fuzz-$target.log"
  if [[ ${PIPESTATUS[0]} -eq 0 ]]; then
    passed=$((passed + 1))
  else
    echo "fuzz smoke $target: FAILED"; failed=$((failed + 1)); rc=1
  fi
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
