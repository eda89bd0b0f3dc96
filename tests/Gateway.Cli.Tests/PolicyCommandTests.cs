using System.CommandLine;
using System.Text.Json;

namespace Gateway.Cli.Tests;

public class PolicyCommandTests
{
    internal static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
            {
                dir = dir.Parent;
            }
            return dir!.FullName;
        }
    }

    private static string Docs(string file) => Path.Combine(Root, "fixtures", "policies", "cilium-docs", file);
    private static string DocsEndpoints => Path.Combine(Root, "fixtures", "policies", "docs-endpoints.yaml");

    private static (int Code, string Out, string Err) Run(params string[] args) => CliHarness.Run(args);

    [Fact]
    public void TraceAllowedPrintsRuleAndFinalVerdict()
    {
        var (code, output, err) = Run("policy", "trace", "--policy", Docs("l3-l4-combined.yaml"), "--endpoints", DocsEndpoints,
            "--from", "frontend", "--to", "backend", "--dport", "80/TCP");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("Egress at source: ALLOWED (no egress policy selects default/frontend)", output);
        Assert.Contains("Ingress at destination: ALLOWED by", output);
        Assert.Contains("policy default/l4-rule, rule spec.ingress[0]", output);
        Assert.EndsWith("Final verdict: ALLOWED" + Environment.NewLine, output);
    }

    [Fact]
    public void TraceDeniedStillExitsZero()
    {
        var (code, output, _) = Run("policy", "trace", "--policy", Docs("l3-l4-combined.yaml"), "--endpoints", DocsEndpoints,
            "--from", "role=frontend", "--to", "10.0.0.2", "--dport", "8080/TCP");
        Assert.Equal(0, code);
        Assert.Contains("Ingress at destination: DENIED by default deny", output);
        Assert.EndsWith("Final verdict: DENIED" + Environment.NewLine, output);
    }

    [Fact]
    public void TraceJson()
    {
        var (code, output, _) = Run("policy", "trace", "--policy", Docs("l3-egress-deny.yaml"), "--endpoints", DocsEndpoints,
            "--from", "frontend", "--to", "backend", "--dport", "80/TCP", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal("DENIED", json.GetProperty("final_verdict").GetString());
        Assert.Equal("deny rule", json.GetProperty("egress").GetProperty("reason").GetString());
        Assert.Equal("spec.egressDeny[0]", json.GetProperty("egress").GetProperty("rule").GetProperty("path").GetString());
        Assert.Equal("deny-egress-example", json.GetProperty("egress").GetProperty("rule").GetProperty("policy").GetString());
    }

    [Theory]
    [InlineData("--from", "nobody", "not an endpoint name")]
    [InlineData("--dport", "80/XYZ", "--dport")]
    [InlineData("--dport", "99999/TCP", "--dport")]
    public void TraceBadInputIsOneLineExitTwo(string option, string value, string expected)
    {
        var args = new List<string> { "policy", "trace", "--policy", Docs("l3-simple-ingress.yaml"), "--endpoints", DocsEndpoints,
            "--from", "frontend", "--to", "backend", "--dport", "80/TCP" };
        args[args.IndexOf(option) + 1] = value;
        var (code, output, err) = Run([.. args]);
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains(expected, err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void CheckInvalidFileNamesFileDocumentAndField()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gw-cli-policy-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string bad = Path.Combine(dir, "bad.yaml");
            File.WriteAllText(bad, """
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: ok}
                spec: {endpointSelector: {}}
                ---
                apiVersion: cilium.io/v2
                kind: CiliumNetworkPolicy
                metadata: {name: bad}
                spec:
                  endpointSelector: {}
                  egress:
                  - toPorts: [{ports: [{port: "80", protocol: QUIC}]}]
                """);
            var (code, output, err) = Run("policy", "check", bad);
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Equal($"gateway: {bad}: document 2: spec.egress[0].toPorts[0].ports[0].protocol (line 12): protocol 'QUIC' is not TCP, UDP, SCTP or ANY (ICMP uses icmps)",
                err.TrimEnd());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void CheckFolderPrintsPerEndpointMapSizes()
    {
        var (code, output, err) = Run("policy", "check", Path.Combine(Root, "fixtures", "policies", "cilium-docs"), "--endpoints", DocsEndpoints);
        Assert.True(code == 0, err);
        Assert.StartsWith("OK: ", output);
        Assert.Contains("default/backend (identity ", output);
        Assert.Contains("(default deny)", output);
        Assert.Contains("kube-system/kube-dns", output);
    }

    [Fact]
    public void MissingPolicyPathIsExitTwo()
    {
        var (code, _, err) = Run("policy", "check", "/nonexistent/policies.yaml");
        Assert.Equal(2, code);
        Assert.Contains("/nonexistent/policies.yaml", err);
    }
}
