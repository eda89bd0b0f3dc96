using System.CommandLine;
using System.Text.Json;

namespace Gateway.Cli.Tests;

public sealed class AuditCommandTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "gw-audit-cli-" + Guid.NewGuid().ToString("N"));

    public AuditCommandTests() => Directory.CreateDirectory(_tmp);

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static string Captures
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
                {
                    return Path.Combine(dir.FullName, "fixtures", "captures");
                }
            }
            throw new InvalidOperationException("repository root not found");
        }
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(args);

    private static string Fixture(string name) => Path.Combine(Captures, name);

    [Fact]
    public void RealWireGuardCaptureIsEncryptedExitZero()
    {
        var (code, output, err) = Run("audit", Fixture("wireguard-go-underlay.pcap"));
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("Verdict: ENCRYPTED", output);
        Assert.Contains("192.168.77.1:51820 <-> 192.168.77.2:51820: initiations 1, responses 1", output);
        Assert.DoesNotContain("Hint:", output);
    }

    [Fact]
    public void RealVxlanDnsCaptureIsALeakExitOneWithOffendersAndHint()
    {
        var (code, output, _) = Run("audit", Fixture("linux-vxlan-dns.pcap"));
        Assert.Equal(1, code);
        Assert.Contains("Verdict: LEAK", output);
        Assert.Contains("#3 2026-11-28T13:12:10.214171Z VXLAN carrying plaintext cluster traffic: outer 192.168.77.1:60797 -> 192.168.77.2:8472 UDP; inner 10.244.1.10:60645 -> 10.244.1.20:53 UDP; VNI 42", output);
        Assert.Contains("Hint:", output);
        Assert.Contains("underlay interface", output);
    }

    [Fact]
    public void JsonIsOneDocumentWithTheSameResult()
    {
        var (code, output, _) = Run("audit", Fixture("synthetic-vxlan-plaintext.pcap"), "--json");
        Assert.Equal(1, code);
        using JsonDocument doc = JsonDocument.Parse(output);
        JsonElement root = doc.RootElement;
        Assert.Equal("LEAK", root.GetProperty("verdict").GetString());
        Assert.Equal(4, root.GetProperty("counts").GetProperty("plaintextOverlay").GetInt32());
        Assert.Equal(3, root.GetProperty("leakPackets").GetInt32());
        JsonElement first = root.GetProperty("offenders")[0];
        Assert.Equal(2, first.GetProperty("number").GetInt32());
        Assert.Equal(42, first.GetProperty("vni").GetInt32());
        Assert.Equal("10.0.2.7", first.GetProperty("inner").GetProperty("destination").GetString());
        Assert.Equal(53, first.GetProperty("inner").GetProperty("destinationPort").GetInt32());
        Assert.True(root.GetProperty("tunnelInterfaceHint").GetBoolean());
    }

    [Fact]
    public void JsonForEncryptedCaptureListsWireGuardFlows()
    {
        var (code, output, _) = Run("audit", "--json", Fixture("synthetic-raw-ip-wireguard.pcap"));
        Assert.Equal(0, code);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal("ENCRYPTED", doc.RootElement.GetProperty("verdict").GetString());
        Assert.Equal("Raw", doc.RootElement.GetProperty("linkType").GetString());
        JsonElement flow = doc.RootElement.GetProperty("wireguardFlows")[0];
        Assert.Equal("[fd00:1::1]:51820", flow.GetProperty("endpointA").GetString());
        Assert.Equal(3, flow.GetProperty("transport").GetInt32());
        Assert.Equal(0, doc.RootElement.GetProperty("offenders").GetArrayLength());
    }

    [Fact]
    public void ClusterCidrAndTunnelPortOptionsRepeat()
    {
        Assert.Equal(0, Run("audit", Fixture("synthetic-vxlan-custom-port.pcap")).Code);
        var (code, output, _) = Run("audit", Fixture("synthetic-vxlan-custom-port.pcap"), "--tunnel-port", "9999", "--tunnel-port", "4790");
        Assert.Equal(1, code);
        Assert.Contains("VXLAN ports: 4789, 4790, 8472, 9999", output);
        // Only fd00::/8 is cluster space: the IPv4 pod traffic is no longer a leak.
        var narrowed = Run("audit", Fixture("synthetic-plain-tcp-udp.pcap"), "--cluster-cidr", "fd00::/8", "--cluster-cidr", "172.31.0.0/16");
        Assert.Equal(1, narrowed.Code);
        Assert.Contains("LEAK - 1 packet carried cluster traffic in plaintext", narrowed.Out);
        Assert.Contains("Cluster ranges: fd00::/8, 172.31.0.0/16", narrowed.Out);
    }

    [Theory]
    [InlineData("--cluster-cidr", "10.0.0.0/33")]
    [InlineData("--cluster-cidr", "not-a-cidr")]
    [InlineData("--tunnel-port", "0")]
    [InlineData("--tunnel-port", "70000")]
    [InlineData("--tunnel-port", "abc")]
    [InlineData("--bogus", "1")]
    public void BadArgumentsExitTwoWithOneLine(string option, string value)
    {
        var (code, output, err) = Run("audit", Fixture("synthetic-wireguard.pcap"), option, value);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.DoesNotContain("   at ", err);
        Assert.StartsWith("gateway: ", err);
    }

    [Fact]
    public void MissingOrUnreadableFileExitsTwoWithOneLine()
    {
        var missing = Run("audit", Path.Combine(_tmp, "missing.pcap"));
        Assert.Equal(2, missing.Code);
        Assert.Single(missing.Err.TrimEnd().Split('\n'));
        Assert.Contains("does not exist", missing.Err);

        string garbage = Path.Combine(_tmp, "garbage.pcap");
        File.WriteAllBytes(garbage, new byte[100]);
        var bad = Run("audit", garbage);
        Assert.Equal(2, bad.Code);
        Assert.Single(bad.Err.TrimEnd().Split('\n'));
        Assert.Contains("cannot read capture file", bad.Err);

        Assert.Equal(2, Run("audit").Code);   // CAPTURE is required
    }
}
