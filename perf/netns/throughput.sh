#!/usr/bin/env bash
# Measures TCP throughput (iperf3) through a WireGuard tunnel between two network namespaces
# joined by a veth pair: gateway-to-gateway against wireguard-go-to-wireguard-go, in the same run,
# in plain mode and in overlay mode, and prints the figures and their ratios. Root only. Traffic
# stays inside the namespaces this script makes.
#
#   perf/netns/throughput.sh [SECONDS] [ROUNDS]
#   MODES="plain" perf/netns/throughput.sh                      # plain only (default: plain overlay)
#   WGO=/usr/bin/wireguard-go perf/netns/throughput.sh          # another wireguard-go build
#   GATEWAY_UP_ARGS="--crypto-workers 0" perf/netns/throughput.sh
#   GATEWAY_AEAD=libsodium perf/netns/throughput.sh             # gateway without OpenSSL's AEAD
#   IMPLS=gateway perf/netns/throughput.sh 5 10                 # gateway only, plain and overlay
#                                                               # alternated in every round
#
# The default peer is wireguard-go 0.0.20231211 (Debian bookworm-backports, TUN TCP/UDP GRO and
# UDP GSO), which scripts/setup.sh unpacks into /opt/wireguard-go-20231211.
# Plain: iperf3 between the tunnel addresses. Overlay: iperf3 between "pod" addresses behind the
# nodes (on lo), so every packet goes through VXLAN inside WireGuard: gateway's overlay mode
# (identity in the VNI, policy at both ends), and for wireguard-go a Linux vxlan device over its
# interface (VXLAN inside WireGuard, no policy), MTU 1370 on both.
# Each round measures both implementations back to back (alternating which goes first), so load
# from elsewhere on the machine hits both alike; the median of the rounds is reported. With
# IMPLS=gateway (no wireguard-go) each round runs gateway in every mode instead, so the overlay /
# plain ratio is taken from neighbouring runs. Each gateway line also gives the CPU time both
# gateway processes used per Gbit received (clock ticks of /proc/PID/stat, 100 per second).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
rounds=${2:-3}
modes=${MODES:-plain overlay}
wgo=${WGO:-/opt/wireguard-go-20231211/usr/bin/wireguard-go}
script=throughput.sh
source perf/netns/lib.sh
needs_root_and wg iperf3 ip
[[ -x $wgo ]] || { echo "throughput.sh: no wireguard-go at $wgo (scripts/setup.sh installs 0.0.20231211 there)" >&2; exit 2; }
netns_pair p 192.168.242
ka=$(wg genkey); kb=$(wg genkey)
pa=$(echo "$ka" | wg pubkey); pb=$(echo "$kb" | wg pubkey)
write_pods

conf() { # mode private peerpub address peeraddr peerunderlay pods peerpods
  echo "[Interface]"
  echo "PrivateKey = $2"
  echo "ListenPort = 51820"
  echo "Address = $4/24"
  if [[ $1 == overlay ]]; then
    printf '\n[Overlay]\nTunnelAddress = %s\nPodCIDR = %s\nClusterCIDR = 10.11.0.0/16\nEndpoints = endpoints.yaml\nPolicy = policy.yaml\nFlowLog = off\n' "$4" "$7"
  fi
  printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s:51820\n' "$3" "$5" "$6"
  if [[ $1 == overlay ]]; then printf 'TunnelAddress = %s\nPodCIDRs = %s\n' "$5" "$8"; fi
}

wait_sock() { for _ in $(seq 300); do [[ -S /var/run/wireguard/$1.sock ]] && return 0; sleep 0.05; done; echo "$1 did not start" >&2; return 1; }

start_gateway() { # mode
  conf "$1" "$ka" "$pb" 10.242.0.1 10.242.0.2 192.168.242.2 10.11.1.0/24 10.11.2.0/24 > "$tmp/a.conf"
  conf "$1" "$kb" "$pa" 10.242.0.2 10.242.0.1 192.168.242.1 10.11.2.0/24 10.11.1.0/24 > "$tmp/b.conf"
  chmod 600 "$tmp/a.conf" "$tmp/b.conf"
  ip netns exec $nsa dotnet $out/gateway.dll up "$tmp/a.conf" --interface tpa$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/a.log" & pids+=($!)
  ip netns exec $nsb dotnet $out/gateway.dll up "$tmp/b.conf" --interface tpb$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/b.log" & pids+=($!)
  wait_sock tpa$id; wait_sock tpb$id
  if [[ $1 == overlay ]]; then
    ip -n $nsa addr add 10.11.1.10/32 dev lo; ip -n $nsb addr add 10.11.2.10/32 dev lo
  fi
}

