#!/usr/bin/env bash
# Fuzzes one target with AFL++ through SharpFuzz for SECONDS seconds.
#   scripts/fuzz.sh TARGET SECONDS      TARGET: flow engine vxlan uapi wgquick yaml capture
#   FUZZ_EXECS=N scripts/fuzz.sh ...    also stop once about N executions are done
#   FUZZ_RESUME=1 scripts/fuzz.sh ...   keep the output in .build/fuzz-out/TARGET and resume it
#   scripts/fuzz.sh TARGET --replay FILE...   runs inputs once, without afl-fuzz (a crash, say)
# Builds fuzz/Gateway.Fuzz into .build/fuzz (again only when sources changed), instruments the
# Gateway assemblies there with the repository's local sharpfuzz tool, seeds afl-fuzz from
# fuzz/corpus/TARGET and prints one line:
#   fuzz TARGET: EXECS execs in SECONDS s (RATE/s), PATHS paths, CRASHES crashes, HANGS hangs
# Crashing inputs are copied to .build/fuzz-findings/TARGET/ and make the exit status 1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=${1:-}
targets="flow engine vxlan uapi wgquick yaml capture"
if [[ -z $target || " $targets " != *" $target "* || -z ${2:-} ]]; then
  echo "usage: scripts/fuzz.sh TARGET SECONDS | scripts/fuzz.sh TARGET --replay FILE...  (TARGET: $targets)" >&2
  exit 2
fi
out="$root/.build/fuzz"
stamp="$out/.instrumented"

# Build and instrument once per source change (several fuzz runs may share one build).
mkdir -p "$root/.build"
exec 9>"$root/.build/fuzz.lock"
flock 9
if [[ ! -f $stamp ]] || [[ -n "$(find src fuzz Directory.Build.props Directory.Packages.props -newer "$stamp" \
      \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' \) -print -quit 2>/dev/null)" ]]; then
  rm -rf "$out" "$root/.build/fuzz-build"
  dotnet build fuzz/Gateway.Fuzz/Gateway.Fuzz.csproj -c Release -o "$root/.build/fuzz-build" --nologo -v quiet -tl:off \
    "-clp:ErrorsOnly;NoSummary" >&2
  cp -r "$root/.build/fuzz-build" "$out"
  dotnet tool restore >/dev/null
  for dll in "$out"/Gateway.*.dll; do
    [[ $(basename "$dll") == Gateway.Fuzz.dll ]] && continue
    dotnet sharpfuzz "$dll" >/dev/null
  done
  touch "$stamp"
fi
flock -u 9

if [[ $2 == --replay ]]; then
  shift 2
  # The plain build: instrumented assemblies need the fuzzer's shared memory.
  exec dotnet "$root/.build/fuzz-build/Gateway.Fuzz.dll" "$target" "$@"
fi
seconds=$2
command -v afl-fuzz >/dev/null || { echo "fuzz: afl-fuzz not found (scripts/setup.sh installs afl++)" >&2; exit 2; }

if [[ -n ${FUZZ_RESUME:-} ]]; then
  # Long runs: one output directory per target that later runs resume (AFL_AUTORESUME), so
  # executions and the corpus add up across runs.
  findings="$root/.build/fuzz-out/$target"
  mkdir -p "$findings"
  export AFL_AUTORESUME=1
else
  findings=$(mktemp -d "/tmp/gateway-fuzz-$target-XXXXXX")
  trap 'rm -rf "$findings"' EXIT
fi
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_QUIET=1 \
       AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SHUFFLE_QUEUE=0 AFL_FAST_CAL=1
export GATEWAY_FUZZ_CRASH_LOG="$findings/exceptions.log"
limit=(-V "$seconds")
[[ -n ${FUZZ_EXECS:-} ]] && limit+=(-E "$FUZZ_EXECS")
# On a loaded machine the first start of the .NET fork server now and then reaches afl-fuzz's
# dry run before the instrumented code has reported ("No instrumentation detected"): that is a
# failed start, not a finding, so it is tried once more; any other failure counts at once.
for attempt in 1 2; do
  if afl-fuzz "${limit[@]}" -i "fuzz/corpus/$target" -o "$findings" -t 10000 -m none \
       -- dotnet "$out/Gateway.Fuzz.dll" "$target" >"$findings/afl.log" 2>&1; then
    break
  fi
  if [[ $attempt == 1 ]] && grep -q "No instrumentation detected" "$findings/afl.log"; then
    echo "fuzz $target: afl-fuzz saw no instrumentation on its dry run; starting again" >&2
    [[ -n ${FUZZ_RESUME:-} ]] || { rm -rf "$findings"; mkdir -p "$findings"; }
    continue
  fi
  echo "fuzz $target: afl-fuzz failed:" >&2; tail -20 "$findings/afl.log" >&2; exit 1
done

stats="$findings/default/fuzzer_stats"
get() { sed -n "s/^$1 *: *//p" "$stats"; }
execs=$(get execs_done) runtime=$(get run_time) paths=$(get corpus_count) crashes=$(get saved_crashes) hangs=$(get saved_hangs)
summary="fuzz $target: $execs execs in ${runtime} s ($(get execs_per_sec)/s), $paths paths, $crashes crashes, $hangs hangs"
echo "$summary"
echo "$(date -u +%FT%TZ) $summary" >>"$root/.build/fuzz-results.log"
if [[ ${crashes:-0} -gt 0 ]]; then
  mkdir -p "$root/.build/fuzz-findings/$target"
  cp "$findings"/default/crashes/id* "$root/.build/fuzz-findings/$target/"
  [[ -f $findings/exceptions.log ]] && cp "$findings/exceptions.log" "$root/.build/fuzz-findings/$target/"
  echo "fuzz $target: crashing inputs in .build/fuzz-findings/$target/ (replay: scripts/fuzz.sh $target --replay FILE)" >&2
  exit 1
fi
