using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>Services stored in a real etcd (<see cref="ServiceStore"/>): apply, watch, delete, and a
/// malformed stored object that must leave the services in force as they were.</summary>
public class ServiceStoreTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    private const string Web = """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          clusterIP: 10.96.0.10
          selector: {app: web}
          ports: [{port: 80, targetPort: 8080}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: dns, namespace: kube-system}
        spec:
          clusterIP: 10.96.0.53
          selector: {k8s-app: kube-dns}
          ports: [{port: 53, protocol: UDP}]
        """;

    [Fact]
    public void FilesSplitIntoOneRecordPerServiceThatDecodesBack()
    {
        var records = ServiceRecords.Split(Web, "web.yaml");
        Assert.Equal(["default/web", "kube-system/dns"], records.Select(r => r.Name));
        foreach (var r in records)
        {
            Assert.Equal(r, ServiceRecords.Decode(System.Text.Encoding.UTF8.GetBytes(ServiceRecords.Encode(r))));
        }
        Assert.Throws<FormatException>(() => ServiceRecords.Check(records[0] with { Name = "default/other" }));
        Assert.Throws<FormatException>(() => ServiceRecords.Decode("{\"name\":\"default/web\"}"u8));
        Assert.True(ServiceRecords.IsValidName("default/web"));
        Assert.False(ServiceRecords.IsValidName("web"));
        Assert.False(ServiceRecords.IsValidName("a/b/c"));
    }

    [SkippableFact]
    public async Task StoredServicesAreWatchedAndAMalformedOneKeepsThePreviousSet()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var log = new LogSink();
        await using var writer = ServiceStore.Open(etcd.Options(), _ => { });
        await using var node = ServiceStore.Open(etcd.Options(), log.Add);
        var seen = new List<IReadOnlyList<string>>();
        node.Changed += services => { lock (seen) seen.Add(services.Select(s => s.QualifiedName).Order().ToList()); };
        node.StartWatching();
        WaitFor(() => node.Current is { Count: 0 }, "the first (empty) list");

        await writer.PutAsync(ServiceRecords.Split(Web, "web.yaml"), None);
        WaitFor(() => node.Current?.Count == 2, "both services at the node");
        Assert.Equal(["default/web", "kube-system/dns"], node.Current!.Select(s => s.QualifiedName));
        Assert.Equal(["default/web", "kube-system/dns"], await writer.ListNamesAsync(None));

        // A malformed object under the prefix: logged with its key, nothing raised, the set stays.
        int before;
        lock (seen) before = seen.Count;
        using var raw = Raw(etcd);
        await raw.PutAsync(writer.Prefix + "default/broken", "{\"name\":\"default/broken\",\"yaml\":\"kind: Pod\"}");
        WaitFor(() => log.Count("default/broken") == 1 && node.Refused == 1, "the refusal in the log");
        Assert.Equal(2, node.Current!.Count);
        lock (seen) Assert.Equal(before, seen.Count);

        // Once it is gone, changes flow again: delete one service.
        await raw.DeleteAsync(writer.Prefix + "default/broken");
        Assert.True(await writer.DeleteAsync("kube-system/dns", None));
        Assert.False(await writer.DeleteAsync("kube-system/dns", None));
        WaitFor(() => node.Current?.Count == 1, "the delete at the node");
        Assert.Equal("default/web", node.Current![0].QualifiedName);
        Assert.Equal(0, node.Refused);
    }

    [SkippableFact]
    public async Task AnUnreachableStoreIsAOneLineError()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var options = etcd.Options();
        etcd.Stop();
        await using var store = ServiceStore.Open(new KvStoreOptions { Endpoints = options.Endpoints, RequestTimeout = TimeSpan.FromSeconds(2) }, _ => { });
        var e = await Assert.ThrowsAsync<KvStoreUnavailableException>(() => store.DeleteAsync("default/web", None));
        Assert.DoesNotContain('\n', e.Message);
    }
}
