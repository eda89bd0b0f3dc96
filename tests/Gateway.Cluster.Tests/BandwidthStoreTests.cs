using Gateway.Policy;
using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>Pods' bandwidth annotations stored in a real etcd (<see cref="BandwidthStore"/>): the
/// record format, apply (store and clear), watch, delete, and stored values a node must ignore
/// without losing the rest.</summary>
public class BandwidthStoreTests
{
    private static readonly CancellationToken None = CancellationToken.None;

    private static string WriteEndpoints(string yaml)
    {
        string path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Fact]
    public void EndpointsFilesBecomeOneRecordPerPodThatDecodesBack()
    {
        string path = WriteEndpoints("""
            endpoints:
              - {name: slow, ips: [10.11.1.10], labels: {app: slow}, annotations: {kubernetes.io/egress-bandwidth: 10M, team: x}}
              - {name: capped, namespace: prod, ips: [10.11.2.13], labels: {app: capped}, annotations: {kubernetes.io/ingress-bandwidth: 1.5Mi}}
              - {name: free, ips: [10.11.1.12], labels: {app: free}}
              - {name: node-2, ips: [192.168.1.2], labels: {"reserved:remote-node": ""}}
            """);
        try
        {
            var records = BandwidthRecords.Load([path]);
            Assert.Equal([new BandwidthRecord("default/slow", "10M", null), new BandwidthRecord("prod/capped", null, "1.5Mi"), new BandwidthRecord("default/free", null, null)], records);
            foreach (var r in records)
            {
                Assert.Equal(r, BandwidthRecords.Decode(System.Text.Encoding.UTF8.GetBytes(BandwidthRecords.Encode(r))));
            }
            Assert.Equal("""{"name":"default/slow","annotations":{"kubernetes.io/egress-bandwidth":"10M"}}""", BandwidthRecords.Encode(records[0]));
            Assert.Equal(new BandwidthLimits(0, 1_572_864), BandwidthRecords.Check(records[1]));
            // Twice the same pod across files is refused.
            var e = Assert.Throws<FormatException>(() => BandwidthRecords.Load([path, path]));
            Assert.Contains("default/slow is also in", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void AMalformedValueRefusesTheApplyWithFileLineAndReason()
    {
        string path = WriteEndpoints("""
            endpoints:
              - {name: slow, ips: [10.11.1.10], labels: {app: slow}, annotations: {kubernetes.io/egress-bandwidth: 10M}}
              - name: x
                ips: [10.11.1.13]
                annotations:
                  kubernetes.io/ingress-bandwidth: 10mbit
            """);
        try
        {
            var e = Assert.Throws<FormatException>(() => BandwidthRecords.Load([path]));
            Assert.Contains(path, e.Message);
            Assert.Contains("(line 6)", e.Message);
            Assert.Contains("'mbit' is not a quantity suffix", e.Message);
            Assert.EndsWith("; nothing is stored", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void StoredValuesAreJudgedPerAnnotation()
    {
        var limits = BandwidthRecords.Read(BandwidthRecords.Decode("""{"name":"default/a","annotations":{"kubernetes.io/egress-bandwidth":"lots","kubernetes.io/ingress-bandwidth":"2M","other":"x"}}"""u8), out var problems);
        Assert.Equal(new BandwidthLimits(0, 2_000_000), limits);
        Assert.Contains("kubernetes.io/egress-bandwidth: 'lots'", Assert.Single(problems));
        Assert.Throws<FormatException>(() => BandwidthRecords.Check(new BandwidthRecord("default/a", "999", null))); // under 1k
        Assert.Throws<FormatException>(() => BandwidthRecords.Decode("""{"name":"default/a"}"""u8));
        Assert.Throws<FormatException>(() => BandwidthRecords.Decode("""{"name":"a","annotations":{}}"""u8));
        Assert.Throws<FormatException>(() => BandwidthRecords.Decode("""{"name":"default/a","annotations":{"kubernetes.io/egress-bandwidth":10}}"""u8));
    }

    [SkippableFact]
    public async Task StoredLimitsAreWatchedClearedDeletedAndBadValuesIgnoredAlone()
    {
        EtcdServer.SkipUnlessInstalled();
        using var etcd = new EtcdServer();
        var log = new LogSink();
        await using var writer = BandwidthStore.Open(etcd.Options(), _ => { });
        await using var node = BandwidthStore.Open(etcd.Options(), log.Add);
        int changes = 0;
        node.Changed += _ => Interlocked.Increment(ref changes);
        node.StartWatching();
        WaitFor(() => node.Current is { Count: 0 }, "the first (empty) list");

        var cleared = await writer.ApplyAsync([new BandwidthRecord("default/slow", "10M", null), new BandwidthRecord("prod/capped", null, "1.5Mi"), new BandwidthRecord("default/free", null, null)], None);
        Assert.Empty(cleared);
        WaitFor(() => node.Current?.Count == 2, "both pods at the node");
        Assert.Equal(new BandwidthLimits(10_000_000, 0), node.Current!["default/slow"]);
        Assert.Equal(new BandwidthLimits(0, 1_572_864), node.Current["prod/capped"]);

        // A bad value is ignored alone (the record's other annotation counts); a record that is not
        // one is absent; each is logged once with its key; the other pods stay.
        using var raw = Raw(etcd);
        await raw.PutAsync(writer.Prefix + "default/half", """{"name":"default/half","annotations":{"kubernetes.io/egress-bandwidth":"10 M","kubernetes.io/ingress-bandwidth":"3M"}}""");
        await raw.PutAsync(writer.Prefix + "default/junk", "{not json");
        await raw.PutAsync(writer.Prefix + "default/other", """{"name":"default/slow","annotations":{"kubernetes.io/egress-bandwidth":"1M"}}""");
        WaitFor(() => node.Refused == 3 && node.Current?.Count == 3, "the bad values judged");
        Assert.Equal(new BandwidthLimits(0, 3_000_000), node.Current!["default/half"]);
        Assert.Equal(new BandwidthLimits(10_000_000, 0), node.Current["default/slow"]);
        Assert.Equal(1, log.Count("default/half: kubernetes.io/egress-bandwidth: ' M' is not a quantity suffix"));
        Assert.Equal(1, log.Count("default/junk: not a bandwidth record"));
        Assert.Equal(1, log.Count("default/other: record is pod 'default/slow', not the key's"));
        var problems = new List<string>();
        Assert.Equal(["default/half", "default/slow", "prod/capped"], (await writer.ReadAsync(problems, None)).Select(r => r.Name));
        Assert.Equal(2, problems.Count);

        // Another change does not repeat the log lines.
        Assert.Equal(["default/slow"], await writer.ApplyAsync([new BandwidthRecord("default/slow", null, null)], None));
        WaitFor(() => node.Current?.ContainsKey("default/slow") == false, "slow cleared at the node");
        Assert.Equal(1, log.Count("default/junk"));

        Assert.True(await writer.DeleteAsync("prod/capped", None));
        Assert.False(await writer.DeleteAsync("prod/capped", None));
        WaitFor(() => node.Current?.ContainsKey("prod/capped") == false, "the delete at the node");
        await Assert.ThrowsAsync<ArgumentException>(() => writer.ApplyAsync([new BandwidthRecord("default/x", "10 M", null)], None));
    }
}
