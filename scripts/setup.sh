#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building and testing Gateway.
# Idempotent and quick when everything is already there.
#
#   scripts/setup.sh                  everything the tests need (Debian packages, NuGet restore)
#   scripts/setup.sh --demo           only what `gateway demo` needs (add --cluster for
#                                     `gateway demo --cluster`, which also runs etcd)
#   scripts/setup.sh [--demo] --check print the missing Debian packages (one line) and exit 1
#                                     if any are missing; installs nothing
# GATEWAY_DPKG_ADMINDIR points dpkg-query at another status database (tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."

demo=0 check=0 cluster=0
for arg in "$@"; do
  case $arg in
    --demo) demo=1 ;;
    --check) check=1 ;;
    --cluster) cluster=1 ;;
    *) echo "setup: unknown option '$arg' (use --demo, --cluster, --check)" >&2; exit 2 ;;
  esac
done

# What `gateway demo` runs: ip, sysctl, ping, tcpdump; libpcap reads the capture it audits.
demo_packages=(libpcap0.8 tcpdump iproute2 iputils-ping procps)
((cluster)) && demo_packages+=(etcd-server etcd-client)
# The tests also run real WireGuard peers, iperf3, tshark, the fuzzer, scapy (ESP vectors) and etcd.
test_packages=("${demo_packages[@]}" wireguard-go wireguard-tools iperf3 tshark afl++ python3-scapy python3-cryptography etcd-server etcd-client openssl)
if ((demo)); then packages=("${demo_packages[@]}"); else packages=("${test_packages[@]}"); fi

dpkg_args=()
[[ -n ${GATEWAY_DPKG_ADMINDIR:-} ]] && dpkg_args=(--admindir="$GATEWAY_DPKG_ADMINDIR")
need=()
for pkg in "${packages[@]}"; do
  dpkg-query "${dpkg_args[@]}" -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done

if ((check)); then
  ((${#need[@]})) || exit 0
  echo "${need[*]}"
  exit 1
fi

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${need[*]}); as root run: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# wireguard-go 0.0.20231211 (bookworm-backports: TUN TCP/UDP GRO, UDP GSO/GRO) for the throughput
# comparison in perf/netns and the interop tests, unpacked from its .deb into a private directory
# so that bookworm's 0.0.20220316 stays /usr/bin/wireguard-go. The backports source is pinned to
# priority 1: nothing is ever installed or upgraded from it. (The binary calls itself v0.0.20230223:
# upstream did not bump version.go for that release.)
wgo_modern=/opt/wireguard-go-20231211
if ((!demo)) && [[ ! -x $wgo_modern/usr/bin/wireguard-go && $(id -u) -eq 0 ]]; then
  list=/etc/apt/sources.list.d/gateway-bookworm-backports.sources
  if [[ ! -f $list ]]; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$list"
    printf 'Package: *\nPin: release n=bookworm-backports\nPin-Priority: 1\n' > /etc/apt/preferences.d/gateway-bookworm-backports
    apt-get update -qq
  fi
  dl=$(mktemp -d)
  chmod 755 "$dl"
  (cd "$dl" && apt-get download -qq wireguard-go=0.0.20231211-1~bpo12+1 2>/dev/null)
  mkdir -p "$wgo_modern"
  dpkg-deb -x "$dl"/wireguard-go_*.deb "$wgo_modern"
  rm -rf "$dl"
  echo "setup: wireguard-go 0.0.20231211 in $wgo_modern/usr/bin"
fi

if ! command -v dotnet >/dev/null; then
  echo "setup: the .NET 10 SDK is required (dotnet not found on PATH)" >&2
  exit 1
fi
((demo)) && exit 0
dotnet restore Gateway.sln --nologo -v quiet
[[ -f .config/dotnet-tools.json ]] && dotnet tool restore >/dev/null
# dotnet-counters watches a running daemon's meters (docs/metrics.md); a test runs it against `gateway up`.
[[ -x .build/tools/dotnet-counters ]] || dotnet tool install dotnet-counters --version 10.0.750501 --tool-path .build/tools >/dev/null
