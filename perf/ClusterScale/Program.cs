using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Etcdserverpb;
using Gateway.Cluster;
using Google.Protobuf;

// Cluster scale measurement against a real etcd (perf/cluster/scale.sh starts one):
//   populate ENDPOINT NODES PODS_PER_NODE   write NODES node records and NODES*PODS_PER_NODE ipcache entries
//   measure  ENDPOINT                       in a fresh process: time and memory for a new ClusterClient to
//                                           list and decode everything, then watch traffic per node change
// Output: one JSON object per line on stdout (the script turns them into the docs table).

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Gateway.ClusterScale populate ENDPOINT NODES PODS_PER_NODE | measure ENDPOINT");
    return 2;
}
var options = KvStoreOptions.Parse(args[1], null, null, null);
options = new KvStoreOptions { Endpoints = options.Endpoints, RequestTimeout = TimeSpan.FromSeconds(30) };
var inv = CultureInfo.InvariantCulture;

static string Key(int i) => Convert.ToBase64String(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)));

static NodeRecord NodeOf(int i, string boot = "b0") => new()
{
    Name = $"node-{i:D5}",
    WireGuardPublicKey = Key(i),
    Address = $"172.{16 + i / 65536}.{i / 256 % 256}.{i % 256}",
    Port = 51871,
    TunnelAddress = $"10.{128 + i / 65536}.{i / 256 % 256}.{i % 256}",
    PodCidrs = [$"10.{i / 256 % 128}.{i % 256}.0/24"],
    BootId = boot,
};

static IEnumerable<IpCacheEntry> PodsOf(int i, int pods) => Enumerable.Range(0, pods).Select(p => new IpCacheEntry
{
    Prefix = $"10.{i / 256 % 128}.{i % 256}.{p + 2}/32",
    Identity = 256 + (uint)(p % 50),
    HostIp = $"172.{16 + i / 65536}.{i / 256 % 256}.{i % 256}",
    NodeName = $"node-{i:D5}",
    Namespace = "default",
    PodName = $"pod-{i}-{p}",
});

var keys = new KvKeysPublic(options.ClusterName);
using var etcd = new EtcdConnectionHandle(options);

