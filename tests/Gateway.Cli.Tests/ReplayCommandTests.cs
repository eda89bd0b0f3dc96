using System.CommandLine;
using System.Text.Json;

namespace Gateway.Cli.Tests;

public sealed class ReplayCommandTests : IDisposable
{
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "gw-replay-cli-" + Guid.NewGuid().ToString("N"));

    public ReplayCommandTests() => Directory.CreateDirectory(_tmp);

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    internal static string Fixtures
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Gateway.sln"))) return Path.Combine(dir.FullName, "fixtures", "replay");
            }
            throw new InvalidOperationException("repository root not found");
        }
    }

    private static string Imix => Path.Combine(Fixtures, "imix.pcap");
    private static string Endpoints => Path.Combine(Fixtures, "endpoints.yaml");
    private static string Policy => Path.Combine(Fixtures, "policy.yaml");

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test");
        foreach (var command in CommandCatalog.All()) root.Subcommands.Add(command);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliRunner.Run(root, args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void Replay_fixture_policy_is_the_demo_policy()
    {
        Assert.Equal(Demo.ClusterDemo.Policy.ReplaceLineEndings("\n").TrimEnd(), File.ReadAllText(Policy).ReplaceLineEndings("\n").TrimEnd());
    }

    [Fact]
    public void Replay_json_parses_and_agrees_with_the_policy()
    {
        var (code, output, error) = Run("replay", Imix, "--endpoints", Endpoints, "--policy", Policy, "--loops", "2", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.Equal("overlay", root.GetProperty("mode").GetString());
        long packets = root.GetProperty("packets").GetInt64();
        Assert.Equal(2 * root.GetProperty("capture_packets").GetInt64(), packets);
        Assert.Equal(packets, root.GetProperty("round_tripped").GetInt64() + root.GetProperty("dropped").GetInt64());
        Assert.Equal(0, root.GetProperty("mismatched").GetInt64());
        Assert.True(root.GetProperty("drops").GetProperty("egress:POLICY_DENIED").GetInt64() > 0);
        Assert.True(root.GetProperty("drops").GetProperty("ingress:POLICY_DENIED").GetInt64() > 0);
        Assert.Equal(0, root.GetProperty("allocated_bytes").GetInt64());
        Assert.True(root.GetProperty("bare_seal_ns_per_packet").GetDouble() > 0);
        Assert.True(root.GetProperty("ratio_to_seal").GetDouble() > 0);
        Assert.True(root.GetProperty("stage_ns").GetProperty("seal").GetDouble() > 0);
    }

    [Fact]
    public void Replay_text_report_and_written_capture_audit_encrypted()
    {
        string pcap = Path.Combine(_tmp, "out.pcap"), keys = Path.Combine(_tmp, "keys.log");
        var (code, output, error) = Run("replay", Imix, "--mode", "plain", "--write", pcap, "--keylog", keys);
        Assert.True(code == 0, error);
        Assert.Contains("round-tripped byte for byte", output);
        Assert.Contains("bare ChaCha20-Poly1305", output);
        Assert.Contains("wrote ", output);
        var audit = Run("audit", pcap);
        Assert.Equal(0, audit.Code);
        Assert.Contains("ENCRYPTED", audit.Out);
    }

    [Theory]
    [InlineData("replay")]
    [InlineData("replay", "/nonexistent/capture.pcap")]
    [InlineData("replay", "{imix}", "--mode", "fast")]
    [InlineData("replay", "{imix}", "--mode", "overlay")]
    [InlineData("replay", "{imix}", "--mode", "plain", "--endpoints", "{endpoints}")]
    [InlineData("replay", "{imix}", "--policy", "{policy}")]
    [InlineData("replay", "{imix}", "--workers", "0")]
    [InlineData("replay", "{imix}", "--loops", "-1")]
    [InlineData("replay", "{imix}", "--workers", "2", "--write", "{tmp}/x.pcap")]
    [InlineData("replay", "{imix}", "--endpoints", "/nonexistent/endpoints.yaml")]
    [InlineData("replay", "{junk}")]
    [InlineData("replay", "{imix}", "--workers", "many")]
    [InlineData("replay", "{two-way}")]
    [InlineData("replay", "{imix}", "--keylog", "/nonexistent/dir/keys.log")]
    public void Replay_bad_input_is_one_line_and_exit_2(params string[] args)
    {
        string junk = Path.Combine(_tmp, "junk.pcap");
        File.WriteAllText(junk, "not a capture at all");
        var resolved = args.Select(a => a.Replace("{imix}", Imix).Replace("{endpoints}", Endpoints).Replace("{policy}", Policy)
            .Replace("{tmp}", _tmp).Replace("{junk}", junk)
            // Node-to-node WireGuard where both addresses start flows: cannot be split into two sides.
            .Replace("{two-way}", Path.Combine(Fixtures, "..", "captures", "synthetic-wireguard.pcap"))).ToArray();
        var (code, _, error) = Run(resolved);
        Assert.Equal(2, code);
        Assert.DoesNotContain("   at ", error);
        Assert.NotEmpty(error.Trim());
    }
}
