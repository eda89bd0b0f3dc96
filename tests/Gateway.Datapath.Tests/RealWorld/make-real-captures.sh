#!/usr/bin/env bash
# Makes two captures with real, independent implementations (not Gateway's code):
#   wireguard-go-underlay.pcap : two wireguard-go peers in two network namespaces, tcpdump on the
#                                underlay veth while pinging through the tunnel  -> ENCRYPTED
#   linux-vxlan-dns.pcap       : the Linux kernel's vxlan device (id 42, dstport 8472) between the
#                                same namespaces carrying a plaintext DNS query    -> LEAK
# Usage (root): make-real-captures.sh OUTDIR [SUFFIX]
# Everything it creates carries SUFFIX (default: this PID) and is removed on every exit path.
# Traffic stays inside the two namespaces it creates.
set -euo pipefail
out=$(realpath "$1")
sfx=${2:-$$}
nsa="gwdp-a-$sfx" nsb="gwdp-b-$sfx"
va="gda$sfx" vb="gdb$sfx"          # veth ends (<= 15 chars)
wa="gwa$sfx" wb="gwb$sfx"          # wireguard-go interfaces
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

ip netns add "$nsa"
ip netns add "$nsb"
for ns in "$nsa" "$nsb"; do
  ip -n "$ns" link set lo up
  # No IPv6 on these links: keeps the captures small (no ND/MLD chatter).
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$nsa"
ip link set "$vb" netns "$nsb"
ip -n "$nsa" addr add 192.168.77.1/24 dev "$va"
ip -n "$nsb" addr add 192.168.77.2/24 dev "$vb"
ip -n "$nsa" link set "$va" up
ip -n "$nsb" link set "$vb" up

start_capture() {   # $1 = file; tcpdump on the underlay veth of namespace A
  ip netns exec "$nsa" tcpdump --immediate-mode -i "$va" -U -s 0 -w "$1" 2>"$tmp/tcpdump.err" &
  cap=$!
  pids+=("$cap")
  for _ in $(seq 100); do grep -q "listening on" "$tmp/tcpdump.err" 2>/dev/null && return 0; sleep 0.05; done
  echo "tcpdump did not start: $(cat "$tmp/tcpdump.err")" >&2; return 1
}
stop_capture() {
  sleep 0.5
  kill -INT "$cap"; wait "$cap" || true
}

# ---- WireGuard (wireguard-go + wg) ----
umask 077
wg genkey >"$tmp/a.key"; wg pubkey <"$tmp/a.key" >"$tmp/a.pub"
wg genkey >"$tmp/b.key"; wg pubkey <"$tmp/b.key" >"$tmp/b.pub"
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 WG_PROCESS_FOREGROUND=1
ip netns exec "$nsa" wireguard-go "$wa" >"$tmp/wga.log" 2>&1 & pids+=("$!")
ip netns exec "$nsb" wireguard-go "$wb" >"$tmp/wgb.log" 2>&1 & pids+=("$!")
for _ in $(seq 100); do
  [[ -S /var/run/wireguard/$wa.sock && -S /var/run/wireguard/$wb.sock ]] && break; sleep 0.05
done
ip netns exec "$nsa" wg set "$wa" private-key "$tmp/a.key" listen-port 51820 \
  peer "$(cat "$tmp/b.pub")" allowed-ips 10.99.0.2/32 endpoint 192.168.77.2:51820
ip netns exec "$nsb" wg set "$wb" private-key "$tmp/b.key" listen-port 51820 \
  peer "$(cat "$tmp/a.pub")" allowed-ips 10.99.0.1/32 endpoint 192.168.77.1:51820
ip -n "$nsa" addr add 10.99.0.1/24 dev "$wa"; ip -n "$nsa" link set "$wa" up
ip -n "$nsb" addr add 10.99.0.2/24 dev "$wb"; ip -n "$nsb" link set "$wb" up

start_capture "$tmp/wg.pcap"
ip netns exec "$nsa" ping -c 3 -i 0.2 -W 2 10.99.0.2 >"$tmp/ping.log" 2>&1 || { cat "$tmp/ping.log" "$tmp/wga.log" "$tmp/tcpdump.err" >&2; exit 1; }
stop_capture
ip -n "$nsa" link del "$wa" 2>/dev/null || true
ip -n "$nsb" link del "$wb" 2>/dev/null || true

# ---- VXLAN (Linux kernel vxlan device) carrying plaintext DNS ----
ip -n "$nsa" link add vx42 type vxlan id 42 dstport 8472 local 192.168.77.1 remote 192.168.77.2 dev "$va"
ip -n "$nsb" link add vx42 type vxlan id 42 dstport 8472 local 192.168.77.2 remote 192.168.77.1 dev "$vb"
ip -n "$nsa" addr add 10.244.1.10/24 dev vx42; ip -n "$nsa" link set vx42 up
ip -n "$nsb" addr add 10.244.1.20/24 dev vx42; ip -n "$nsb" link set vx42 up

start_capture "$tmp/vxlan.pcap"
# A DNS query (id 0x1a2b, RD, one question: kubernetes.default.svc.cluster.local A IN) sent
# from pod address 10.244.1.10 to 10.244.1.20:53 with bash's /dev/udp.
# printf may split its output over several write()s, so build the datagram in a file and send it
# with one write (cat); nothing listens on port 53, so an ICMP port unreachable comes back.
printf '\x1a\x2b\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01' >"$tmp/dns.bin"
ip netns exec "$nsa" bash -c "cat '$tmp/dns.bin' >/dev/udp/10.244.1.20/53"
sleep 0.2
ip netns exec "$nsa" bash -c "cat '$tmp/dns.bin' >/dev/udp/10.244.1.20/53" || true
stop_capture

cp "$tmp/wg.pcap" "$out/wireguard-go-underlay.pcap"
cp "$tmp/vxlan.pcap" "$out/linux-vxlan-dns.pcap"
echo "wrote $out/wireguard-go-underlay.pcap $out/linux-vxlan-dns.pcap"
