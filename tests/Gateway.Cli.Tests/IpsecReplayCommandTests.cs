using System.Diagnostics;
using System.Text.Json;

namespace Gateway.Cli.Tests;

/// <summary>`gateway replay --encryption ipsec`: the report, the ESP capture and the esp_sa file
/// that lets tshark decrypt it, and the audit of that capture.</summary>
public sealed class IpsecReplayCommandTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), $"gw-replay-ipsec-cli-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public IpsecReplayCommandTests() => Directory.CreateDirectory(_tmp);

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static string Imix => Path.Combine(ReplayCommandTests.Fixtures, "imix.pcap");
    private static string Endpoints => Path.Combine(ReplayCommandTests.Fixtures, "endpoints.yaml");
    private static string Policy => Path.Combine(ReplayCommandTests.Fixtures, "policy.yaml");

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(args);

    [Fact]
    public void Ipsec_replay_json_reports_encryption_and_aes_gcm_yardstick()
    {
        var (code, output, error) = Run("replay", Imix, "--endpoints", Endpoints, "--policy", Policy, "--encryption", "ipsec", "--loops", "2", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal("ipsec", root.GetProperty("encryption").GetString());
        Assert.Equal(root.GetProperty("packets").GetInt64(), root.GetProperty("round_tripped").GetInt64() + root.GetProperty("dropped").GetInt64());
        Assert.Equal(0, root.GetProperty("mismatched").GetInt64());
        Assert.True(root.GetProperty("bare_seal_ns_per_packet").GetDouble() > 0);
    }

    [SkippableFact]
    public void Tshark_decrypts_the_written_capture_with_the_esp_sa_file_and_audit_says_encrypted()
    {
        Skip.IfNot(File.Exists("/usr/bin/tshark"), "tshark not installed (scripts/setup.sh installs it)");
        string pcap = Path.Combine(_tmp, "underlay.pcap");
        var (code, output, error) = Run("replay", Imix, "--endpoints", Endpoints, "--policy", Policy, "--encryption", "ipsec", "--write", pcap);
        Assert.True(code == 0, error);
        Assert.Contains("bare AES-GCM (rfc4106)", output);
        string espSa = pcap + ".esp_sa";
        Assert.Contains($"wrote both directions' ESP SA keys to {espSa}", output);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(espSa));

        var audit = Run("audit", pcap);
        Assert.Equal(0, audit.Code);
        Assert.Contains("ENCRYPTED", audit.Out);

        // tshark reads the table from its profile: $XDG_CONFIG_HOME/wireshark/esp_sa.
        string home = Path.Combine(_tmp, "xdg");
        Directory.CreateDirectory(Path.Combine(home, "wireshark"));
        File.Copy(espSa, Path.Combine(home, "wireshark", "esp_sa"));
        var psi = new ProcessStartInfo("/usr/bin/tshark") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE", "-d", "udp.port==8472,vxlan", "-T", "fields", "-e", "esp.spi", "-e", "vxlan.vni" })
            psi.ArgumentList.Add(a);
        psi.Environment["XDG_CONFIG_HOME"] = home;
        psi.Environment["HOME"] = home;
        using var p = Process.Start(psi)!;
        string fields = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(60_000));
        string[] lines = fields.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        // Every ESP frame decrypts to VXLAN whose VNI is an allocated identity (>= 256).
        Assert.All(lines, l =>
        {
            string[] f = l.Split('\t');
            Assert.Equal("0x00000003", f[0]);
            Assert.True(uint.Parse(f[1]) >= 256, l);
        });
    }

    [Theory]
    [InlineData("--encryption", "aes")]
    [InlineData("--encryption", "ipsec", "--keylog", "{tmp}/k.log")]
    [InlineData("--esp-sa", "{tmp}/sa")]
    [InlineData("--encryption", "ipsec", "--esp-sa", "/nonexistent/dir/sa")]
    [InlineData("--encryption", "ipsec", "--workers", "2", "--esp-sa", "{tmp}/sa")]
    public void Bad_ipsec_options_are_one_line_and_exit_2(params string[] extra)
    {
        var (code, _, error) = Run(["replay", Imix, "--mode", "plain", .. extra.Select(a => a.Replace("{tmp}", _tmp))]);
        Assert.Equal(2, code);
        Assert.DoesNotContain("   at ", error);
        Assert.Single(error.Trim().Split('\n'));
    }
}
