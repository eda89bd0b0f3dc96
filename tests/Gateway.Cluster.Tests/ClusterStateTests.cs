using Google.Protobuf;
using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>A full list is decoded page by page on several threads; the state it builds must be
/// exactly what applying the same keys one at a time builds, bad values included.</summary>
public class ClusterStateTests
{
    private static readonly KvKeys Keys = new("default");

    private static Dictionary<string, ByteString> Listing(int seed)
    {
        var rng = new Random(seed);
        var all = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        for (int n = 1; n <= 40; n++)
        {
            string json = RecordCodec.EncodeNode(Node($"node-{n}", n));
            if (rng.Next(8) == 0)
            {
                json = json.Replace("\"Name\":\"node-", "\"Name\":\"other-", StringComparison.Ordinal); // names another node
            }
            all[Keys.Node($"node-{n}")] = ByteString.CopyFromUtf8(json);
            for (int p = 2; p < 12; p++)
            {
                string ip = $"10.0.{n}.{p}";
                string entry = RecordCodec.EncodeEntry(Entry($"node-{n}", ip + "/32", 256 + (uint)rng.Next(4), n));
                if (rng.Next(10) == 0)
                {
                    entry = entry[..^3]; // truncated JSON
                }
                all[Keys.Ip(rng.Next(12) == 0 ? $"10.0.{n}.{p + 100}" : ip)] = ByteString.CopyFromUtf8(entry); // or under the wrong key
            }
        }
        for (uint id = 256; id < 260; id++)
        {
            all[KvKeys.IdentityIdPrefix + id] = ByteString.CopyFromUtf8($"k8s:app=a{id};k8s:io.kubernetes.pod.namespace=default;");
        }
        return all;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void APageDecodedInParallelBuildsWhatKeyByKeyBuilds(int seed)
    {
        var all = Listing(seed);
        var logPaged = new List<string>();
        var paged = new ClusterState(Keys, l => { lock (logPaged) { logPaged.Add(l); } });
        paged.Replace(all);
        var logSerial = new List<string>();
        var serial = new ClusterState(Keys, logSerial.Add);
        foreach (var (key, value) in all)
        {
            serial.Apply(key, value);
        }

        var a = paged.Build(1);
        var b = serial.Build(1);
        Assert.Equal(b.Nodes.OrderBy(kv => kv.Key), a.Nodes.OrderBy(kv => kv.Key));
        Assert.Equal(b.IpCache.OrderBy(kv => kv.Key), a.IpCache.OrderBy(kv => kv.Key));
        Assert.Equal(b.Identities.OrderBy(kv => kv.Key), a.Identities.OrderBy(kv => kv.Key));
        Assert.Equal(logSerial.Order(), logPaged.Order());
        Assert.NotEmpty(logSerial); // the listing does hold bad values
        Assert.NotEmpty(b.IpCache);

        // Listing the same values again changes nothing and decodes nothing (no log line).
        int lines = logPaged.Count;
        Assert.False(paged.Replace(all));
        Assert.Equal(lines, logPaged.Count);
    }
}
