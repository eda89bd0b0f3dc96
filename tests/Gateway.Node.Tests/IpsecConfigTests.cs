using Gateway.Crypto;
using Gateway.Node.Configuration;

namespace Gateway.Node.Tests;

/// <summary>The IPsec keys of [Overlay]: Encryption, IPsecKeyFile, IPsecKeyRotationDuration.</summary>
public class IpsecConfigTests
{
    private static string Config(string overlayExtra)
    {
        using var key = WireGuardKey.GeneratePrivate();
        return $"""
            [Interface]
            PrivateKey = {key.ToBase64()}
            ListenPort = 51871

            [Overlay]
            TunnelAddress = 10.200.0.1
            PodCIDRs = 10.1.0.0/24
            Endpoints = /etc/gateway/endpoints.yaml
            {overlayExtra}
            """;
    }

    private static WgQuickConfig Parse(string overlayExtra) => WgQuickConfig.Parse(Config(overlayExtra), "/etc/gateway/gw0.conf");

    [Fact]
    public void DefaultIsWireGuard()
    {
        using var c = Parse("");
        Assert.Equal(OverlayEncryption.WireGuard, c.Overlay!.Encryption);
        Assert.Null(c.Overlay.IpsecKeyFilePath);
        Assert.Equal(TimeSpan.FromMinutes(5), c.Overlay.IpsecKeyRotationDuration);
    }

    [Fact]
    public void ParsesIpsecKeys()
    {
        using var c = Parse("Encryption = ipsec\nIPsecKeyFile = keys\nIPsecKeyRotationDuration = 1m30s");
        Assert.Equal(OverlayEncryption.Ipsec, c.Overlay!.Encryption);
        Assert.Equal("/etc/gateway/keys", c.Overlay.IpsecKeyFilePath);
        Assert.Equal(TimeSpan.FromSeconds(90), c.Overlay.IpsecKeyRotationDuration);
    }

    [Theory]
    [InlineData("5m0s", 300)]
    [InlineData("90s", 90)]
    [InlineData("1h", 3600)]
    [InlineData("0", 0)]
    [InlineData("2.5m", 150)]
    [InlineData("45", 45)]
    [InlineData("500ms", 0.5)]
    public void DurationsLikeCiliumsFlag(string text, double seconds)
    {
        Assert.True(WgQuickConfig.TryParseDuration(text, out var d));
        Assert.Equal(TimeSpan.FromSeconds(seconds), d);
    }

    [Theory]
    [InlineData("Encryption = ipsec", "Encryption = ipsec needs IPsecKeyFile")]
    [InlineData("Encryption = aes", "Encryption 'aes' is not 'wireguard' or 'ipsec'")]
    [InlineData("IPsecKeyFile = keys", "IPsec keys need Encryption = ipsec")]
    [InlineData("Encryption = ipsec\nIPsecKeyFile = k\nIPsecKeyRotationDuration = 5 minutes", "is not a duration")]
    [InlineData("Encryption = ipsec\nIPsecKeyFile = k\nIPsecKeyRotationDuration = -5", "is not a duration")]
    public void MistakesAreOneLineErrors(string extra, string message)
    {
        var e = Assert.Throws<ConfigException>(() => Parse(extra));
        Assert.Contains(message, e.Message);
        Assert.StartsWith("/etc/gateway/gw0.conf:", e.Message);
    }
}
