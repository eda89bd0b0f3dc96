#!/usr/bin/env bash
# Regenerates PublicAPI.Unshipped.txt of every library project (src/*, except the CLI) from the
# code, with Microsoft.CodeAnalysis.PublicApiAnalyzers' own findings: public symbols not on record
# (RS0016) are added, records of symbols that are gone or no longer public (RS0017) are removed.
# Run it after changing a public API or merging a branch that did, then review
#   git diff -- '*PublicAPI*.txt'
# that diff is the API change. At a release, move the Unshipped lines into PublicAPI.Shipped.txt.
#   scripts/public-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build
projects=()
for proj in src/*/*.csproj; do
  [[ $(basename "$proj") == Gateway.Cli.csproj ]] && continue
  projects+=("$proj")
  dir=$(dirname "$proj")
  for f in PublicAPI.Shipped.txt PublicAPI.Unshipped.txt; do
    [[ -f "$dir/$f" ]] || printf '#nullable enable\n' > "$dir/$f"
  done
done
# One build of every library with the findings as warnings (so every project builds and reports).
filter=.build/public-api.slnf
{
  printf '{ "solution": { "path": "../Gateway.sln", "projects": ['
  sep=""
  for proj in "${projects[@]}"; do printf '%s"%s"' "$sep" "${proj//\//\\\\}"; sep=", "; done
  printf '] } }\n'
} > "$filter"
log=.build/public-api.log
for pass in 1 2 3; do
  dotnet build "$filter" -c Release --nologo --no-incremental -v quiet -tl:off "-clp:NoSummary" \
    -p:TreatWarningsAsErrors=false > "$log" 2>&1 || true
  if grep -qE ': error ' "$log" && ! grep -qE ': error RS00' "$log"; then
    grep -E ': error ' "$log" | sort -u >&2
    echo "public-api.sh: the libraries do not build; fix that first" >&2
    exit 1
  fi
  # "src/X/File.cs(1,2): warning RS0016: Symbol 'S' is not part of the declared public API (...) [src/X/X.csproj]"
  changed=$(python3 - "$log" <<'PY'
import re, sys, os, collections
adds, removes = collections.defaultdict(set), collections.defaultdict(set)
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r"(warning|error) (RS0016|RS0017): Symbol '(.*?)' is (?:not part of|part of) the declared (?:public )?API.*\[(.*?\.csproj)\]", line)
    if not m:
        continue
    unshipped = os.path.join(os.path.dirname(m.group(4)), "PublicAPI.Unshipped.txt")
    (adds if m.group(2) == "RS0016" else removes)[unshipped].add(m.group(3))
for path in set(adds) | set(removes):
    lines = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
    body = {l for l in lines if l and l != "#nullable enable"}
    body = (body | adds[path]) - removes[path]
    with open(path, "w", encoding="utf-8") as f:
        f.write("#nullable enable\n" + "".join(l + "\n" for l in sorted(body, key=lambda s: s.encode())))
    print(f"{path}: +{len(adds[path])} -{len(removes[path] & set(lines))}")
PY
)
  [[ -z $changed ]] && break
  echo "$changed"
done
others=$(grep -oE 'warning RS00[0-9]+: .*' "$log" | grep -vE 'RS001[67]' | sort -u || true)
if [[ -n $others ]]; then
  echo "public-api.sh: findings that need a code change, not a record:" >&2
  echo "$others" >&2
  exit 1
fi
for proj in "${projects[@]}"; do
  unshipped="$(dirname "$proj")/PublicAPI.Unshipped.txt"
  echo "$unshipped: $(($(wc -l < "$unshipped") - 1)) symbols"
done
