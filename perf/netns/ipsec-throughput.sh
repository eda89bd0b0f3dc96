#!/usr/bin/env bash
# TCP throughput (iperf3) between two pods behind two gateway nodes in overlay mode, with IPsec
# (ESP, rfc4106(gcm(aes)), [Overlay] Encryption = ipsec) against WireGuard (the default), measured
# alternately in the same run so that load from elsewhere on the machine hits both alike. Prints
# each round, the medians, the ratio IPsec / WireGuard and the load average. Root only; traffic
# stays inside the two network namespaces this script makes.
#
#   perf/netns/ipsec-throughput.sh [SECONDS] [ROUNDS]
#   GATEWAY_UP_ARGS="--crypto-workers 0" perf/netns/ipsec-throughput.sh
#
# IPsec mode needs each node's boot id in the other's [Peer] IPsecBootId; a node prints a fresh one
# at every start, so the script starts both, copies each boot id into the other's config and sends
# SIGHUP (a reload), as an operator without cluster mode would.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
rounds=${2:-3}
# The nodes inherit this shell's signal dispositions; an ignored SIGHUP (nohup) would stay ignored
# in them and the boot-id reload below would never happen.
if (( 0x$(awk '/^SigIgn/ {print $2}' /proc/$$/status) & 1 )); then
  echo "ipsec-throughput.sh: SIGHUP is ignored (nohup?); run it without nohup (e.g. setsid)" >&2; exit 2
fi
script=ipsec-throughput.sh
source perf/netns/lib.sh
needs_root_and wg iperf3 ip ping
netns_pair i 192.168.243
ip -n $nsa addr add 10.11.1.10/32 dev lo; ip -n $nsb addr add 10.11.2.10/32 dev lo

ka=$(wg genkey); kb=$(wg genkey)
pa=$(echo "$ka" | wg pubkey); pb=$(echo "$kb" | wg pubkey)
(umask 077; echo "3+ rfc4106(gcm(aes)) $(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n') 128" > "$tmp/ipsec-keys")

write_pods

conf() { # encryption private peerpub tunnel peertunnel peerunderlay pods peerpods
  printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n' "$2"
  printf '\n[Overlay]\nTunnelAddress = %s\nPodCIDR = %s\nClusterCIDR = 10.11.0.0/16\nEndpoints = endpoints.yaml\nPolicy = policy.yaml\nFlowLog = off\n' "$4" "$7"
  if [[ $1 == ipsec ]]; then printf 'Encryption = ipsec\nIPsecKeyFile = ipsec-keys\n'; fi
  printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s:51820\nTunnelAddress = %s\nPodCIDRs = %s\n' "$3" "$5" "$6" "$5" "$8"
}

wait_log() { # file text
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; return 1
}

start() { # wireguard|ipsec
  conf "$1" "$ka" "$pb" 10.242.0.1 10.242.0.2 192.168.243.2 10.11.1.0/24 10.11.2.0/24 > "$tmp/a.conf"
  conf "$1" "$kb" "$pa" 10.242.0.2 10.242.0.1 192.168.243.1 10.11.2.0/24 10.11.1.0/24 > "$tmp/b.conf"
  chmod 600 "$tmp/a.conf" "$tmp/b.conf"
  ip netns exec $nsa dotnet $out/gateway.dll up "$tmp/a.conf" --interface tia$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/a.log" & pids+=($!)
  local a=$!
  ip netns exec $nsb dotnet $out/gateway.dll up "$tmp/b.conf" --interface tib$id --metrics off ${GATEWAY_UP_ARGS:-} 2>"$tmp/b.log" & pids+=($!)
  local b=$!
  wait_log "$tmp/a.log" " up: listening"; wait_log "$tmp/b.log" " up: listening"
  if [[ $1 == ipsec ]]; then
    local boota bootb
    boota=$(grep -o 'boot id [0-9a-f-]\{36\}' "$tmp/a.log" | head -1 | cut -d' ' -f3)
    bootb=$(grep -o 'boot id [0-9a-f-]\{36\}' "$tmp/b.log" | head -1 | cut -d' ' -f3)
    echo "IPsecBootId = $bootb" >> "$tmp/a.conf"; echo "IPsecBootId = $boota" >> "$tmp/b.conf"
    kill -HUP $a $b
    wait_log "$tmp/a.log" "reloaded"; wait_log "$tmp/b.log" "reloaded"
  fi
  for _ in $(seq 30); do ip netns exec $nsa ping -c 1 -W 1 -I 10.11.1.10 10.11.2.10 >/dev/null 2>&1 && return 0; done
  echo "no ping through the $1 overlay" >&2; cat "$tmp/a.log" "$tmp/b.log" >&2; return 1
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  ip -n $nsa link del tia$id 2>/dev/null || true
  ip -n $nsb link del tib$id 2>/dev/null || true
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
wg_runs=() ipsec_runs=()
for r in $(seq "$rounds"); do
  if (( r % 2 )); then order="wireguard ipsec"; else order="ipsec wireguard"; fi
  for enc in $order; do
    start "$enc"
    bps=$(measure_bps 10.11.1.10 10.11.2.10)
    stop_all
    bps=${bps:-0}
    if [[ $enc == ipsec ]]; then ipsec_runs+=("$bps"); else wg_runs+=("$bps"); fi
    awk -v r="$r" -v e="$enc" -v b="$bps" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { printf "round %d %-9s %8.1f Mbit/s (load %s)\n", r, e, b / 1e6, l }'
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
w=$(median "${wg_runs[@]}"); i=$(median "${ipsec_runs[@]}")
echo "--- medians of $rounds x ${seconds}s, overlay mode, gateway-to-gateway ($(nproc) CPUs; load average before: $load_before, after: $load_after)"
awk -v w="$w" -v i="$i" 'BEGIN {
  printf "overlay WireGuard (ChaCha20-Poly1305): %8.1f Mbit/s\n", w / 1e6
  printf "overlay IPsec (ESP AES-128-GCM):       %8.1f Mbit/s\n", i / 1e6
  printf "ratio IPsec / WireGuard:               %8.2f\n", (w > 0) ? i / w : 0 }'
