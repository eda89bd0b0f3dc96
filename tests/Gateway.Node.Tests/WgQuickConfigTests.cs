using System.Net;
using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Node.Configuration;

namespace Gateway.Node.Tests;

public class WgQuickConfigTests
{
    private static readonly string PrivateKey = NewKey();
    private static readonly string PeerA = NewKey();
    private static readonly string PeerB = NewKey();
    private static readonly string Psk = NewKey();

    private static string NewKey()
    {
        using var key = WireGuardKey.GeneratePrivate();
        return key.ToBase64();
    }

    private static IPAddress[] NoDns(string host) => throw new InvalidOperationException("no DNS in this test");

    [Fact]
    public void ParsesATypicalWgQuickFile()
    {
        string text = $"""
            # a comment
            [Interface]
            PrivateKey = {PrivateKey}
            ListenPort = 51820
            Address = 10.0.0.1/24, fd00::1/64
            Address = 10.0.1.1/24
            MTU = 1420
            DNS = 1.1.1.1
            PostUp = echo up %i

            [Peer]
            PublicKey = {PeerA}
            PresharedKey = {Psk}
            AllowedIPs = 10.0.0.2/32, fd00::2/128
            AllowedIPs = 192.168.50.0/24   # more
            Endpoint = 192.0.2.10:51820
            PersistentKeepalive = 25

            [peer]
            publickey = {PeerB}
            allowedips = 10.0.0.3/32
            endpoint = [2001:db8::5]:4500
            """;
        using var config = WgQuickConfig.Parse(text, "wg0.conf", NoDns);
        Assert.Equal((ushort)51820, config.Interface.ListenPort);
        Assert.Equal(["10.0.0.1/24", "fd00::1/64", "10.0.1.1/24"], config.Interface.Addresses.Select(a => a.ToString()));
        Assert.Equal(1420, config.Interface.Mtu);
        Assert.Equal(["echo up %i"], config.Interface.PostUp);
        Assert.Contains(config.Warnings, w => w.Contains("wg0.conf:8") && w.Contains("DNS"));
        Assert.Equal(2, config.Peers.Count);
        var a = config.Peers[0];
        Assert.Equal(PeerA, a.PublicKey.ToBase64());
        Assert.Equal(Psk, a.PresharedKey!.ToBase64());
        Assert.Equal(["10.0.0.2/32", "fd00::2/128", "192.168.50.0/24"], a.AllowedIps.Select(p => p.ToString()));
        Assert.Equal(IpEndpoint.Parse("192.0.2.10:51820"), a.Endpoint);
        Assert.Equal((ushort)25, a.PersistentKeepalive);
        var b = config.Peers[1];
        Assert.Equal(IpEndpoint.Parse("[2001:db8::5]:4500"), b.Endpoint);
        Assert.Null(b.PresharedKey);
        Assert.Equal((ushort)0, b.PersistentKeepalive);
    }

    [Fact]
    public void ResolvesHostNamesAtLoadPreferringIPv4()
    {
        string text = $"[Interface]\nPrivateKey = {PrivateKey}\n[Peer]\nPublicKey = {PeerA}\nEndpoint = peer.example:51820\n";
        using var config = WgQuickConfig.Parse(text, "x.conf",
            host => host == "peer.example" ? [IPAddress.Parse("2001:db8::1"), IPAddress.Parse("192.0.2.7")] : []);
        Assert.Equal(IpEndpoint.Parse("192.0.2.7:51820"), config.Peers[0].Endpoint);
        Assert.Equal("peer.example:51820", config.Peers[0].EndpointText);
    }

    [Theory]
    [InlineData("[Interface]\nPrivateKey = {pk}\nListenPort = 70000\n", 3, "ListenPort")]
    [InlineData("[Interface]\nPrivateKey = {pk}\nBogus = 1\n", 3, "unknown key 'Bogus'")]
    [InlineData("[Interface]\nPrivateKey = notakey\n", 2, "PrivateKey is not a base64")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nPublicKey = {a}\nAllowedIPs = 10.0.0.0/33\n", 5, "AllowedIPs entry '10.0.0.0/33'")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nAllowedIPs = 10.0.0.0/8\n", 3, "[Peer] has no PublicKey")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nPublicKey = {a}\n[Peer]\nPublicKey = {a}\n", 6, "repeats the peer of line 3")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nPublicKey = {a}\nEndpoint = 10.0.0.1\n", 5, "Endpoint")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nPublicKey = {a}\nEndpoint = 1.2.3.4:1\nEndpoint = 1.2.3.4:2\n", 6, "already set on line 5")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Peer]\nPublicKey = {a}\nListenPort = 1\n", 5, "unknown key 'ListenPort' in [Peer]")]
    [InlineData("[Interfaces]\n", 1, "unknown section")]
    [InlineData("PrivateKey = {pk}\n", 1, "before any [Interface]")]
    [InlineData("[Interface]\nListenPort = 1\n", 0, "no PrivateKey")]
    [InlineData("[Interface]\nPrivateKey = {pk}\nMTU = 100\n", 3, "MTU")]
    [InlineData("[Interface]\nPrivateKey = {pk}\njust words\n", 3, "expected 'Key = Value'")]
    [InlineData("[Interface]\nPrivateKey = {pk}\nAddress = 10.0.0.1/40\n", 3, "Address '10.0.0.1/40'")]
    [InlineData("[Interface]\nPrivateKey = {pk}\n[Interface]\n", 3, "a second [Interface]")]
    public void ReportsProblemsWithFileAndLine(string template, int line, string fragment)
    {
        string text = template.Replace("{pk}", PrivateKey).Replace("{a}", PeerA);
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text, "bad.conf", NoDns));
        Assert.Equal(line, e.Line);
        Assert.Contains(fragment, e.Message);
        Assert.StartsWith(line > 0 ? $"bad.conf:{line}: " : "bad.conf: ", e.Message);
    }

    [Fact]
    public void UnresolvableHostIsAConfigError()
    {
        string text = $"[Interface]\nPrivateKey = {PrivateKey}\n[Peer]\nPublicKey = {PeerA}\nEndpoint = nowhere.invalid:1\n";
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text, "r.conf",
            _ => throw new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound)));
        Assert.Equal(5, e.Line);
        Assert.Contains("cannot resolve Endpoint host 'nowhere.invalid'", e.Message);
    }

    [Fact]
    public void APeerWithTheInterfacesOwnKeyIsAConfigError()
    {
        using var own = WireGuardKey.GeneratePrivate();
        using var ownPublic = own.DerivePublic();
        string text = $"[Interface]\nPrivateKey = {own.ToBase64()}\n\n[Peer]\nPublicKey = {ownPublic.ToBase64()}\n";
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Parse(text, "self.conf", NoDns));
        Assert.Equal(4, e.Line);
        Assert.Contains("own public key", e.Message);
    }

    [Fact]
    public void MissingFileIsAConfigError()
    {
        var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Load("/nonexistent/dir/wg9.conf"));
        Assert.Contains("cannot read", e.Message);
    }

    [Fact]
    public void AHugeFileIsRefusedBeforeItIsRead()
    {
        string path = Path.Combine(Path.GetTempPath(), $"gw-huge-{Environment.ProcessId}-{Guid.NewGuid():N}.conf");
        try
        {
            using (var f = File.Create(path))
            {
                f.SetLength(WgQuickConfig.MaxFileLength + 1L); // sparse: nothing is written
            }
            var e = Assert.Throws<ConfigException>(() => WgQuickConfig.Load(path));
            Assert.Contains("larger than 1 MiB", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
