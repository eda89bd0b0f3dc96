using Gateway.Datapath;

namespace Gateway.LoadBalancer.Tests;

public class ServiceTableTests
{
    private static List<string> BackendsOf(ServiceTable t, string vip, ushort port, byte proto = IpProtocol.Tcp)
    {
        ref readonly var fe = ref t.TryFindFrontend(IpAddress.Parse(vip), port, proto, out bool found);
        Assert.True(found);
        var list = new List<string>();
        for (int i = 0; i < fe.BackendCount; i++)
        {
            var b = t.BackendOf(in fe, i);
            list.Add($"{b.Name} {b.EndpointName}");
        }
        return list;
    }

    [Fact]
    public void BackendsAreSelectorMatchesInTheNamespaceWithNamedPortsResolvedPerEndpoint()
    {
        var t = Fixtures.Compile();
        // web-3 declares no "http" port, web-other is in prod: both left out.
        Assert.Equal(["10.0.1.1:8080 default/web-1", "10.0.1.2:8081 default/web-2"], BackendsOf(t, "10.96.0.10", 80));
        Assert.Equal(["10.0.1.1:9000 default/web-1", "10.0.1.2:9000 default/web-2", "10.0.1.3:9000 default/web-3"], BackendsOf(t, "10.96.0.10", 81));
        // The IPv6 VIP gets the IPv6 addresses of the same endpoints.
        Assert.Equal(["[fd00::1:1]:8080 default/web-1", "[fd00::1:2]:8081 default/web-2"], BackendsOf(t, "fd00:96::10", 80));
        Assert.Equal(["10.0.3.1:5353 default/dns-1"], BackendsOf(t, "10.96.0.53", 53, IpProtocol.Udp));
        Assert.Empty(BackendsOf(t, "10.96.0.99", 80));
        t.TryFindFrontend(IpAddress.Parse("10.96.0.10"), 80, IpProtocol.Udp, out bool udp);
        Assert.False(udp);
        Assert.Equal(6, t.FrontendCount);
        // Reverse NAT: every frontend's index names its VIP:port.
        for (int f = 0; f < t.FrontendCount; f++)
        {
            ref readonly var fe = ref t.Frontend(f);
            Assert.Equal(new ReverseNatEntry(fe.Address, fe.Port), t.ReverseNat[fe.RevNatIndex]);
        }
    }

    [Fact]
    public void SelectTranslatesServicesOnlyAndReportsEmptyOnes()
    {
        var lb = new ServiceLoadBalancer(Fixtures.Compile());
        Assert.Equal(ServiceLookup.NotService, lb.Select(Fixtures.Flow("10.0.0.5", 40000, "10.0.1.1", 8080), 0, out _));
        Assert.Equal(ServiceLookup.NotService, lb.Select(Fixtures.Flow("10.0.0.5", 40000, "10.96.0.10", 80, IpProtocol.Udp), 0, out _));
        Assert.Equal(ServiceLookup.NoBackends, lb.Select(Fixtures.Flow("10.0.0.5", 40000, "10.96.0.99", 80), 0, out var empty));
        Assert.Equal(IpAddress.Parse("10.96.0.99"), empty.ServiceAddress);
        Assert.Equal(ServiceLookup.Selected, lb.Select(Fixtures.Flow("10.0.0.5", 40000, "10.96.0.10", 80), 0, out var sel));
        Assert.Contains(sel.BackendAddress, new[] { IpAddress.Parse("10.0.1.1"), IpAddress.Parse("10.0.1.2") });
        Assert.Equal(sel.BackendAddress == IpAddress.Parse("10.0.1.1") ? 8080 : 8081, sel.BackendPort);
        Assert.Equal(IpAddress.Parse("10.96.0.10"), sel.ServiceAddress);
        Assert.Equal(80, sel.ServicePort);
        Assert.NotEqual(0u, sel.BackendIdentity);
        Assert.Equal(1, lb.SelectionCounts().Single(c => c.Service == "default/web").Selections);
    }

    [Fact]
    public void MaglevPicksTheSameBackendOnEveryNodeAndSpreadsFlows()
    {
        // Two nodes compile the same services independently (endpoints listed in another order).
        const string reordered = """
            endpoints:
              - {name: web-3, namespace: default, ips: [10.0.1.3], labels: {app: web, tier: fe}}
              - {name: web-2, namespace: default, ips: [10.0.1.2, "fd00::1:2"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8081}]}
              - {name: web-1, namespace: default, ips: [10.0.1.1, "fd00::1:1"], labels: {app: web, tier: fe}, ports: [{name: http, port: 8080}]}
            """;
        var a = new ServiceLoadBalancer(Fixtures.Compile());
        var b = new ServiceLoadBalancer(Fixtures.Compile(endpoints: reordered));
        var counts = new Dictionary<IpAddress, int>();
        for (int i = 0; i < 3000; i++)
        {
            var flow = Fixtures.Flow($"10.0.{i % 7}.{1 + i % 200}", (ushort)(1024 + i), "10.96.0.10", 81);
            Assert.Equal(ServiceLookup.Selected, a.Select(flow, 0, out var sa));
            Assert.Equal(ServiceLookup.Selected, b.Select(flow, 0, out var sb));
            Assert.Equal(sa.BackendAddress, sb.BackendAddress);
            // The same flow again picks the same backend.
            a.Select(flow, 0, out var again);
            Assert.Equal(sa.BackendAddress, again.BackendAddress);
            counts[sa.BackendAddress] = counts.GetValueOrDefault(sa.BackendAddress) + 1;
        }
        Assert.Equal(3, counts.Count);
        Assert.All(counts.Values, c => Assert.InRange(c, 1000 * 0.8, 1000 * 1.2));
        // IPv6 flows hash too.
        Assert.Equal(ServiceLookup.Selected, a.Select(Fixtures.Flow("fd00::5", 1, "fd00:96::10", 80), 0, out var v6));
        Assert.True(v6.BackendAddress.IsV6);
    }

