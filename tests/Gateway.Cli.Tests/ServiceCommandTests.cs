using System.Text.Json;

namespace Gateway.Cli.Tests;

public class ServiceCommandTests
{
    private static string Fixture(string file) => Path.Combine(PolicyCommandTests.Root, "fixtures", "services", file);

    [Fact]
    public void ListPrintsFrontendsAndBackends()
    {
        var (code, output, err) = CliHarness.Run("service", "list", "--services", Fixture("services.yaml"), "--endpoints", Fixture("endpoints.yaml"));
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("default/backend  10.96.0.20:80/TCP -> 10.0.1.10:8080 (default/backend-1), 10.0.1.11:8080 (default/backend-2), 10.0.2.10:8080 (default/backend-3)", output);
        Assert.Contains("default/backend  [fd00:96::20]:80/TCP -> [fd00::1:10]:8080 (default/backend-1), [fd00::1:11]:8080 (default/backend-2)", output);
        Assert.Contains("default/dns  10.96.0.53:53/UDP -> 10.0.2.53:5353 (default/dns-1)  [sessionAffinity ClientIP, 600 s]", output);
        Assert.Contains("default/unready  10.96.0.99:80/TCP -> (no backends: new connections are dropped with NO_SERVICE)", output);
        Assert.Contains("3 services; lb4_services 3, lb6_services 1, lb4_backends 4, lb6_backends 2, Maglev table size 16381", output);
    }

    [Fact]
    public void ListJson()
    {
        var (code, output, _) = CliHarness.Run("service", "list", "--services", Fixture("services.yaml"), "--endpoints", Fixture("endpoints.yaml"), "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        var backend = doc.RootElement.GetProperty("services")[0];
        Assert.Equal("backend", backend.GetProperty("name").GetString());
        var fe = backend.GetProperty("frontends")[0];
        Assert.Equal("10.96.0.20", fe.GetProperty("address").GetString());
        Assert.Equal("http", fe.GetProperty("target_port").GetString());
        Assert.Equal(3, fe.GetProperty("backends").GetArrayLength());
        Assert.Equal("default/backend-1", fe.GetProperty("backends")[0].GetProperty("endpoint").GetString());
        Assert.Equal(3, doc.RootElement.GetProperty("maps").GetProperty("lb4_services").GetInt32());
        Assert.Equal("maglev", doc.RootElement.GetProperty("maps").GetProperty("algorithm").GetString());
    }

    [Fact]
    public void MalformedServiceIsOneLineAndExit2()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gw-svc-cli-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string bad = Path.Combine(dir, "bad.yaml");
            File.WriteAllText(bad, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80, protocol: SCTP}]\n");
            var (code, output, err) = CliHarness.Run("service", "list", "--services", bad, "--endpoints", Fixture("endpoints.yaml"));
            Assert.Equal(2, code);
            Assert.Equal("", output);
            Assert.Equal($"gateway: {bad}: document 1: spec.ports[0].protocol (line 6): SCTP services are not supported (TCP or UDP){Environment.NewLine}", err);
            (code, _, err) = CliHarness.Run("service", "list", "--services", Fixture("services.yaml"), "--endpoints", Fixture("endpoints.yaml"), "--algorithm", "roundrobin");
            Assert.Equal(2, code);
            Assert.Contains("--algorithm: 'roundrobin' is not maglev or random", err);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TraceThroughTheVipJudgesTheBackend()
    {
        var (code, output, err) = CliHarness.Run("policy", "trace", "--policy", Fixture("backend-policy.yaml"), "--endpoints", Fixture("endpoints.yaml"),
            "--services", Fixture("services.yaml"), "--from", "frontend", "--to", "10.96.0.20", "--dport", "80/TCP");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Matches(@"Service: default/backend 10\.96\.0\.20:80/TCP -> backend default/backend-\d 10\.0\.\d\.\d+:8080 \(Maglev M=16381 over 3 backends, client 10\.0\.0\.10:40000\)", output);
        Assert.Contains("Port: 8080/TCP", output);
        Assert.Contains("Ingress at destination: ALLOWED by", output);
        Assert.EndsWith("Final verdict: ALLOWED" + Environment.NewLine, output);

        (code, output, _) = CliHarness.Run("policy", "trace", "--policy", Fixture("backend-policy.yaml"), "--endpoints", Fixture("endpoints.yaml"),
            "--services", Fixture("services.yaml"), "--from", "intruder", "--to", "10.96.0.20", "--dport", "80/TCP", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal("DENIED", doc.RootElement.GetProperty("final_verdict").GetString());
        Assert.Equal("TRANSLATED", doc.RootElement.GetProperty("service").GetProperty("result").GetString());
        Assert.StartsWith("default/backend-", doc.RootElement.GetProperty("service").GetProperty("backend").GetProperty("endpoint").GetString());
        Assert.Equal(8080, doc.RootElement.GetProperty("port").GetInt32());
    }

    [Fact]
    public void TraceToAServiceWithoutBackendsIsNoService()
    {
        var (code, output, _) = CliHarness.Run("policy", "trace", "--policy", Fixture("backend-policy.yaml"), "--endpoints", Fixture("endpoints.yaml"),
            "--services", Fixture("services.yaml"), "--from", "frontend", "--to", "10.96.0.99", "--dport", "80/TCP");
        Assert.Equal(0, code);
        Assert.Contains("Service: default/unready 10.96.0.99:80/TCP has no backends: DROPPED (NO_SERVICE, Cilium drop reason 158)", output);
        Assert.EndsWith("Final verdict: DROPPED (NO_SERVICE)" + Environment.NewLine, output);
        var (code2, _, err) = CliHarness.Run("policy", "trace", "--policy", Fixture("backend-policy.yaml"), "--endpoints", Fixture("endpoints.yaml"),
            "--services", Fixture("services.yaml"), "--from", "frontend", "--to", "backend-1", "--dport", "80/TCP");
        Assert.Equal(2, code2);
        Assert.Contains("--to: with --services, give the service's clusterIP", err);
    }
}