switch (args[0])
{
    case "populate":
    {
        int nodes = int.Parse(args[2], inv), pods = int.Parse(args[3], inv);
        var watch = Stopwatch.StartNew();
        var ops = new List<RequestOp>();
        for (int i = 0; i < 50; i++)
        {
            // The label set a node builds for a pod in namespace "default" (namespace labels
            // included), so that joining nodes accept these identities as pods'.
            var labels = Gateway.Policy.Endpoint.BuildLabels([new Gateway.Policy.Label("k8s", "app", $"app-{i}")], "default", null);
            ops.Add(Put($"cilium/state/identities/v1/id/{256 + i}", labels.Canonical + ";"));
        }
        for (int i = 0; i < nodes; i++)
        {
            ops.Add(Put(keys.Node(NodeOf(i).Name), etcd.EncodeNode(NodeOf(i))));
            foreach (var e in PodsOf(i, pods))
            {
                ops.Add(Put(keys.Ip(e.Prefix.Split('/')[0]), etcd.EncodeEntry(e)));
            }
            if (ops.Count >= 100)
            {
                await etcd.TxnAsync(ops);
                ops.Clear();
            }
        }
        await etcd.TxnAsync(ops);
        Console.WriteLine(JsonSerializer.Serialize(new { step = "populate", nodes, ipcache = nodes * pods, seconds = watch.Elapsed.TotalSeconds }));
        return 0;
    }
    case "measure":
    {
        GC.Collect();
        long rssBefore = Environment.WorkingSet;
        long managedBefore = GC.GetTotalMemory(true);
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        await using var client = await ClusterClient.ConnectAsync(options, _ => { });
        double connectSeconds = watch.Elapsed.TotalSeconds;
        double cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
        var snap = client.Current;
        long managed = GC.GetTotalMemory(true);
        long rss = Environment.WorkingSet;
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            step = "snapshot", nodes = snap.Nodes.Count, ipcache = snap.IpCache.Count, identities = snap.Identities.Count,
            seconds = connectSeconds, cpuSeconds, managedMB = (managed - managedBefore) / 1048576.0, managedTotalMB = managed / 1048576.0,
            rssMB = rss / 1048576.0, rssBeforeMB = rssBefore / 1048576.0,
        }));

        // The same again in this process, code already compiled: what the JIT cost the first time.
        var cpu1 = Process.GetCurrentProcess().TotalProcessorTime;
        var warm = Stopwatch.StartNew();
        await using (var second = await ClusterClient.ConnectAsync(options, _ => { }))
        {
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                step = "snapshot-warm", nodes = second.Current.Nodes.Count, seconds = warm.Elapsed.TotalSeconds,
                cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu1).TotalSeconds,
            }));
        }

        int changes = 0;
        client.Changed += _ => Interlocked.Increment(ref changes);
        await client.StartWatchingAsync(CancellationToken.None);
        await Task.Delay(500);
        int pods = snap.IpCache.Count / Math.Max(1, snap.Nodes.Count);

        async Task Measure(string what, Func<Task> change, Func<ClusterSnapshot, bool> done)
        {
            long e0 = client.WatchEventsReceived, b0 = client.WatchBytesReceived;
            int c0 = changes;
            var sw = Stopwatch.StartNew();
            await change();
            while (!done(client.Current))
            {
                if (sw.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new TimeoutException($"{what}: change not seen in 30 s");
                }
                await Task.Delay(1);
            }
            double ms = sw.Elapsed.TotalMilliseconds;
            await Task.Delay(300); // let any trailing event arrive before reading the counters
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                step = "change", what, events = client.WatchEventsReceived - e0, bytes = client.WatchBytesReceived - b0,
                changedRaised = changes - c0, milliseconds = ms,
            }));
        }

        // 1. An existing node rotates its key: one record.
        var rotated = NodeOf(7) with { WireGuardPublicKey = Key(Random.Shared.Next(1_000_000, int.MaxValue)) };
        await Measure("key rotation (1 node record)", () => etcd.TxnAsync([Put(keys.Node(rotated.Name), etcd.EncodeNode(rotated))]),
            s => s.Nodes[rotated.Name].WireGuardPublicKey == rotated.WireGuardPublicKey);

        // 2. A node joins: its record and its pods' ipcache entries, under a lease.
        int joiner = snap.Nodes.Count + 1;
        long lease = await etcd.GrantAsync(60);
        var joinOps = new List<RequestOp> { Put(keys.Node(NodeOf(joiner).Name), etcd.EncodeNode(NodeOf(joiner)), lease) };
        joinOps.AddRange(PodsOf(joiner, pods).Select(e => Put(keys.Ip(e.Prefix.Split('/')[0]), etcd.EncodeEntry(e), lease)));
        await Measure($"node joins (1 record + {pods} ipcache entries)", () => etcd.TxnAsync(joinOps),
            s => s.Nodes.ContainsKey(NodeOf(joiner).Name) && PodsOf(joiner, pods).All(e => s.IpCache.ContainsKey(e.Prefix)));

        // 3. That node leaves: its lease is revoked (a crash seen after the TTL looks the same).
        await Measure($"node leaves (lease revoked: {pods + 1} deletes)", () => etcd.RevokeAsync(lease),
            s => !s.Nodes.ContainsKey(NodeOf(joiner).Name) && !PodsOf(joiner, pods).Any(e => s.IpCache.ContainsKey(e.Prefix)));
        return 0;
    }
    case "profile":
    {
        // Where the snapshot time goes: the list alone, then decoding the listed values.
        var sw = Stopwatch.StartNew();
        var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        var all = await etcd.ListAllAsync(keys.Prefixes);
        double list = sw.Elapsed.TotalSeconds;
        var cpu1 = Process.GetCurrentProcess().TotalProcessorTime;
        sw.Restart();
        var state = new ClusterState(new KvKeys(options.ClusterName), _ => { });
        state.Replace(all);
        var built = state.Build(1);
        double decode = sw.Elapsed.TotalSeconds;
        var cpu2 = Process.GetCurrentProcess().TotalProcessorTime;
        double listCpu = (cpu1 - cpu0).TotalSeconds, decodeCpu = (cpu2 - cpu1).TotalSeconds;
        var ipValues = all.Where(kv => kv.Key.Contains("/ip/")).Select(kv => kv.Value).ToList();
        var nodeValues = all.Where(kv => kv.Key.Contains("/nodes/")).Select(kv => kv.Value).ToList();
        sw.Restart();
        foreach (var v in ipValues) RecordCodec.DecodeEntry(v.Span, out _);
        double ipDecode = sw.Elapsed.TotalSeconds;
        // Warm: the fastest of five passes over the ipcache values (the first pass above paid for JIT).
        double ipDecodeWarm = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            sw.Restart();
            foreach (var v in ipValues) RecordCodec.DecodeEntry(v.Span, out _);
            ipDecodeWarm = Math.Min(ipDecodeWarm, sw.Elapsed.TotalSeconds);
        }
        sw.Restart();
        foreach (var v in nodeValues) RecordCodec.DecodeNode(v.Span);
        double nodeDecode = sw.Elapsed.TotalSeconds;
        sw.Restart();
        foreach (var v in ipValues) JsonDocument.Parse(v.Memory).Dispose();
        double rawJson = sw.Elapsed.TotalSeconds;
        sw.Restart();
        var b = System.Collections.Immutable.ImmutableDictionary.CreateBuilder<string, ByteString>(StringComparer.Ordinal);
        foreach (var (k, v) in all) b[k] = v;
        double imm = sw.Elapsed.TotalSeconds;
        Console.WriteLine(JsonSerializer.Serialize(new { step = "profile", keys = all.Count, listSeconds = list, listCpu, decodeSeconds = decode, decodeCpu, ipDecode, ipDecodeWarm, nodeDecode, rawJson, imm, built.Nodes.Count }));
        return 0;
    }
    default:
        Console.Error.WriteLine($"unknown step '{args[0]}'");
        return 2;
}

