#!/usr/bin/env bash
# Cluster scale: a real etcd (Debian's etcd-server) on 127.0.0.1 holding NODES node records and
# NODES*PODS ipcache entries; then, in a fresh process each time, a new ClusterClient lists and
# decodes all of it (time, managed heap, RSS) and watches while one node changes (events and
# bytes received per change). The etcd is started here, on free ports with a temporary data
# directory, and killed and removed on every exit path.
#
#   perf/cluster/scale.sh [NODES] [PODS_PER_NODE] [RUNS]      defaults: 5000 10 3
set -euo pipefail
cd "$(dirname "$0")/../.."

nodes=${1:-5000} pods=${2:-10} runs=${3:-3}
command -v etcd >/dev/null || { echo "scale.sh: etcd not installed (scripts/setup.sh installs etcd-server)" >&2; exit 1; }

dir=$(mktemp -d /tmp/gw-scale-etcd.XXXXXX)
etcd_pid=
cleanup() { [[ -n $etcd_pid ]] && kill -9 "$etcd_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
client=$(free_port) peer=$(free_port)
etcd --name scale --data-dir "$dir/data" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "scale=http://127.0.0.1:$peer" --log-outputs "$dir/etcd.log" --logger zap &
etcd_pid=$!
for _ in $(seq 1 200); do grep -q "serving client traffic" "$dir/etcd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "serving client traffic" "$dir/etcd.log" || { echo "scale.sh: etcd did not start" >&2; tail -5 "$dir/etcd.log" >&2; exit 1; }

dotnet build perf/ClusterScale -c Release --nologo -v quiet -tl:off "-clp:ErrorsOnly;NoSummary" >/dev/null
bin=perf/ClusterScale/bin/Release/net10.0/Gateway.ClusterScale
url="http://127.0.0.1:$client"
echo "etcd $(etcd --version | head -1 | awk '{print $3}') at $url; $nodes nodes x $pods pods; $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d" " -f1-3 /proc/loadavg) on $(nproc) cores"
"$bin" populate "$url" "$nodes" "$pods"
echo "etcd db size: $(du -sh "$dir/data" | cut -f1)"
for run in $(seq 1 "$runs"); do
  echo "# measure run $run"
  "$bin" measure "$url"
  [[ ${PROFILE:-0} == 1 ]] && "$bin" profile "$url"
done
