using System.Collections.Concurrent;
using System.Diagnostics;
using dotnet_etcd;

namespace Gateway.Cluster.Tests;

/// <summary>Shared pieces of the cluster tests: records, a log sink, polling with a deadline
/// (for etcd, an external process), and a raw etcd client for writing what a node never would.</summary>
internal static class ClusterTestKit
{
    public static NodeRecord Node(string name, int n = 1) => new()
    {
        Name = name,
        WireGuardPublicKey = Convert.ToBase64String(Enumerable.Repeat((byte)n, 32).ToArray()),
        Address = $"192.168.50.{n}",
        Port = 51871,
        TunnelAddress = $"10.200.0.{n}",
        PodCidrs = [$"10.0.{n}.0/24"],
        BootId = $"boot-{name}",
    };

    public static IpCacheEntry Entry(string node, string prefix, uint identity, int n = 1) => new()
    {
        Prefix = prefix,
        Identity = identity,
        HostIp = $"192.168.50.{n}",
        NodeName = node,
        Namespace = "default",
        PodName = $"pod-{prefix.Replace('/', '-')}",
    };

    public static void WaitFor(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < (timeout ?? TimeSpan.FromSeconds(20)), $"timed out waiting for {what}");
            Thread.Sleep(25);
        }
    }

    public static EtcdClient Raw(EtcdServer etcd) => new(etcd.Url.Replace("http://", "", StringComparison.Ordinal), configureSslOptions: null);
}

/// <summary>Collects log lines from a client.</summary>
internal sealed class LogSink
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public void Add(string line) => Lines.Enqueue(line);

    public int Count(string fragment) => Lines.Count(l => l.Contains(fragment, StringComparison.Ordinal));

    public override string ToString() => string.Join(Environment.NewLine, Lines);
}
