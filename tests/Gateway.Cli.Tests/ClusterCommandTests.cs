using System.Diagnostics;
using System.Text.Json;
using Gateway.Cluster;
using Gateway.Cluster.Tests;

namespace Gateway.Cli.Tests;

/// <summary>`gateway policy apply/delete --kvstore` and `gateway cluster status` against a real etcd.</summary>
public sealed class ClusterCommandTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"gw-clustercli-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public ClusterCommandTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string TwoPolicies = SamplePolicies.Cnp("allow-web", "default") + "\n" + """
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: deny-db
          namespace: prod
        spec:
          podSelector:
            matchLabels:
              app: db
          policyTypes: [Ingress]
        """;

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [SkippableFact]
    public void Apply_Status_Delete_RoundTrip()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        string file = Write("policies.yaml", TwoPolicies);

        var apply = CliHarness.Run("policy", "apply", file, "--kvstore", etcd.Url);
        Assert.True(apply.Code == 0, apply.Err);
        Assert.Contains("stored CiliumNetworkPolicy/default/allow-web", apply.Out);
        Assert.Contains("stored NetworkPolicy/prod/deny-db", apply.Out);

        var status = CliHarness.Run("cluster", "status", "--kvstore", etcd.Url);
        Assert.True(status.Code == 0, status.Err);
        Assert.Contains("Policies: 2", status.Out);
        Assert.Contains("  CiliumNetworkPolicy/default/allow-web", status.Out);
        Assert.Contains("Nodes: 0", status.Out);

        // Applying the same file again is an update, not an error.
        Assert.Equal(0, CliHarness.Run("policy", "apply", file, "--kvstore", etcd.Url).Code);

        var delete = CliHarness.Run("policy", "delete", "NetworkPolicy/prod/deny-db", "--kvstore", etcd.Url);
        Assert.True(delete.Code == 0, delete.Err);
        var again = CliHarness.Run("policy", "delete", "NetworkPolicy/prod/deny-db", "--kvstore", etcd.Url);
        Assert.Equal(1, again.Code);
        Assert.Contains("no stored policy named NetworkPolicy/prod/deny-db", again.Err);

        var json = CliHarness.Run("cluster", "status", "--kvstore", etcd.Url, "--json");
        Assert.True(json.Code == 0, json.Err);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(1, doc.RootElement.GetProperty("policies").GetProperty("count").GetInt32());
        Assert.Equal("CiliumNetworkPolicy/default/allow-web", doc.RootElement.GetProperty("policies").GetProperty("names")[0].GetString());
        Assert.Equal("default", doc.RootElement.GetProperty("cluster").GetString());
    }

    [SkippableFact]
    public void Apply_RefusesAFileWithOneBadDocument_AndStoresNothing()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        string bad = Write("bad.yaml", TwoPolicies + """

            ---
            apiVersion: cilium.io/v2
            kind: CiliumNetworkPolicy
            metadata:
              name: broken
            spec:
              endpointSelector: {}
              ingress:
              - toPorts:
                - ports:
                  - port: "http"
                    protocol: TCP
            """);
        var apply = CliHarness.Run("policy", "apply", bad, "--kvstore", etcd.Url);
        Assert.Equal(2, apply.Code);
        Assert.Contains("bad.yaml: document 3", apply.Err);
        Assert.Single(apply.Err.TrimEnd().Split('\n'));

        var json = CliHarness.Run("cluster", "status", "--kvstore", etcd.Url, "--json");
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(0, doc.RootElement.GetProperty("policies").GetProperty("count").GetInt32());
    }

    [SkippableFact]
    public async Task Status_ListsRegisteredNodes_WithLeaseAndFingerprint()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        await using var client = await ClusterClient.ConnectAsync(etcd.Options(), _ => { });
        string key = Convert.ToBase64String(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
        await client.RegisterNodeAsync(new NodeRecord
        {
            Name = "node-a", WireGuardPublicKey = key, Address = "192.168.50.1", Port = 51871, TunnelAddress = "10.200.0.1", PodCidrs = ["10.0.1.0/24"], BootId = "b1",
        }, CancellationToken.None);
        uint id = await client.AllocateIdentityAsync("k8s:app=web", CancellationToken.None);
        await client.PublishIpCacheAsync([new IpCacheEntry { Prefix = "10.0.1.5/32", Identity = id, HostIp = "192.168.50.1", NodeName = "node-a" }], CancellationToken.None);

        var status = CliHarness.Run("cluster", "status", "--kvstore", etcd.Url);
        Assert.True(status.Code == 0, status.Err);
        Assert.Contains("Nodes: 1", status.Out);
        Assert.Matches(@"node-a\s+up\s+1[0-5]s\s+[0-9a-f]{16}\s+192\.168\.50\.1:51871\s+10\.200\.0\.1\s+10\.0\.1\.0/24", status.Out);
        Assert.Contains($"{id}", status.Out);
        Assert.Contains("k8s:app=web; (1 node(s))", status.Out);
        Assert.Contains("Endpoints: 1", status.Out);
        Assert.DoesNotContain(key, status.Out);

        var json = CliHarness.Run("cluster", "status", "--kvstore", etcd.Url, "--json");
        using var doc = JsonDocument.Parse(json.Out);
        var node = doc.RootElement.GetProperty("nodes")[0];
        Assert.Equal("node-a", node.GetProperty("name").GetString());
        Assert.Equal("up", node.GetProperty("state").GetString());
        Assert.InRange(node.GetProperty("leaseSecondsLeft").GetInt64(), 1, 15);
        Assert.Equal(key, node.GetProperty("publicKey").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("identities").GetProperty("count").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("identities").GetProperty("items")[0].GetProperty("references").GetInt32());
        Assert.Equal(1, doc.RootElement.GetProperty("endpoints").GetProperty("count").GetInt32());
    }

    [Fact]
    public void UnreachableEtcd_OneLine_Exit1_WithinSeconds()
    {
        string file = Write("p.yaml", TwoPolicies);
        string url = $"http://127.0.0.1:{EtcdServer.FreePort()}";
        foreach (var args in new[] { new[] { "policy", "apply", file, "--kvstore", url }, ["policy", "delete", "x/y", "--kvstore", url], ["cluster", "status", "--kvstore", url] })
        {
            var watch = Stopwatch.StartNew();
            var r = CliHarness.Run(args);
            Assert.Equal(1, r.Code);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(6), $"{args[0]} {args[1]} took {watch.Elapsed}");
            Assert.StartsWith("gateway: ", r.Err);
            Assert.Contains("unreachable", r.Err);
            Assert.Single(r.Err.TrimEnd().Split('\n'));
        }
    }

    [Fact]
    public void BadKvStoreOptions_Exit2()
    {
        string file = Write("p.yaml", TwoPolicies);
        var r = CliHarness.Run("policy", "apply", file, "--kvstore", "ftp://127.0.0.1:2379");
        Assert.Equal(2, r.Code);
        Assert.Contains("--kvstore", r.Err);
        var r2 = CliHarness.Run("cluster", "status", "--kvstore", "https://127.0.0.1:2379", "--kvstore-cert", file);
        Assert.Equal(2, r2.Code);
        Assert.Contains("--kvstore-cert given without --kvstore-key", r2.Err);
        var r3 = CliHarness.Run("cluster", "status", "--kvstore", "https://127.0.0.1:2379", "--kvstore-ca", Path.Combine(_dir, "missing.pem"));
        Assert.Equal(2, r3.Code);
        Assert.Contains("no such file", r3.Err);
    }
}