    [Fact]
    public void RandomSpreadsFlows()
    {
        var lb = new ServiceLoadBalancer(Fixtures.Compile(options: new ServiceTableOptions { Algorithm = BackendAlgorithm.Random }));
        var counts = new Dictionary<IpAddress, int>();
        var flow = Fixtures.Flow("10.0.0.5", 40000, "10.96.0.10", 81);
        for (int i = 0; i < 3000; i++)
        {
            lb.Select(flow, 0, out var s);
            counts[s.BackendAddress] = counts.GetValueOrDefault(s.BackendAddress) + 1;
        }
        Assert.Equal(3, counts.Count);
        Assert.All(counts.Values, c => Assert.InRange(c, 800, 1200));
    }

    [Fact]
    public void ClientIpAffinitySticksUntilTheTimeoutAndSurvivesReloads()
    {
        const string svc = """
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec:
              clusterIP: 10.96.0.10
              selector: {app: web}
              ports: [{port: 81, targetPort: 9000}]
              sessionAffinity: ClientIP
              sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}
            """;
        var lb = new ServiceLoadBalancer(Fixtures.Compile(svc));
        const long s = 1_000_000_000L;
        Assert.Equal(ServiceLookup.Selected, lb.Select(Fixtures.Flow("10.0.0.5", 1000, "10.96.0.10", 81), 0, out var first));
        Assert.False(first.FromAffinity);
        // Other source ports (which Maglev alone would spread) stick to the first backend.
        for (int i = 1; i <= 50; i++)
        {
            lb.Select(Fixtures.Flow("10.0.0.5", (ushort)(1000 + i), "10.96.0.10", 81), i * s / 10, out var next);
            Assert.True(next.FromAffinity);
            Assert.Equal(first.BackendAddress, next.BackendAddress);
        }
        // A reload with the same backend keeps the affinity.
        lb.Replace(Fixtures.Compile(svc));
        lb.Select(Fixtures.Flow("10.0.0.5", 2000, "10.96.0.10", 81), 6 * s, out var afterReload);
        Assert.True(afterReload.FromAffinity);
        // Idle past the timeout (30 s after the last use at 6 s): a fresh choice.
        lb.Select(Fixtures.Flow("10.0.0.5", 2001, "10.96.0.10", 81), 37 * s, out var expired);
        Assert.False(expired.FromAffinity);
        // The chosen backend is removed: affinity falls back to a live one.
        string without = Fixtures.Endpoints.Replace($"ips: [{expired.BackendAddress}", "ips: [10.9.9.9");
        lb.Replace(Fixtures.Compile(svc, without));
        lb.Select(Fixtures.Flow("10.0.0.5", 2002, "10.96.0.10", 81), 38 * s, out var moved);
        Assert.False(moved.FromAffinity);
        Assert.NotEqual(expired.BackendAddress, moved.BackendAddress);
    }

    [Fact]
    public void RemovedBackendGetsNoNewFlowsAndOthersKeepTheirs()
    {
        var before = new ServiceLoadBalancer(Fixtures.Compile());
        string without = Fixtures.Endpoints.Replace("ips: [10.0.1.3]", "ips: [10.0.9.3]");
        var after = new ServiceLoadBalancer(Fixtures.Compile(endpoints: without.Replace("{app: web, tier: fe}}", "{app: gone}}")));
        int kept = 0, total = 0;
        for (int i = 0; i < 2000; i++)
        {
            var flow = Fixtures.Flow("10.0.0.5", (ushort)(1024 + i), "10.96.0.10", 81);
            before.Select(flow, 0, out var b);
            after.Select(flow, 0, out var a);
            Assert.NotEqual(IpAddress.Parse("10.0.1.3"), a.BackendAddress);
            if (b.BackendAddress != IpAddress.Parse("10.0.1.3"))
            {
                total++;
                kept += a.BackendAddress == b.BackendAddress ? 1 : 0;
            }
        }
        Assert.True(kept >= total * 0.97, $"{kept} of {total} flows of surviving backends kept their backend");
    }

    [Fact]
    public void CompilesAThousandServicesWithAHundredBackendsEach()
    {
        // The benchmark's shape at a tenth of its size (10,000 services take about a minute to build here).
        var (lb, flows) = Workload.Build(services: 1_000, backendsPerService: 100);
        Assert.Equal(1_000 * MaglevTable.DefaultSize, lb.Table.MaglevSlab.Length);
        Assert.Equal(1_000, lb.Table.FrontendCount);
        Assert.Equal(100_000, lb.Table.Backends.Length);
        foreach (var f in flows.AsSpan(0, 1000))
        {
            Assert.Equal(ServiceLookup.Selected, lb.Select(in f, 0, out var s));
            Assert.Equal(f.Destination.V4 & 0xFFFF, (s.BackendAddress.V4 >> 7) & 0xFFFF);
        }
    }
}
