using System.Text.Json;
using static Gateway.Cluster.Tests.ClusterTestKit;

namespace Gateway.Cluster.Tests;

/// <summary>The JSON in etcd: Cilium's field names, strict decoding, round trips.</summary>
public sealed class RecordCodecTests
{
    [Fact]
    public void Node_UsesCiliumFieldNames_AndRoundTrips()
    {
        var node = Node("node-a", 1) with { PodCidrs = ["10.0.1.0/24", "10.0.2.0/24", "fd00:1::/64"] };
        string json = RecordCodec.EncodeNode(node);
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal("node-a", root.GetProperty("Name").GetString());
        Assert.Equal("default", root.GetProperty("Cluster").GetString());
        Assert.Equal("InternalIP", root.GetProperty("IPAddresses")[0].GetProperty("Type").GetString());
        Assert.Equal("192.168.50.1", root.GetProperty("IPAddresses")[0].GetProperty("IP").GetString());
        Assert.Equal("CiliumInternalIP", root.GetProperty("IPAddresses")[1].GetProperty("Type").GetString());
        Assert.Equal("10.0.1.0", root.GetProperty("IPv4AllocCIDR").GetProperty("IP").GetString());
        Assert.Equal("////AA==", root.GetProperty("IPv4AllocCIDR").GetProperty("Mask").GetString()); // Go's net.IPMask JSON
        Assert.Equal("10.0.2.0", root.GetProperty("IPv4SecondaryAllocCIDRs")[0].GetProperty("IP").GetString());
        Assert.Equal("fd00:1::", root.GetProperty("IPv6AllocCIDR").GetProperty("IP").GetString());
        Assert.Equal(node.WireGuardPublicKey, root.GetProperty("WireguardPubKey").GetString());
        Assert.Equal("boot-node-a", root.GetProperty("BootID").GetString());
        Assert.Equal(51871, root.GetProperty("WireguardPort").GetInt32());
        Assert.Equal(node, RecordCodec.DecodeNode(json));
    }

    [Fact]
    public void Node_AcceptsCiliumFieldsItDoesNotUse()
    {
        string json = RecordCodec.EncodeNode(Node("n", 2)).TrimEnd('}') + ",\"ClusterID\":3,\"Labels\":{\"a\":\"b\"},\"EncryptionKey\":0,\"NodeIdentity\":6}";
        Assert.Equal("n", RecordCodec.DecodeNode(json).Name);
    }

