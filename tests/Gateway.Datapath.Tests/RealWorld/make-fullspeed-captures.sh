#!/usr/bin/env bash
# Records the underlay of full-speed iperf3 runs between `gateway up` (namespace A) and stock
# wireguard-go (namespace B), one capture per tunnel MTU and underlay family:
#   fullspeed-gateway-wggo-mtu<MTU>-<v4|v6>.pcap   for MTU in 1280 1420 1500 8920
# Full-size transport messages are 32 + MTU bytes (WireGuard pads to 16 but never beyond the
# MTU), which is what `gateway audit` must still call WireGuard.
# Captures stay small: tcpdump keeps only the headers (-s: link + IP + UDP + the 16-byte
# WireGuard header) and stops after PACKETS packets (the handshake, then the transfer).
# Usage (root): make-fullspeed-captures.sh OUTDIR [GATEWAY_DLL] [SUFFIX]
# Everything it creates carries SUFFIX (default: this PID) and is removed on every exit path.
# Traffic stays inside the two namespaces it creates.
set -euo pipefail
out=$(realpath "$1")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
dll=${2:-$root/.build/cli/gateway.dll}
sfx=${3:-$$}
packets=${PACKETS:-3000}
seconds=${SECONDS_PER_RUN:-2}
[[ -f $dll ]] || { echo "no gateway.dll at $dll (run ./gateway once to build it)" >&2; exit 2; }
nsa="gwfs-a-$sfx" nsb="gwfs-b-$sfx"
va="gfa$sfx" vb="gfb$sfx"
wa="gfwa$sfx" wb="gfwb$sfx"
tmp=$(mktemp -d)
pids=()

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$nsa" 2>/dev/null
  ip netns del "$nsb" 2>/dev/null
  rm -f "/var/run/wireguard/$wa.sock" "/var/run/wireguard/$wb.sock"
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

umask 077
wg genkey >"$tmp/a.key"; wg pubkey <"$tmp/a.key" >"$tmp/a.pub"
wg genkey >"$tmp/b.key"; wg pubkey <"$tmp/b.key" >"$tmp/b.pub"
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 WG_PROCESS_FOREGROUND=1

wait_for() {   # $1 = what, $2 = command that succeeds when ready (polls another process)
  for _ in $(seq 400); do eval "$2" && return 0; sleep 0.05; done
  echo "$1 did not come up" >&2; return 1
}

run() {   # $1 = MTU, $2 = v4|v6
  local mtu=$1 fam=$2 ua ub pa pb
  if [[ $fam == v4 ]]; then ua=192.168.78.1 ub=192.168.78.2 pa=192.168.78.1 pb=192.168.78.2
  else ua=fd00:78::1 ub=fd00:78::2 pa="[fd00:78::1]" pb="[fd00:78::2]"; fi
  ip netns add "$nsa"; ip netns add "$nsb"
  for ns in "$nsa" "$nsb"; do
    ip -n "$ns" link set lo up
    # IPv6 only where the underlay needs it: keeps ND/MLD chatter out of the v4 captures.
    [[ $fam == v4 ]] && ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add "$va" mtu 9000 type veth peer name "$vb" mtu 9000
  ip link set "$va" netns "$nsa"; ip link set "$vb" netns "$nsb"
  if [[ $fam == v4 ]]; then
    ip -n "$nsa" addr add $ua/24 dev "$va"; ip -n "$nsb" addr add $ub/24 dev "$vb"
  else
    ip -n "$nsa" addr add $ua/64 dev "$va" nodad; ip -n "$nsb" addr add $ub/64 dev "$vb" nodad
  fi
  ip -n "$nsa" link set "$va" up; ip -n "$nsb" link set "$vb" up

  ip netns exec "$nsb" wireguard-go "$wb" >"$tmp/wgb.log" 2>&1 & pids+=("$!")
  wait_for wireguard-go "[[ -S /var/run/wireguard/$wb.sock ]]"
  ip netns exec "$nsb" wg set "$wb" private-key "$tmp/b.key" listen-port 51820 \
    peer "$(cat "$tmp/a.pub")" allowed-ips 10.98.0.1/32
  ip -n "$nsb" addr add 10.98.0.2/24 dev "$wb"; ip -n "$nsb" link set "$wb" mtu "$mtu" up

  cat >"$tmp/a.conf" <<EOF
[Interface]
PrivateKey = $(cat "$tmp/a.key")
ListenPort = 51820
Address = 10.98.0.1/24
MTU = $mtu

[Peer]
PublicKey = $(cat "$tmp/b.pub")
AllowedIPs = 10.98.0.2/32
Endpoint = $pb:51820
EOF
  local snap=78   # Ethernet 14 + IPv6 40 + UDP 8 + WireGuard header 16
  [[ $fam == v4 ]] && snap=58
  local file="$out/fullspeed-gateway-wggo-mtu$mtu-$fam.pcap"
  ip netns exec "$nsa" tcpdump --immediate-mode -i "$va" -U -s "$snap" -c "$packets" -w "$file" 2>"$tmp/tcpdump.err" &
  local cap=$!; pids+=("$cap")
  wait_for tcpdump "grep -q 'listening on' $tmp/tcpdump.err"

  ip netns exec "$nsa" dotnet "$dll" up "$tmp/a.conf" --interface "$wa" --metrics off >"$tmp/gwa.log" 2>&1 & pids+=("$!")
  wait_for "gateway up" "[[ -S /var/run/wireguard/$wa.sock ]]"
  ip netns exec "$nsb" iperf3 -s -1 -B 10.98.0.2 >/dev/null 2>&1 & pids+=("$!")
  local srv=$!
  wait_for iperf3 "ip netns exec $nsb ss -ltn | grep -q 10.98.0.2:5201"
  # Both directions at once: gateway and wireguard-go each send full-size messages.
  ip netns exec "$nsa" iperf3 -c 10.98.0.2 -t "$seconds" --bidir >"$tmp/iperf.log" 2>&1 \
    || { cat "$tmp/iperf.log" "$tmp/gwa.log" >&2; return 1; }
  wait "$srv" || true
  kill -INT "$cap" 2>/dev/null || true; wait "$cap" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  ip netns del "$nsa"; ip netns del "$nsb"
  rm -f "/var/run/wireguard/$wa.sock" "/var/run/wireguard/$wb.sock"
  echo "$file: $(grep -E 'sender|receiver' "$tmp/iperf.log" | tail -4 | awk '{print $(NF-3), $(NF-2), $NF}' | paste -sd' ')"
}

for fam in v4 v6; do
  for mtu in 1280 1420 1500 8920; do
    run "$mtu" "$fam"
  done
done
