namespace Gateway.Samples.Tests;

/// <summary>One pack for every sample test.</summary>
[CollectionDefinition(Name)]
public sealed class PackedPackagesCollection : ICollectionFixture<PackedPackages>
{
    public const string Name = "packed packages";
}

/// <summary>The samples, built from the packed packages only, run and do what they say.</summary>
[Collection(PackedPackagesCollection.Name)]
public sealed class SampleTests(PackedPackages packages)
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public void TwoNodesInOneProcessForwardAllowedTrafficAndPrintFlowEvents()
    {
        string program = packages.Build("TwoNodes");
        var (code, output) = PackedPackages.Run("dotnet", [program], packages.Root, RunTimeout);
        Assert.True(code == 0, output);
        Assert.Contains("frontend -> backend:80 delivered to gwb", output);
        Assert.Contains("frontend -> db:5432 dropped", output);
        // Flow events: forwarded at A's egress and B's ingress, dropped by A's egress policy.
        Assert.Contains("\"verdict\":\"FORWARDED\"", output);
        Assert.Contains("\"node_name\":\"node-b\",\"traffic_direction\":\"INGRESS\"", output);
        Assert.Contains("\"drop_reason_desc\":\"POLICY_DENIED\"", output);
        Assert.Contains("\"encrypted\":true", output);
        Assert.Contains("gateway_policy_verdict_total{direction=\"EGRESS\",interface=\"gwa\",verdict=\"denied\"} 1", output);
    }

    [Fact]
    public void ThePolicyCheckerAnswersVerdictQueries()
    {
        string program = packages.Build("PolicyChecker");
        string fixtures = Path.Combine(packages.Root, "fixtures", "replay");
        var (code, output) = PackedPackages.Run("dotnet",
            [program, Path.Combine(fixtures, "endpoints.yaml"), Path.Combine(fixtures, "policy.yaml")], packages.Root, RunTimeout,
            input: "default/frontend-0 default/backend-0 80/TCP\n");
        Assert.True(code == 0, output);
        Assert.Contains("default/frontend-0 default/backend-0 80/TCP: ALLOWED", output);
        Assert.Contains("policy default/backend-ingress, rule spec.ingress[0]", output);

        (code, output) = PackedPackages.Run("dotnet",
            [program, Path.Combine(fixtures, "endpoints.yaml"), Path.Combine(fixtures, "policy.yaml")], packages.Root, RunTimeout,
            input: "default/frontend-0 default/db 5432/TCP\n10.11.1.20 10.11.2.10 80\n");
        Assert.Equal(1, code);
        Assert.Contains("default/frontend-0 default/db 5432/TCP: DENIED", output);
        Assert.Contains("Egress at source: DENIED by default deny", output);
        Assert.Contains("10.11.1.20 10.11.2.10 80: DENIED", output);
        Assert.Contains("Egress at source: ALLOWED (no egress policy selects default/intruder)", output);
    }
}

/// <summary>The hosted-node sample: a generic host runs the node as a hosted service and stops it on SIGTERM.</summary>
[Collection(PackedPackagesCollection.Name)]
public sealed class HostedNodeSampleTests(PackedPackages packages)
{
    [Fact]
    public async Task AGenericHostRunsTheNodeAndStopsItOnSigterm()
    {
        string program = packages.Build("HostedNode");
        string folder = Directory.CreateTempSubdirectory("gateway-hosted-").FullName;
        try
        {
            string config = Path.Combine(folder, "gwhost0.conf");
            // A fixed test key (not a secret): the private key of RFC 7748's first X25519 example.
            File.WriteAllText(config, "[Interface]\nPrivateKey = dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\nListenPort = 51900\n");
            var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in new[] { program, config, "--in-memory" })
            {
                start.ArgumentList.Add(arg);
            }
            using var process = System.Diagnostics.Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var output = new System.Text.StringBuilder();
            string? line;
            while ((line = process.StandardOutput.ReadLine()) is not null)
            {
                output.AppendLine(line);
                if (line.StartsWith("node gwhost0 up:", StringComparison.Ordinal))
                {
                    break;
                }
            }
            // (Only await stderr when failing: it ends when the process does, and the process runs until SIGTERM.
            // An interpolated "{await stderr}" in the message of a passing assertion kept this test from ever
            // sending SIGTERM: that was the "needs a second SIGTERM" hang.)
            if (line is null)
            {
                Assert.Fail($"the node never came up:\n{output}{await stderr}");
            }
            Assert.Contains("meters Gateway.Node", line);
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                kill.WaitForExit();
            }
            if (!process.WaitForExit(60_000))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("the host did not stop on SIGTERM");
            }
            output.Append(process.StandardOutput.ReadToEnd());
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}:\n{output}{await stderr}");
            Assert.Contains("node stopped", output.ToString());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
