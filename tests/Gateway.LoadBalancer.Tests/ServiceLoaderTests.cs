using Gateway.Datapath;

namespace Gateway.LoadBalancer.Tests;

public class ServiceLoaderTests
{
    [Fact]
    public void ParsesClusterIpServices()
    {
        var services = ServiceLoader.Parse(Fixtures.Services, "services.yaml");
        Assert.Equal(3, services.Count);
        var web = services[0];
        Assert.Equal("default/web", web.QualifiedName);
        Assert.Equal([IpAddress.Parse("10.96.0.10"), IpAddress.Parse("fd00:96::10")], web.ClusterIps);
        Assert.Equal(2, web.Ports.Count);
        Assert.Equal(new ServicePortDefinition("http", 80, IpProtocol.Tcp, 0, "http"), web.Ports[0]);
        Assert.Equal(new ServicePortDefinition("raw", 81, IpProtocol.Tcp, 9000, null), web.Ports[1]);
        Assert.Equal("web", web.Selector!["app"]);
        Assert.False(web.ClientIpAffinity);
        Assert.Equal(1, web.Line);

        var dns = services[1];
        Assert.Equal("default/dns", dns.QualifiedName);
        Assert.True(dns.ClientIpAffinity);
        Assert.Equal(TimeSpan.FromSeconds(60), dns.AffinityTimeout);
        Assert.Equal(IpProtocol.Udp, dns.Ports[0].Protocol);
    }

    [Fact]
    public void AffinityTimeoutDefaultsToKubernetes10800Seconds()
    {
        var s = ServiceLoader.Parse("""
            apiVersion: v1
            kind: Service
            metadata: {name: a}
            spec: {clusterIP: 10.96.0.1, ports: [{port: 80}], sessionAffinity: ClientIP}
            """, "a.yaml")[0];
        Assert.True(s.ClientIpAffinity);
        Assert.Equal(TimeSpan.FromSeconds(10800), s.AffinityTimeout);
        Assert.Equal(80, s.Ports[0].TargetPort);   // targetPort defaults to port
        Assert.Null(s.Selector);
    }

    [Fact]
    public void HeadlessServiceHasNoVirtualIp()
    {
        var s = ServiceLoader.Parse("""
            apiVersion: v1
            kind: Service
            metadata: {name: h}
            spec: {clusterIP: None, selector: {app: x}, ports: [{port: 80}]}
            """, "h.yaml")[0];
        Assert.Empty(s.ClusterIps);
    }

    [Theory]
    [InlineData("spec: {type: NodePort, clusterIP: 10.96.0.1, ports: [{port: 80}]}", 4, "type 'NodePort' is not supported")]
    [InlineData("spec: {ports: [{port: 80}]}", 4, "clusterIP is required")]
    [InlineData("spec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}", 4, "'10.96.0.300' is not an IP address")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 70000}]}", 4, "70000 is out of range 1..65535")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80, protocol: SCTP}]}", 4, "SCTP services are not supported")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80, protocol: tcp}]}", 4, "protocol 'tcp' is not TCP or UDP")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80, targetPort: Http_Port}]}", 4, "targetPort 'Http_Port' is neither")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80}, {port: 81}]}", 4, "must name each of them")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: []}", 4, "at least one port")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80}], sessionAffinity: Cookie}", 4, "sessionAffinity 'Cookie' is not None or ClientIP")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80}], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}", 4, "0 is out of range 1..86400")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80}], externalIPs: [1.2.3.4]}", 4, "externalIPs are not supported")]
    [InlineData("spec: {clusterIP: 10.96.0.1, clusterIPs: [10.96.0.2], ports: [{port: 80}]}", 4, "must equal clusterIP")]
    [InlineData("spec: {clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1, 10.96.0.2], ports: [{port: 80}]}", 4, "two IPv4 addresses")]
    [InlineData("spec: {clusterIP: 10.96.0.1, ports: [{port: 80}], prots: []}", 4, "unknown field 'prots'")]
    public void MalformedServicesNameFileLineAndReason(string spec, int line, string reason)
    {
        var e = Fixtures.LoadError("apiVersion: v1\nkind: Service\nmetadata: {name: bad}\n" + spec);
        Assert.Contains("bad.yaml", e.Message);
        Assert.Contains($"(line {line})", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.Equal("bad.yaml", e.File);
        Assert.Equal(line, e.Line);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void WrongKindAndSyntaxErrorsAreReported()
    {
        var e = Fixtures.LoadError("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n");
        Assert.Contains("unsupported kind 'Pod'", e.Message);
        Assert.Equal(2, e.Line);
        e = Fixtures.LoadError("apiVersion: v1\nkind: Service\nmetadata: {name: x\n");
        Assert.Contains("YAML syntax error", e.Message);
    }

    [Fact]
    public void DuplicateNamesAndFrontendsAreRejectedWithTheSecondLocation()
    {
        const string one = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n";
        var e = Fixtures.LoadError(one + "---\n" + one);
        Assert.Contains("already defined", e.Message);
        Assert.Equal(6, e.Line);
        e = Fixtures.LoadError(one + "---\n" + one.Replace("name: a", "name: b"));
        Assert.Contains("10.96.0.1:80/TCP of default/b already belongs to default/a", e.Message);
    }

    [Fact]
    public void LoadsAFolderInNameOrderAndReportsTheFile()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"gw-svc-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            File.WriteAllText(Path.Combine(dir, "b.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n");
            File.WriteAllText(Path.Combine(dir, "a.yml"), "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n");
            File.WriteAllText(Path.Combine(dir, "notes.txt"), "not yaml");
            var all = ServiceLoader.Load(dir);
            Assert.Equal(["default/a", "default/b"], all.Select(s => s.QualifiedName));
            File.WriteAllText(Path.Combine(dir, "c.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n");
            var e = Assert.Throws<ServiceLoadException>(() => ServiceLoader.Load(dir));
            Assert.Contains("c.yaml", e.Message);
            Assert.Throws<ServiceLoadException>(() => ServiceLoader.Load(Path.Combine(dir, "missing")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("http", true)]
    [InlineData("h2c-8", true)]
    [InlineData("8080", false)]
    [InlineData("-http", false)]
    [InlineData("a--b", false)]
    [InlineData("averyveryverylongname", false)]
    public void PortNamesFollowKubernetesRules(string name, bool ok) => Assert.Equal(ok, ServiceLoader.IsPortName(name));
}
