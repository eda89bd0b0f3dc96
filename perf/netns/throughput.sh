#!/usr/bin/env bash
# Measures TCP throughput through a WireGuard tunnel between two network namespaces joined by
# a veth pair, for gateway-to-gateway and wireguard-go-to-wireguard-go, in the same run, and
# prints both and their ratio. Root only. Traffic stays inside the namespaces this script makes.
#
#   perf/netns/throughput.sh [SECONDS] [ROUNDS]
#   GATEWAY_UP_ARGS="--crypto-workers 0" perf/netns/throughput.sh   # extra `gateway up` options
#
# Each round measures both implementations back to back (alternating which goes first), so
# load from elsewhere on the machine hits both alike; the median of the rounds is reported.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
rounds=${2:-3}
[[ $(id -u) -eq 0 ]] || { echo "throughput.sh: needs root (network namespaces, TUN)" >&2; exit 2; }
for tool in wireguard-go wg iperf3 ip; do
  command -v $tool >/dev/null || { echo "throughput.sh: needs $tool (scripts/setup.sh installs it)" >&2; exit 2; }
done

out=.build/cli
./gateway --help >/dev/null   # builds the CLI when needed
id=$$
nsa=gwpa$id nsb=gwpb$id
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del $nsa 2>/dev/null || true
  ip netns del $nsb 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ip netns add $nsa; ip netns add $nsb
ip -n $nsa link set lo up; ip -n $nsb link set lo up
ip link add vpa$id netns $nsa type veth peer name vpb$id netns $nsb
ip -n $nsa addr add 192.168.242.1/24 dev vpa$id; ip -n $nsa link set vpa$id up
ip -n $nsb addr add 192.168.242.2/24 dev vpb$id; ip -n $nsb link set vpb$id up

ka=$(./gateway genkey 2>/dev/null || wg genkey); kb=$(wg genkey)
pa=$(echo "$ka" | wg pubkey); pb=$(echo "$kb" | wg pubkey)

conf() { # private peerpub address peeraddr peerunderlay
  cat <<C
[Interface]
PrivateKey = $1
ListenPort = 51820
Address = $3/24

[Peer]
PublicKey = $2
AllowedIPs = $4/32
Endpoint = $5:51820
C
}

wait_sock() { for _ in $(seq 300); do [[ -S /var/run/wireguard/$1.sock ]] && return 0; sleep 0.05; done; echo "$1 did not start" >&2; return 1; }

start_gateway() {
  conf "$ka" "$pb" 10.242.0.1 10.242.0.2 192.168.242.2 > "$tmp/a.conf"
  conf "$kb" "$pa" 10.242.0.2 10.242.0.1 192.168.242.1 > "$tmp/b.conf"
  ip netns exec $nsa dotnet $out/gateway.dll up "$tmp/a.conf" --interface tpa$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/a.log" & pids+=($!)
  ip netns exec $nsb dotnet $out/gateway.dll up "$tmp/b.conf" --interface tpb$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/b.log" & pids+=($!)
  wait_sock tpa$id; wait_sock tpb$id
}

start_wggo() {
  WG_PROCESS_FOREGROUND=1 ip netns exec $nsa wireguard-go -f tpa$id >/dev/null 2>&1 & pids+=($!)
  WG_PROCESS_FOREGROUND=1 ip netns exec $nsb wireguard-go -f tpb$id >/dev/null 2>&1 & pids+=($!)
  wait_sock tpa$id; wait_sock tpb$id
  echo "$ka" > "$tmp/ka"; echo "$kb" > "$tmp/kb"
  ip netns exec $nsa wg set tpa$id listen-port 51820 private-key "$tmp/ka" peer "$pb" allowed-ips 10.242.0.2/32 endpoint 192.168.242.2:51820
  ip netns exec $nsb wg set tpb$id listen-port 51820 private-key "$tmp/kb" peer "$pa" allowed-ips 10.242.0.1/32 endpoint 192.168.242.1:51820
  ip -n $nsa addr add 10.242.0.1/24 dev tpa$id; ip -n $nsa link set tpa$id mtu 1420 up
  ip -n $nsb addr add 10.242.0.2/24 dev tpb$id; ip -n $nsb link set tpb$id mtu 1420 up
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  ip -n $nsa link del tpa$id 2>/dev/null || true
  ip -n $nsb link del tpb$id 2>/dev/null || true
}

measure() { # prints bits per second
  ip netns exec $nsa ping -c 2 -i 0.2 -W 3 10.242.0.2 >/dev/null
  ip netns exec $nsb iperf3 -s -1 -B 10.242.0.2 >/dev/null 2>&1 & local server=$!
  local json=""
  for _ in $(seq 50); do
    json=$(ip netns exec $nsa iperf3 -c 10.242.0.2 -t "$seconds" -J 2>/dev/null || true)
    grep -q '"sum_received"' <<<"$json" && break
    sleep 0.1
  done
  wait $server 2>/dev/null || true
  # The receiver's total: "sum_received": { ... "bits_per_second": N ... }
  tr -d '\n\t ' <<<"$json" | grep -o '"sum_received":{[^}]*}' | grep -o '"bits_per_second":[0-9.e+]*' | cut -d: -f2 | awk '{ printf "%d\n", $1 }'
}

gw=() go=()
for r in $(seq "$rounds"); do
  if (( r % 2 )); then order="gateway wggo"; else order="wggo gateway"; fi
  for impl in $order; do
    start_$impl
    bps=$(measure)
    stop_all
    if [[ $impl == gateway ]]; then gw+=("$bps"); else go+=("$bps"); fi
    awk -v r="$r" -v i="$impl" -v b="$bps" 'BEGIN { printf "round %d %-13s %8.1f Mbit/s\n", r, i, b / 1e6 }'
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mg=$(median "${gw[@]}"); mw=$(median "${go[@]}")
awk -v g="$mg" -v w="$mw" -v n="$rounds" -v s="$seconds" 'BEGIN {
  printf "gateway-to-gateway:           %8.1f Mbit/s (median of %d x %ss)\n", g / 1e6, n, s
  printf "wireguard-go-to-wireguard-go: %8.1f Mbit/s (median of %d x %ss)\n", w / 1e6, n, s
  printf "ratio gateway / wireguard-go: %8.2f\n", g / w }'