static RequestOp Put(string key, string value, long lease = 0) =>
    new() { RequestPut = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value), Lease = lease } };

/// <summary>The key layout, from the library (internal there).</summary>
internal sealed class KvKeysPublic(string cluster)
{
    private readonly KvKeys _keys = new(cluster);
    public string Node(string name) => _keys.Node(name);
    public string Ip(string key) => _keys.Ip(key);
    public string[] Prefixes => [_keys.NodePrefix, _keys.IpPrefix, KvKeys.IdentityIdPrefix, _keys.PolicyPrefix];
}

/// <summary>Raw etcd access and the record codec for writing the data set.</summary>
internal sealed class EtcdConnectionHandle(KvStoreOptions options) : IDisposable
{
    private readonly EtcdConnection _etcd = new(options);

    public string EncodeNode(NodeRecord n) => RecordCodec.EncodeNode(n);
    public string EncodeEntry(IpCacheEntry e) => RecordCodec.EncodeEntry(e);

    public async Task TxnAsync(List<RequestOp> ops)
    {
        var txn = new TxnRequest();
        txn.Success.AddRange(ops);
        await _etcd.TxnAsync(txn, CancellationToken.None);
    }

    public async Task<long> GrantAsync(long ttl) => (await _etcd.Lease.LeaseGrantAsync(new LeaseGrantRequest { TTL = ttl })).ID;

    public async Task RevokeAsync(long lease) => await _etcd.Lease.LeaseRevokeAsync(new LeaseRevokeRequest { ID = lease });

    public async Task<Dictionary<string, ByteString>> ListAllAsync(IEnumerable<string> prefixes)
    {
        var all = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        foreach (var p in prefixes)
        {
            var (kvs, _) = await _etcd.ListAsync(p, 0, CancellationToken.None);
            foreach (var kv in kvs)
            {
                all[kv.Key.ToStringUtf8()] = kv.Value;
            }
        }
        return all;
    }

    public void Dispose() => _etcd.Dispose();
}