    [Theory]
    [InlineData("{")]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("{\"Name\":\"n\"}")]
    [InlineData("{\"Name\":5}")]
    public void Node_BadJson_IsAFormatException(string json) =>
        Assert.Throws<FormatException>(() => RecordCodec.DecodeNode(json));

    [Theory]
    [InlineData("\"WireguardPort\":51871", "\"WireguardPort\":0")]
    [InlineData("\"WireguardPort\":51871", "\"WireguardPort\":51871,\"Extra\":true")]
    [InlineData("\"IP\":\"192.168.50.1\"", "\"IP\":\"192.168.50.999\"")]
    [InlineData("\"Mask\":\"////AA==\"", "\"Mask\":\"//8A/w==\"")]
    [InlineData("\"IP\":\"10.0.1.0\"", "\"IP\":\"10.0.1.7\"")]
    public void Node_InvalidFields_AreRejected(string from, string to)
    {
        string json = RecordCodec.EncodeNode(Node("n", 1)).Replace(from, to, StringComparison.Ordinal);
        Assert.NotEqual(RecordCodec.EncodeNode(Node("n", 1)), json);
        Assert.Throws<FormatException>(() => RecordCodec.DecodeNode(json));
    }

    [Fact]
    public void IpCache_UsesIpIdentityPairFieldNames_AndRoundTrips()
    {
        var host = Entry("node-a", "10.0.1.5/32", 300);
        string json = RecordCodec.EncodeEntry(host);
        using (var doc = JsonDocument.Parse(json))
        {
            var root = doc.RootElement;
            Assert.Equal("10.0.1.5", root.GetProperty("IP").GetString());
            Assert.Equal(JsonValueKind.Null, root.GetProperty("Mask").ValueKind);
            Assert.Equal("192.168.50.1", root.GetProperty("HostIP").GetString());
            Assert.Equal(300u, root.GetProperty("ID").GetUInt32());
            Assert.Equal(0, root.GetProperty("Key").GetInt32());
            Assert.Equal("default", root.GetProperty("K8sNamespace").GetString());
            Assert.Equal("node-a", root.GetProperty("NodeName").GetString());
        }
        Assert.Equal(host, RecordCodec.DecodeEntry(json));

        var cidr = Entry("node-a", "fd00:9::/64", 301);
        string json6 = RecordCodec.EncodeEntry(cidr);
        Assert.Contains("\"Mask\":\"//////////8AAAAAAAAAAA==\"", json6);
        Assert.Equal(cidr, RecordCodec.DecodeEntry(json6));
        Assert.Equal("fd00:9::/64", RecordCodec.IpKeyOf(Gateway.Datapath.IpPrefix.Parse("fd00:9::/64")));
        Assert.Equal("10.0.1.5", RecordCodec.IpKeyOf(Gateway.Datapath.IpPrefix.Parse("10.0.1.5/32")));
    }

    [Theory]
    [InlineData("\"ID\":300", "\"ID\":0")]
    [InlineData("\"ID\":300", "\"ID\":16777216")]
    [InlineData("\"ID\":300", "\"ID\":\"300\"")]
    [InlineData("\"NodeName\":\"node-a\"", "\"NodeName\":\"a/b\"")]
    [InlineData("\"HostIP\":\"192.168.50.1\"", "\"HostIP\":\"\"")]
    public void IpCache_InvalidFields_AreRejected(string from, string to)
    {
        string json = RecordCodec.EncodeEntry(Entry("node-a", "10.0.1.5/32", 300)).Replace(from, to, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => RecordCodec.DecodeEntry(json));
    }

    [Fact]
    public void IdentityNumbers_MustBeCanonicalAndInRange()
    {
        Assert.Equal(256u, RecordCodec.DecodeIdentityNumber("256"));
        Assert.Equal(16777215u, RecordCodec.DecodeIdentityNumber("16777215"));
        foreach (var bad in new[] { "255", "0256", "16777216", "-1", "", "1e3", " 300" })
        {
            Assert.Throws<FormatException>(() => RecordCodec.DecodeIdentityNumber(bad));
        }
        Assert.Equal("k8s:a=b;k8s:c=d;", IdentityAllocation.ToCiliumKey("k8s:a=b;k8s:c=d"));
        Assert.Equal("k8s:a=b;", IdentityAllocation.ToCiliumKey("k8s:a=b;"));
        Assert.Throws<ArgumentException>(() => IdentityAllocation.ToCiliumKey(" "));
        Assert.Throws<ArgumentException>(() => IdentityAllocation.ToCiliumKey("k8s:a=\nb"));
    }

    [Fact]
    public void PolicyFiles_SplitIntoOneRecordPerDocument()
    {
        string text = SamplePolicies.Cnp("a", "default") + "\n---\n" + SamplePolicies.Cnp("b", "prod") + "\n---\n";
        var records = PolicyRecords.Split(text, "p.yaml");
        Assert.Equal(["CiliumNetworkPolicy/default/a", "CiliumNetworkPolicy/prod/b"], records.Select(r => r.Name));
        Assert.All(records, r => Assert.Single(Gateway.Policy.PolicyLoader.Parse(r.Yaml, "x")));
        Assert.Equal(records[1], RecordCodec.DecodePolicy(RecordCodec.EncodePolicy(records[1])));
    }
}

/// <summary>KvStoreOptions.Parse: every mistake is a one-line ClusterConfigException naming the setting.</summary>
public sealed class KvStoreOptionsTests
{
    [Fact]
    public void Parses_SeveralEndpoints_DefaultPort()
    {
        var o = KvStoreOptions.Parse("http://10.0.0.1:2379, http://etcd-b", null, null, null);
        Assert.Equal(2, o.Endpoints.Count);
        Assert.Equal(2379, o.Endpoints[1].Port);
        Assert.False(o.UseTls);
        Assert.Equal(TimeSpan.FromSeconds(15), o.LeaseTtl);
        Assert.Equal("default", o.ClusterName);
        Assert.Equal("http://10.0.0.1:2379,http://etcd-b:2379", o.EndpointText);
    }

    [Theory]
    [InlineData("", "KVStore")]
    [InlineData("10.0.0.1:2379", "not an http:// or https:// URL")]
    [InlineData("ftp://a:1", "not an http:// or https:// URL")]
    [InlineData("http://a:1,https://b:2", "mixes")]
    [InlineData("http://a:1/v3", "no path")]
    [InlineData("http://a:1,", "empty endpoint")]
    public void BadEndpoints(string endpoints, string message)
    {
        var e = Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse(endpoints, null, null, null));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void BadTlsAndTtl()
    {
        string file = Path.GetTempFileName();
        try
        {
            Assert.Contains("need https://", Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse("http://a:1", file, null, null)).Message);
            Assert.Contains("KVStoreCert given without KVStoreKey", Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse("https://a:1", null, file, null)).Message);
            Assert.Contains("no such file", Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse("https://a:1", "/nonexistent/ca.pem", null, null)).Message);
            Assert.Contains("KVStoreLeaseTTL", Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse("http://a:1", null, null, null, TimeSpan.FromSeconds(1))).Message);
            Assert.Contains("cluster name", Assert.Throws<ClusterConfigException>(() => KvStoreOptions.Parse("http://a:1", null, null, null, cluster: "a/b")).Message);
            Assert.True(KvStoreOptions.Parse("https://a:1", file, file, file).UseTls);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
