# Shared by perf/netns/throughput.sh and perf/netns/ipsec-throughput.sh (sourced, not run): two
# network namespaces joined by a veth pair, cleanup on every exit, the client/server pods' endpoints
# and policy, one iperf3 measurement and the median. The caller sets `set -euo pipefail`, is in the
# repository root, and names itself in $script for error messages.

# needs_root_and TOOL...: exits 2 unless root and every tool is on PATH.
needs_root_and() {
  [[ $(id -u) -eq 0 ]] || { echo "$script: needs root (network namespaces, TUN)" >&2; exit 2; }
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$script: needs $tool (scripts/setup.sh installs it)" >&2; exit 2; }
  done
}

# netns_pair TAG SUBNET: builds the CLI when needed (out=.build/cli), makes namespaces nsa=gw${TAG}a$$
# and nsb=gw${TAG}b$$ with lo up, joined by veth v${TAG}a$$/v${TAG}b$$ holding SUBNET.1/24 and
# SUBNET.2/24, a private temporary folder $tmp, and a trap that kills the processes in pids and
# removes all of it on exit.
netns_pair() {
  out=.build/cli
  ./gateway --help >/dev/null   # builds the CLI when needed
  id=$$
  nsa=gw${1}a$id nsb=gw${1}b$id
  tmp=$(mktemp -d)
  pids=()
  trap netns_cleanup EXIT
  ip netns add $nsa; ip netns add $nsb
  ip -n $nsa link set lo up; ip -n $nsb link set lo up
  ip link add v${1}a$id netns $nsa type veth peer name v${1}b$id netns $nsb
  ip -n $nsa addr add $2.1/24 dev v${1}a$id; ip -n $nsa link set v${1}a$id up
  ip -n $nsb addr add $2.2/24 dev v${1}b$id; ip -n $nsb link set v${1}b$id up
}

netns_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del $nsa 2>/dev/null || true
  ip netns del $nsb 2>/dev/null || true
  rm -rf "$tmp"
}

# write_pods: $tmp/endpoints.yaml (client 10.11.1.10 on node A, server 10.11.2.10 on node B) and
# $tmp/policy.yaml (the server takes TCP 5201 and ping from the client).
write_pods() {
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
}

# measure_bps SRC DST: iperf3 for $seconds from SRC in $nsa to DST in $nsb (after two pings);
# prints the receiver's bits per second (empty when iperf3 never connected).
measure_bps() {
  ip netns exec $nsa ping -c 2 -i 0.2 -W 3 -I $1 $2 >/dev/null || true
  ip netns exec $nsb iperf3 -s -1 -B $2 >/dev/null 2>&1 & local server=$!
  local json=""
  for _ in $(seq 50); do
    json=$(ip netns exec $nsa iperf3 -c $2 -B $1 -t "$seconds" -J 2>/dev/null || true)
    grep -q '"sum_received"' <<<"$json" && break
    sleep 0.1
  done
  wait $server 2>/dev/null || true
  # The receiver's total: "sum_received": { ... "bits_per_second": N ... }; %.0f, not %d (awk's
  # %d stops at 2^31).
  tr -d '\n\t ' <<<"$json" | grep -o '"sum_received":{[^}]*}' | grep -o '"bits_per_second":[0-9.e+]*' | cut -d: -f2 | awk '{ printf "%.0f\n", $1 }'
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
