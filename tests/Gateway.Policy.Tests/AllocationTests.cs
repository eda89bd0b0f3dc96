using Gateway.Datapath;

namespace Gateway.Policy.Tests;

/// <summary>The per-packet paths allocate nothing once warm.</summary>
public class AllocationTests
{
    private static PolicySnapshot Snapshot() => Helpers.Compile("""
        apiVersion: cilium.io/v2
        kind: CiliumNetworkPolicy
        metadata: {name: p}
        spec:
          endpointSelector: {matchLabels: {app: b}}
          ingress:
          - fromEndpoints: [{matchLabels: {app: a}}]
            toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}, {port: "53", protocol: UDP}]}]
          - toPorts: [{ports: [{port: "443", protocol: TCP}]}]
          ingressDeny:
          - fromCIDR: [172.16.0.0/12]
        """);

    [Fact]
    public void VerdictLookupAllocatesNothing()
    {
        var s = Snapshot();
        uint b = s.Id("b"), a = s.Id("a"), c = s.Id("c");
        var map = s.GetPolicy(b)!.Ingress;
        long sink = 0;
        for (int round = 0; round < 2; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10_000; i++)
            {
                sink += (int)map.Lookup(a, IpProtocol.Tcp, (ushort)(70 + (i % 30))).Kind;
                sink += (int)map.Lookup(c, IpProtocol.Udp, 53).Kind;
                sink += (int)map.Lookup(ReservedIdentity.World, IpProtocol.Tcp, 443).Kind;
                sink += (int)s.Lookup(b, Direction.Ingress, a, IpProtocol.Tcp, 85).Kind;
                sink += (int)s.Lookup(a, Direction.Egress, b, IpProtocol.Icmp, 8).Kind;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round == 1)
            {
                Assert.Equal(0, allocated);
            }
        }
        Assert.NotEqual(0, sink);
    }

    [Fact]
    public void EngineProcessConntrackAndIpCacheAllocateNothing()
    {
        var identities = new IdentityAllocator();
        var engine = new PolicyEngine(identities, new Conntrack(4096), new FlowEventRing(8));
        engine.Apply(Snapshot().Policies, EndpointFile.Parse(Helpers.Endpoints, "e.yaml", identities));
        var key = new FlowKey { Source = IpAddress.Parse("10.0.0.1"), Destination = IpAddress.Parse("10.0.0.2"), Protocol = IpProtocol.Tcp, SourcePort = 1234, DestinationPort = 80, TcpFlags = TcpFlag.Syn };
        var denied = key with { Source = IpAddress.Parse("172.16.5.5") };
        var v6 = IpAddress.Parse("fd00::1");
        for (int round = 0; round < 2; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 2000; i++)
            {
                var k = key;
                k.SourcePort = (ushort)(1000 + (i % 500));
                engine.Process(k, i);                   // new flows, then established
                engine.Process(k.Reversed(), i);        // replies
                engine.Process(denied, i);              // drops (ring fills up: lost counter)
                engine.Current.IpCache.Lookup(v6);
                engine.Conntrack.Collect(i, 16);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round == 1)
            {
                Assert.Equal(0, allocated);
            }
        }
        Assert.True(engine.Events.Lost > 0);
    }
}
