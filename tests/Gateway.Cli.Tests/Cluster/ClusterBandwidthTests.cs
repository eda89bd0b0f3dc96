using Gateway.Cli.Demo;
using Gateway.Cli.Tests.Overlay;
using Xunit.Abstractions;

namespace Gateway.Cli.Tests.Cluster;

/// <summary>
/// Cluster mode bandwidth limits: a pod's kubernetes.io/egress-bandwidth stored in a real etcd with
/// `gateway bandwidth apply --kvstore` is enforced by the pod's node, whose Endpoints file sets no
/// limit; a malformed stored value is logged by key and ignored; `gateway bandwidth delete` lifts
/// the limit without restarting anything. Root only.
/// </summary>
[Collection("daemon")]
public class ClusterBandwidthTests(ITestOutputHelper output)
{
    private static int s_counter;

    [SkippableFact]
    public void ALimitStoredInEtcdIsEnforcedByThePodsNodeAndDeleteLiftsIt()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        Skip.IfNot(File.Exists("/usr/bin/iperf3"), "needs iperf3 (scripts/setup.sh installs it)");
        using var cluster = new KvCluster($"gb{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_counter)}", leaseTtlSeconds: 3);
        cluster.StartEtcd();
        var a = cluster.AddNode(1);
        var b = cluster.AddNode(2);
        var slow = cluster.AddPod(a, "slow", 10, ("app", "slow"));
        var sink = cluster.AddPod(b, "sink", 10, ("app", "sink"));
        cluster.WriteConfig(a);
        cluster.WriteConfig(b);
        cluster.StartNodes(a, b);
        CliHarness.WaitFor(() => DemoCluster.Ping(slow, sink, 1) == 1, "pods of both nodes known to both", TimeSpan.FromSeconds(20));

        string file = Path.Combine(cluster.Directory, "limits.yaml");
        DemoCluster.WriteSecret(file, $$"""
            endpoints:
              - name: slow
                namespace: default
                ips: [{{slow.Ip}}]
                labels: {app: slow}
                annotations:
                  kubernetes.io/egress-bandwidth: 10M
            """);
        string applied = cluster.Gateway($"bandwidth apply {file} --kvstore {cluster.EtcdUrl}", out int code);
        Assert.True(code == 0, applied);
        Assert.Contains("stored bandwidth default/slow: egress 10M, ingress -", applied);
        KvCluster.WaitForLog(a, "cluster: bandwidth limits stored for 1 pod(s)");
        string listed = cluster.Gateway($"bandwidth list --kvstore {cluster.EtcdUrl}", out code);
        Assert.Matches(@"default/slow +- +EGRESS +10M", listed);

        var (limited, seconds, _) = BandwidthTests.Iperf(cluster.Lab, slow, sink, "-t 5", 5201);
        output.WriteLine($"stored 10M: {limited / 1e6:F2} Mbit/s goodput over {seconds:F1} s; load {File.ReadAllText("/proc/loadavg").Trim()}");
        // Goodput: the limit counts IP bytes, TCP/IP headers take ~4% of 1500-byte packets.
        Assert.InRange(limited, 8.5e6, 10.5e6);

        // A malformed stored value: the node logs it by key and ignores it.
        cluster.Etcdctl("put gateway/state/bandwidth/v1/default/default/broken '{\"name\":\"default/broken\",\"annotations\":{\"kubernetes.io/egress-bandwidth\":\"lots\"}}'");
        KvCluster.WaitForLog(a, "gateway/state/bandwidth/v1/default/default/broken: kubernetes.io/egress-bandwidth: 'lots'");

        string deleted = cluster.Gateway($"bandwidth delete default/slow --kvstore {cluster.EtcdUrl}", out code);
        Assert.True(code == 0, deleted);
        KvCluster.WaitForLog(a, "cluster: bandwidth limits stored for 0 pod(s)");
        var (free, _, _) = BandwidthTests.Iperf(cluster.Lab, slow, sink, "-t 2", 5202);
        output.WriteLine($"after delete: {free / 1e6:F2} Mbit/s goodput");
        Assert.True(free > 30e6, $"{free / 1e6:F2} Mbit/s after the limit was deleted");
        cluster.Gateway($"bandwidth delete default/slow --kvstore {cluster.EtcdUrl}", out code);
        Assert.Equal(1, code);
    }
}
