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
[[ $(id -u) -eq 0 ]] || { echo "ipsec-throughput.sh: needs root (network namespaces, TUN, raw ESP socket)" >&2; exit 2; }
# The nodes inherit this shell's signal dispositions; an ignored SIGHUP (nohup) would stay ignored
# in them and the boot-id reload below would never happen.
if (( 0x$(awk '/^SigIgn/ {print $2}' /proc/$$/status) & 1 )); then
  echo "ipsec-throughput.sh: SIGHUP is ignored (nohup?); run it without nohup (e.g. setsid)" >&2; exit 2
fi
for tool in wg iperf3 ip ping; do
  command -v $tool >/dev/null || { echo "ipsec-throughput.sh: needs $tool (scripts/setup.sh installs it)" >&2; exit 2; }
done

out=.build/cli
./gateway --help >/dev/null   # builds the CLI when needed
id=$$
nsa=gwia$id nsb=gwib$id
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
ip link add via$id netns $nsa type veth peer name vib$id netns $nsb
ip -n $nsa addr add 192.168.243.1/24 dev via$id; ip -n $nsa link set via$id up
ip -n $nsb addr add 192.168.243.2/24 dev vib$id; ip -n $nsb link set vib$id up
ip -n $nsa addr add 10.11.1.10/32 dev lo; ip -n $nsb addr add 10.11.2.10/32 dev lo

ka=$(wg genkey); kb=$(wg genkey)
pa=$(echo "$ka" | wg pubkey); pb=$(echo "$kb" | wg pubkey)
(umask 077; echo "3+ rfc4106(gcm(aes)) $(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n') 128" > "$tmp/ipsec-keys")

cat > "$tmp/endpoints.yaml" <<Y
endpoints:
  - {name: client, namespace: default, ips: [10.11.1.10], labels: {app: client}}
  - {name: server, namespace: default, ips: [10.11.2.10], labels: {app: server}}
Y
cat > "$tmp/policy.yaml" <<Y
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "5201", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
Y

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

measure() { # prints bits per second
  ip netns exec $nsb iperf3 -s -1 -B 10.11.2.10 >/dev/null 2>&1 & local server=$!
  local json=""
  for _ in $(seq 50); do
    json=$(ip netns exec $nsa iperf3 -c 10.11.2.10 -B 10.11.1.10 -t "$seconds" -J 2>/dev/null || true)
    grep -q '"sum_received"' <<<"$json" && break
    sleep 0.1
  done
  wait $server 2>/dev/null || true
  tr -d '\n\t ' <<<"$json" | grep -o '"sum_received":{[^}]*}' | grep -o '"bits_per_second":[0-9.e+]*' | cut -d: -f2 | awk '{ printf "%.0f\n", $1 }'
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
wg_runs=() ipsec_runs=()
for r in $(seq "$rounds"); do
  if (( r % 2 )); then order="wireguard ipsec"; else order="ipsec wireguard"; fi
  for enc in $order; do
    start "$enc"
    bps=$(measure)
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