start_wggo() { # mode
  WG_PROCESS_FOREGROUND=1 ip netns exec $nsa "$wgo" -f tpa$id >/dev/null 2>&1 & pids+=($!)
  WG_PROCESS_FOREGROUND=1 ip netns exec $nsb "$wgo" -f tpb$id >/dev/null 2>&1 & pids+=($!)
  wait_sock tpa$id; wait_sock tpb$id
  echo "$ka" > "$tmp/ka"; echo "$kb" > "$tmp/kb"; chmod 600 "$tmp/ka" "$tmp/kb"
  ip netns exec $nsa wg set tpa$id listen-port 51820 private-key "$tmp/ka" peer "$pb" allowed-ips 10.242.0.2/32 endpoint 192.168.242.2:51820
  ip netns exec $nsb wg set tpb$id listen-port 51820 private-key "$tmp/kb" peer "$pa" allowed-ips 10.242.0.1/32 endpoint 192.168.242.1:51820
  ip -n $nsa addr add 10.242.0.1/24 dev tpa$id; ip -n $nsa link set tpa$id mtu 1420 up
  ip -n $nsb addr add 10.242.0.2/24 dev tpb$id; ip -n $nsb link set tpb$id mtu 1420 up
  if [[ $1 == overlay ]]; then
    # Linux VXLAN between the tunnel addresses, inside WireGuard, as a stock peer does overlay.
    ip -n $nsa link add vxa$id type vxlan id 1 local 10.242.0.1 remote 10.242.0.2 dstport 8472
    ip -n $nsb link add vxb$id type vxlan id 1 local 10.242.0.2 remote 10.242.0.1 dstport 8472
    ip -n $nsa addr add 10.11.1.10/16 dev vxa$id; ip -n $nsa link set vxa$id mtu 1370 up
    ip -n $nsb addr add 10.11.2.10/16 dev vxb$id; ip -n $nsb link set vxb$id mtu 1370 up
  fi
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  ip -n $nsa link del tpa$id 2>/dev/null || true
  ip -n $nsb link del tpb$id 2>/dev/null || true
  ip -n $nsa link del vxa$id 2>/dev/null || true
  ip -n $nsb link del vxb$id 2>/dev/null || true
  ip -n $nsa addr del 10.11.1.10/32 dev lo 2>/dev/null || true
  ip -n $nsb addr del 10.11.2.10/32 dev lo 2>/dev/null || true
}

measure() { # mode; prints bits per second
  if [[ $1 == overlay ]]; then measure_bps 10.11.1.10 10.11.2.10; else measure_bps 10.242.0.1 10.242.0.2; fi
}

version=$("$wgo" --version 2>/dev/null | head -1 | awk '{print $2}')
[[ $wgo == /opt/wireguard-go-20231211/* ]] && version="0.0.20231211"
impls=${IMPLS:-gateway wggo}
cpu_ticks() { local t=0 p; for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat 2>/dev/null || echo 0))); done; echo $t; }
declare -A samples
run_one() { # mode impl round
  start_$2 "$1"
  local t0 t1 bps
  t0=$(cpu_ticks); bps=$(measure "$1"); t1=$(cpu_ticks)
  stop_all
  bps=${bps:-0}
  samples[$1.$2]+=" $bps"
  awk -v m="$1" -v r="$3" -v i="$2" -v b="$bps" -v t=$((t1 - t0)) -v s="$seconds" 'BEGIN {
    printf "%-7s round %d %-8s %8.1f Mbit/s", m, r, i, b / 1e6
    if (i == "gateway" && b > 0) printf "   %6.1f CPU ticks/Gbit", t * 1e9 / b / s
    printf "\n" }'
}
for r in $(seq "$rounds"); do
  if [[ $impls == gateway ]]; then
    for mode in $modes; do run_one "$mode" gateway "$r"; done
  fi
done
if [[ $impls != gateway ]]; then
  for mode in $modes; do
    for r in $(seq "$rounds"); do
      if (( r % 2 )); then order="gateway wggo"; else order="wggo gateway"; fi
      for impl in $order; do run_one "$mode" "$impl" "$r"; done
    done
  done
fi
declare -A result
for mode in $modes; do
  result[$mode.gw]=$(median ${samples[$mode.gateway]})
  [[ -n ${samples[$mode.wggo]:-} ]] && result[$mode.go]=$(median ${samples[$mode.wggo]})
done

if [[ $impls == gateway ]]; then what=" (gateway only, modes alternated in each round)"; else what=", wireguard-go $version ($wgo)"; fi
echo "--- medians of $rounds x ${seconds}s$what"
for mode in $modes; do
  awk -v m="$mode" -v g="${result[$mode.gw]}" -v w="${result[$mode.go]:-}" -v v="$version" 'BEGIN {
    printf "%-7s gateway-to-gateway:           %8.1f Mbit/s\n", m, g / 1e6
    if (w != "") {
      printf "%-7s wireguard-go-to-wireguard-go: %8.1f Mbit/s (%s)\n", m, w / 1e6, v
      printf "%-7s ratio gateway / wireguard-go: %8.2f\n", m, (w > 0) ? g / w : 0 } }'
done
if [[ -n ${result[plain.gw]:-} && -n ${result[overlay.gw]:-} ]]; then
  awk -v p="${result[plain.gw]}" -v o="${result[overlay.gw]}" 'BEGIN { printf "gateway overlay / gateway plain:      %8.2f\n", (p > 0) ? o / p : 0 }'
fi
