using System.Text.Json;

namespace Gateway.Cli.Tests;

public class BandwidthCommandTests
{
    private static string Fixture => Path.Combine(PolicyCommandTests.Root, "fixtures", "bandwidth", "endpoints.yaml");

    [Fact]
    public void ListPrintsEachLimitAndWarnsAboutAMalformedOne()
    {
        var (code, output, err) = CliHarness.Run("bandwidth", "list", "--endpoints", Fixture);
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("ENDPOINT", lines[0]);
        Assert.Equal(5, lines.Length);
        Assert.Matches(@"^default/uploader +256 +EGRESS +10M +10\.11\.1\.10$", lines[1]);
        Assert.Matches(@"^default/uploader +256 +INGRESS +1\.573M +10\.11\.1\.10$", lines[2]);
        Assert.Matches(@"^default/web +257 +EGRESS +1G +10\.11\.1\.11$", lines[3]);
        Assert.Matches(@"^default/remote +258 +INGRESS +500k +10\.11\.2\.10$", lines[4]);
        Assert.Contains("endpoints.yaml: document 1: endpoints[3].annotations.kubernetes.io/egress-bandwidth (line 20): 'mbit' is not a quantity suffix", err);
        Assert.Contains("the annotation is ignored", err);
    }

    [Fact]
    public void PodCidrShowsWhatOneNodeEnforcesAsJson()
    {
        var (code, output, _) = CliHarness.Run("bandwidth", "list", "--endpoints", Fixture, "--pod-cidr", "10.11.2.0/24", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        var row = Assert.Single(doc.RootElement.EnumerateArray());
        Assert.Equal("default/remote", row.GetProperty("endpoint").GetString());
        Assert.Equal("INGRESS", row.GetProperty("direction").GetString());
        Assert.Equal(500_000, row.GetProperty("bits_per_second").GetInt64());
        Assert.Equal(258u, row.GetProperty("identity").GetUInt32());
    }

    [Theory]
    [InlineData("--pod-cidr", "10.11.2.0/33", "--pod-cidr: '10.11.2.0/33' is not a CIDR")]
    [InlineData("--endpoints", "/nonexistent/endpoints.yaml", "/nonexistent/endpoints.yaml")]
    public void BadInputIsOneLineAndExit2(string option, string value, string message)
    {
        var args = option == "--endpoints"
            ? new[] { "bandwidth", "list", "--endpoints", value }
            : new[] { "bandwidth", "list", "--endpoints", Fixture, option, value };
        var (code, _, err) = CliHarness.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(message, err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void StoreCommandsRefuseBadInputBeforeTouchingEtcd()
    {
        // An etcd that is not there: every case below must fail on its input first (exit 2).
        const string Nowhere = "http://127.0.0.1:9";
        string bad = Path.Combine(Path.GetTempPath(), $"bw-bad-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(bad, "endpoints:\n  - {name: a, ips: [10.0.0.1], annotations: {kubernetes.io/egress-bandwidth: 10 M}}\n");
        try
        {
            (string[] Args, string Message)[] cases =
            [
                (["bandwidth", "list"], "give --endpoints FILE, --kvstore URL, or both"),
                (["bandwidth", "list", "--kvstore", Nowhere, "--pod-cidr", "10.0.0.0/24"], "--pod-cidr needs --endpoints"),
                (["bandwidth", "apply", bad, "--kvstore", Nowhere], $"{bad}: document 1: endpoints[0].annotations.kubernetes.io/egress-bandwidth (line 2): ' M' is not a quantity suffix"),
                (["bandwidth", "apply", Fixture, "--kvstore", Nowhere], "'mbit' is not a quantity suffix"),
                (["bandwidth", "delete", "uploader", "--kvstore", Nowhere], "'uploader' is not NAMESPACE/NAME"),
                (["bandwidth", "delete", "default/uploader", "--kvstore", "ftp://x"], "--kvstore"),
            ];
            foreach (var (args, message) in cases)
            {
                var (code, _, err) = CliHarness.Run(args);
                Assert.True(code == 2, $"{string.Join(' ', args)}: exit {code}: {err}");
                Assert.Contains(message, err);
                Assert.Single(err.Trim().Split('\n'));
            }
            // A store that does not answer: one line, exit 1.
            var (unreachable, _, error) = CliHarness.Run("bandwidth", "delete", "default/uploader", "--kvstore", Nowhere);
            Assert.Equal(1, unreachable);
            Assert.Contains("unreachable", error);
        }
        finally
        {
            File.Delete(bad);
        }
    }
}
