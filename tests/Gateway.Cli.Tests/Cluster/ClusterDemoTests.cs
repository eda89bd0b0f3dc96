using Gateway.Cli.Demo;

namespace Gateway.Cli.Tests.Cluster;

[Collection("daemon")]
public class ClusterDemoTests
{
    [SkippableFact]
    public void TheClusterDemoJoinsEnforcesPolicyFromEtcdHandlesAJoinAndACrashAndAuditsTheUnderlay()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        var (code, text, error) = CliHarness.Run("demo", "--cluster");
        Assert.True(code == 0, $"cluster demo failed ({code}):\n{text}\n{error}");
        foreach (var (from, to) in new[] { ("frontend", "backend"), ("frontend", "db"), ("backend", "frontend"), ("backend", "db"), ("db", "frontend"), ("db", "backend") })
        {
            Assert.Matches($@"ping {from} -> {to}\s+3/3 replies\s+ALLOWED", text);
        }
        Assert.Contains("stored CiliumNetworkPolicy/default/db-ingress", text);
        Assert.Matches(@"ping frontend -> db\s+0/3 replies\s+DENIED by the policy from etcd", text);
        Assert.Matches(@"ping frontend -> cache\s+3/3 replies\s+ALLOWED \(node-1 -> node-4\)", text);
        Assert.Matches(@"node-2 killed \(SIGKILL\): its lease ended and every node removed it in \d+\.\d s", text);
        Assert.Matches(@"route to backend on node-1\s+prohibit", text);
        if (File.Exists("/usr/bin/tcpdump") || File.Exists("/usr/sbin/tcpdump"))
        {
            Assert.Matches(@"underlay capture on node-1 \(\d+ packets, \d+ WireGuard\): gateway audit says ENCRYPTED", text);
        }
        Assert.Contains("removed the demo's etcd, namespaces, links and files", text);
        Assert.DoesNotContain("gk" + (Environment.ProcessId % 100000), DemoCluster.Sh("ip netns list"));
    }
}
