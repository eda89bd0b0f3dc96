using Gateway.Cli.Demo;

namespace Gateway.Cli.Tests.Cluster;

/// <summary>
/// Cluster mode services: a Service stored in a real etcd with `gateway service apply --kvstore`
/// is translated by a node that has no Services file; a malformed object under the prefix leaves
/// the service in force; `gateway service delete` removes it everywhere. Root only.
/// </summary>
[Collection("daemon")]
public class ClusterServiceTests
{
    private const string Vip = "10.96.0.30";
    private static int s_counter;

    private static string NodeLog(DemoCluster.Node node)
    {
        lock (node.Log)
        {
            return node.Log.ToString();
        }
    }

    /// <summary>GET / from the pod to VIP:80: the status line, or the error.</summary>
    private static string GetVip(DemoCluster.Pod from, int timeoutMs = 1500) => DemoCluster.HttpRequest(from, Vip, 80, timeoutMs).Split("\r\n")[0];

    [SkippableFact]
    public void AServiceStoredInEtcdIsTranslatedAMalformedObjectKeepsItAndDeleteRemovesIt()
    {
        Skip.If(KvCluster.CannotRunReason() is not null, KvCluster.CannotRunReason());
        using var cluster = new KvCluster($"gs{Environment.ProcessId % 10000}{Interlocked.Increment(ref s_counter)}", leaseTtlSeconds: 3);
        cluster.StartEtcd();
        var a = cluster.AddNode(1);
        var b = cluster.AddNode(2);
        var frontend = cluster.AddPod(a, "frontend", 10, ("app", "frontend"));
        var db = cluster.AddPod(b, "db", 10, ("app", "db"));
        cluster.WriteConfig(a);
        cluster.WriteConfig(b);
        cluster.StartNodes(a, b);
        CliHarness.WaitFor(() => DemoCluster.Ping(frontend, db, 1) == 1, "pods of both nodes known to both", TimeSpan.FromSeconds(20));
        using var http = cluster.Lab.ServeHttp(db);
        Assert.Equal("timed out", GetVip(frontend, 500));

        string file = Path.Combine(cluster.Directory, "db-service.yaml");
        DemoCluster.WriteSecret(file, $$"""
            apiVersion: v1
            kind: Service
            metadata: {name: db, namespace: default}
            spec:
              clusterIP: {{Vip}}
              selector: {app: db}
              ports: [{port: 80, protocol: TCP}]
            """);
        string applied = cluster.Gateway($"service apply {file} --kvstore {cluster.EtcdUrl}", out int code);
        Assert.True(code == 0, applied);
        Assert.Contains("stored service default/db", applied);
        CliHarness.WaitFor(() => GetVip(frontend) == "HTTP/1.0 200 OK", "the stored service at node-1", TimeSpan.FromSeconds(20));
        Assert.Contains("cluster: 1 stored service(s) in force", NodeLog(a));

        // A malformed object: node-1 logs it by key and keeps translating the VIP.
        cluster.Etcdctl("put gateway/state/services/v1/default/default/broken '{\"name\":\"default/broken\",\"yaml\":\"kind: Pod\"}'");
        CliHarness.WaitFor(() => NodeLog(a).Contains("gateway/state/services/v1/default/default/broken", StringComparison.Ordinal), "the refusal in node-1's log");
        Assert.Contains("previous services stay in force", NodeLog(a));
        Assert.Equal("HTTP/1.0 200 OK", GetVip(frontend));
        cluster.Etcdctl("del gateway/state/services/v1/default/default/broken");

        // Delete: the VIP is gone on every node; deleting again or a bad name are one-line errors.
        string deleted = cluster.Gateway($"service delete default/db --kvstore {cluster.EtcdUrl}", out code);
        Assert.True(code == 0, deleted);
        CliHarness.WaitFor(() => GetVip(frontend, 500) != "HTTP/1.0 200 OK", "the VIP to go", TimeSpan.FromSeconds(20));
        cluster.Gateway($"service delete default/db --kvstore {cluster.EtcdUrl}", out code);
        Assert.Equal(1, code);
        string bad = cluster.Gateway($"service delete db --kvstore {cluster.EtcdUrl}", out code);
        Assert.Equal(2, code);
        Assert.Contains("is not NAMESPACE/NAME", bad);
    }
}
