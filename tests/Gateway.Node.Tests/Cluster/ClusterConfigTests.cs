using Gateway.Crypto;
using Gateway.Node.Configuration;

namespace Gateway.Node.Tests.Cluster;

public class ClusterConfigTests
{
    private static readonly string PrivateKey = NewKey();

    private static string NewKey()
    {
        using var key = WireGuardKey.GeneratePrivate();
        return key.ToBase64();
    }

    private static string File(string overlay) => $"""
        [Interface]
        PrivateKey = {PrivateKey}

        [Overlay]
        TunnelAddress = 10.250.0.1
        PodCIDR = 10.11.1.0/24
        ClusterCIDR = 10.11.0.0/16
        Endpoints = /etc/gateway/endpoints.yaml
        {overlay}
        """;

    [Fact]
    public void ReadsTheClusterKeysWithoutAnyPeer()
    {
        using var config = WgQuickConfig.Parse(File("""
            KVStoreCA = certs/ca.pem
            KVStore = https://10.0.0.1:2379, https://10.0.0.2:2379
            KVStoreCert = /certs/client.pem
            KVStoreKey = /certs/client-key.pem
            KVStoreLeaseTTL = 3
            NodeAddress = 192.168.1.5
            ClusterName = prod-eu
            """), "/etc/gateway/gw0.conf");
        var kv = config.Overlay!.KvStore!;
        Assert.Empty(config.Peers);
        Assert.Equal("https://10.0.0.1:2379, https://10.0.0.2:2379", kv.Endpoints);
        Assert.Equal("/etc/gateway/certs/ca.pem", kv.CaPath);
        Assert.Equal("/certs/client.pem", kv.CertPath);
        Assert.Equal("/certs/client-key.pem", kv.KeyPath);
        Assert.Equal(TimeSpan.FromSeconds(3), kv.LeaseTtl);
        Assert.Equal("192.168.1.5", kv.NodeAddress.ToString());
        Assert.Equal("prod-eu", kv.ClusterName);
    }

    [Fact]
    public void DefaultsAreFifteenSecondsNoAddressAndClusterDefault()
    {
        using var config = WgQuickConfig.Parse(File("KVStore = http://127.0.0.1:2379"), "gw0.conf");
        var kv = config.Overlay!.KvStore!;
        Assert.Equal(TimeSpan.FromSeconds(15), kv.LeaseTtl);
        Assert.Null(kv.NodeAddress);
        Assert.Equal("default", kv.ClusterName);
        Assert.Null(WgQuickConfig.Parse(File(""), "gw0.conf").Overlay!.KvStore);
    }

    [Theory]
    [InlineData("KVStore = ftp://a:2379", 9, "KVStore entry 'ftp://a:2379' is not an http:// or https:// URL")]
    [InlineData("KVStore = http://a:2379/v3", 9, "is not an http:// or https:// URL")]
    [InlineData("KVStore = ,", 9, "KVStore needs at least one etcd URL")]
    [InlineData("KVStore = http://a:2379\nKVStoreLeaseTTL = 1", 10, "KVStoreLeaseTTL '1' is not a number of seconds from 2 to 3600")]
    [InlineData("KVStore = http://a:2379\nKVStoreLeaseTTL = 15s", 10, "KVStoreLeaseTTL '15s'")]
    [InlineData("KVStore = http://a:2379\nNodeAddress = node-1", 10, "NodeAddress 'node-1' is not an IP address")]
    [InlineData("KVStore = http://a:2379\nClusterName = Prod/1", 10, "ClusterName 'Prod/1' must be")]
    [InlineData("KVStore = http://a:2379\nKVStoreCert = c.pem", 10, "KVStoreCert and KVStoreKey go together")]
    [InlineData("NodeAddress = 10.0.0.1", 9, "NodeAddress needs KVStore")]
    [InlineData("KVStore = http://a:2379\nKVStoreLeaseTTL = 5\nKVStoreLeaseTTL = 6", 11, "KVStoreLeaseTTL is already set on line 10")]
    [InlineData("KVStore = http://a:2379\nIdentityStore = ids.json", 9, "KVStore and IdentityStore exclude each other")]
    public void BadClusterKeysNameFileAndLine(string overlay, int line, string message)
    {
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(File(overlay), "gw0.conf"));
        Assert.Contains($"gw0.conf:{line}:", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void ClusterModeTakesIpsecEncryption()
    {
        var config = WgQuickConfig.Parse(File("KVStore = http://a:2379\nEncryption = ipsec\nIPsecKeyFile = /etc/gateway/ipsec.keys"), "gw0.conf");
        Assert.Equal(OverlayEncryption.Ipsec, config.Overlay!.Encryption);
        Assert.NotNull(config.Overlay.KvStore);
    }

    [Fact]
    public void ClusterModeNeedsAClusterCidrThatStrictModeCanBlock()
    {
        string text = File("KVStore = http://a:2379").Replace("ClusterCIDR = 10.11.0.0/16\n", "", StringComparison.Ordinal);
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text, "gw0.conf"));
        Assert.Contains("KVStore needs ClusterCIDR", e.Message);
    }
}
