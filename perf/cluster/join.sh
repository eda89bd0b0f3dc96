#!/usr/bin/env bash
# Cluster scale, node side: a real etcd holding NODES node records and NODES*PODS ipcache
# entries, then a real `gateway up` joins in cluster mode; measured: the time from its start
# until every other node is its peer (gateway_cluster_peers = NODES) and their pod CIDRs are
# routed to its interface, and its resident memory then. Everything runs inside one network
# namespace made here (etcd on its loopback); the populated nodes' addresses are never sent to
# (no traffic is routed to them). Root only.
#
#   perf/cluster/join.sh [NODES] [PODS_PER_NODE]      defaults: 5000 10
#   JOIN_LOG=FILE keeps the node's log (timestamped phases) after the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=${1:-5000} pods=${2:-10}
[[ $(id -u) -eq 0 ]] || { echo "join.sh: needs root (network namespace, TUN)" >&2; exit 2; }
command -v etcd >/dev/null || { echo "join.sh: etcd not installed (scripts/setup.sh installs etcd-server)" >&2; exit 2; }
for tool in curl bc; do
  command -v $tool >/dev/null || { echo "join.sh: needs $tool (apt-get install $tool)" >&2; exit 2; }
done

ns=gwjoin$$
dir=$(mktemp -d /tmp/gw-join.XXXXXX)
etcd_pid= gw_pid=
cleanup() {
  [[ -n $gw_pid ]] && kill "$gw_pid" 2>/dev/null
  [[ -n $gw_pid ]] && for _ in $(seq 1 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
  [[ -n $etcd_pid ]] && kill -9 "$etcd_pid" 2>/dev/null
  true
  ip netns del "$ns" 2>/dev/null || true
  [[ -n ${JOIN_LOG:-} && -f $dir/gw.log ]] && cp "$dir/gw.log" "$JOIN_LOG"
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
in_ns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
in_ns ip link set lo up
# An underlay address for the node record (a veth pair that lives only in this namespace).
in_ns ip link add j0 type veth peer name j1
in_ns ip addr add 192.168.77.1/24 dev j0
in_ns ip link set j0 up; in_ns ip link set j1 up

ip netns exec "$ns" etcd --name join --data-dir "$dir/data" --quota-backend-bytes 4294967296 \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster join=http://127.0.0.1:2380 --log-outputs "$dir/etcd.log" --logger zap &
etcd_pid=$!
for _ in $(seq 1 200); do grep -q "serving client traffic" "$dir/etcd.log" 2>/dev/null && break; sleep 0.1; done

dotnet build perf/ClusterScale -c Release --nologo -v quiet -tl:off "-clp:ErrorsOnly;NoSummary" >/dev/null
./gateway --help >/dev/null
echo "join: $nodes nodes x $pods pods; $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d" " -f1-3 /proc/loadavg) on $(nproc) cores"
in_ns perf/ClusterScale/bin/Release/net10.0/Gateway.ClusterScale populate http://127.0.0.1:2379 "$nodes" "$pods"

# The populated nodes use pod CIDRs 10.0-10.127.x.0/24 and tunnel addresses 10.128+.x.x.
cat > "$dir/endpoints.yaml" <<EOT
endpoints:
  - {name: joiner-pod, namespace: default, ips: [10.127.255.10], labels: {app: joiner}}
EOT
umask 077
cat > "$dir/join.conf" <<EOT
[Interface]
PrivateKey = $(./gateway genkey)
ListenPort = 51871

[Overlay]
NodeName = joiner
NodeAddress = 192.168.77.1
TunnelAddress = 10.250.255.1
PodCIDR = 10.127.255.0/24
ClusterCIDR = 10.0.0.0/9
Endpoints = $dir/endpoints.yaml
FlowLog = off
KVStore = http://127.0.0.1:2379
EOT
start=$(date +%s.%N)
ip netns exec "$ns" ./gateway up "$dir/join.conf" --interface gwjoin0 --metrics 127.0.0.1:9962 >"$dir/gw.log" 2>&1 &
gw_pid=$!
peers=0
for _ in $(seq 1 600); do
  peers=$(in_ns curl -s --max-time 1 http://127.0.0.1:9962/metrics 2>/dev/null | awk '/^gateway_cluster_peers/ {print $2}' || true)
  [[ ${peers:-0} -ge $nodes ]] && break
  kill -0 "$gw_pid" 2>/dev/null || { echo "join.sh: gateway up exited" >&2; cat "$dir/gw.log" >&2; exit 1; }
  sleep 0.05
done
peered=$(date +%s.%N)
routes=$(in_ns ip -4 route show dev gwjoin0 | grep -c '^10\.' || true)
rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$gw_pid/status")
# CPU the node used until then (user + system, all threads; fields 14 and 15 of /proc/PID/stat):
# on a shared machine the wall time above includes waiting for a core, this does not.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$gw_pid/stat")
printf '{"step":"join","nodes":%d,"peers":%s,"routesToPods":%d,"secondsToFullPeerTable":%.2f,"cpuSeconds":%.2f,"rssMB":%d}\n' \
  "$nodes" "${peers:-0}" "$routes" "$(echo "$peered - $start" | bc)" "$cpu" "$rss"
