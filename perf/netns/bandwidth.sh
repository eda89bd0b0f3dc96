#!/usr/bin/env bash
# Pod bandwidth limits through two overlay nodes (docs/bandwidth.md), next to the kernel's tbf at
# the same rates: runs the network-namespace tests of tests/Gateway.Cli.Tests/Overlay/BandwidthTests.cs
# (two `gateway up` nodes, pods in their own namespaces, iperf3 and ping between them) and prints
# the figures they report with the load average. Root only; traffic stays inside the namespaces
# the tests make. One heavy run at a time: it measures rates.
#
#   perf/netns/bandwidth.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) -eq 0 ]] || { echo "bandwidth.sh: needs root (network namespaces, TUN)" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "bandwidth.sh: needs iperf3 (scripts/setup.sh installs it)" >&2; exit 2; }
dotnet build tests/Gateway.Cli.Tests -c Release --nologo -v quiet -tl:off "-clp:ErrorsOnly;NoSummary" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test tests/Gateway.Cli.Tests -c Release --no-build --nologo \
  --filter "FullyQualifiedName~Gateway.Cli.Tests.Overlay.BandwidthTests" \
  --logger "console;verbosity=detailed" >"$log" 2>&1 || status=$?
grep -E "^\s+(Passed|Failed) Gateway|^ (load|slow|tbf|UDP|ping)" "$log" | sed 's/^ *//'
exit $status
