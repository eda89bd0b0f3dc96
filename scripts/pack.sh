#!/usr/bin/env bash
# Packs the library projects (every src/* project except the gateway CLI) into NuGet packages:
# .nupkg with XML docs and the package README, .snupkg with portable PDBs that embed the sources.
#   scripts/pack.sh [OUTPUT_DIR] [VERSION]
# OUTPUT_DIR defaults to .build/packages; VERSION defaults to 0.1.0-dev.<UTC timestamp>, so every
# pack is a new version and a restore never picks up a stale copy from the NuGet cache.
# The version is written to OUTPUT_DIR/VERSION. Prints the packages made.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-.build/packages}")
version=${2:-0.1.0-dev.$(date -u +%Y%m%d%H%M%S)}
mkdir -p "$out"
# One solution filter over the library projects: one build of the graph, every package from it.
mkdir -p .build
filter=.build/pack.slnf
{
  printf '{ "solution": { "path": "../Gateway.sln", "projects": ['
  sep=""
  for proj in src/*/*.csproj; do
    [[ $(basename "$proj") == Gateway.Cli.csproj ]] && continue
    grep -qF "$(basename "$proj")" Gateway.sln || { echo "pack.sh: $proj is not in Gateway.sln" >&2; exit 2; }
    printf '%s"%s"' "$sep" "${proj//\//\\\\}"
    sep=", "
  done
  printf '] } }\n'
} > "$filter"
# Its own artifacts folder: packing never touches the bin/obj of the everyday build.
dotnet pack "$filter" -c Release --nologo -v quiet -tl:off "-clp:ErrorsOnly;NoSummary" \
  --artifacts-path .build/pack-artifacts \
  -p:PackageOutputPath="$out/" -p:Version="$version" -p:ContinuousIntegrationBuild=true
echo "$version" > "$out/VERSION"
ls "$out" | grep -F ".$version." | sed "s|^|$out/|"
