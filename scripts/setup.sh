#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building and testing Gateway.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libpcap0.8 wireguard-go wireguard-tools iperf3 tcpdump tshark iproute2 iputils-ping procps python3-scapy python3-cryptography etcd-server openssl etcd-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${need[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# wireguard-go 0.0.20231211 (bookworm-backports: TUN TCP/UDP GRO, UDP GSO/GRO) for the throughput
# comparison in perf/netns and the interop tests, unpacked from its .deb into a private directory
# so that bookworm's 0.0.20220316 stays /usr/bin/wireguard-go. The backports source is pinned to
# priority 1: nothing is ever installed or upgraded from it. (The binary calls itself v0.0.20230223:
# upstream did not bump version.go for that release.)
wgo_modern=/opt/wireguard-go-20231211
if [[ ! -x $wgo_modern/usr/bin/wireguard-go && $(id -u) -eq 0 ]]; then
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
dotnet restore Gateway.sln --nologo -v quiet
