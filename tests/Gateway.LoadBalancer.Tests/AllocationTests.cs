using Gateway.Datapath;

namespace Gateway.LoadBalancer.Tests;

/// <summary>The per-packet paths (service selection, affinity, NAT) allocate nothing once warm.</summary>
public class AllocationTests
{
    [Fact]
    public void SelectionAndNatAllocateNothing()
    {
        var lb = new ServiceLoadBalancer(Fixtures.Compile());
        var web = Fixtures.Flow("10.0.0.5", 40000, "10.96.0.10", 80);
        var web6 = Fixtures.Flow("fd00::5", 40000, "fd00:96::10", 80);
        var dns = Fixtures.Flow("10.0.0.5", 40000, "10.96.0.53", 53, IpProtocol.Udp);   // ClientIP affinity
        var empty = Fixtures.Flow("10.0.0.5", 40000, "10.96.0.99", 80);
        byte[] packet = new byte[60];
        packet[0] = 0x45;
        packet[3] = 60;
        packet[9] = IpProtocol.Tcp;
        packet[32] = 0x50;
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out _, out var layout));
        long sink = 0;
        for (int round = 0; round < 2; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 10_000; i++)
            {
                web.SourcePort = (ushort)i;
                sink += (int)lb.Select(in web, i, out var s);
                sink += (int)lb.Select(in web6, i, out _);
                sink += (int)lb.Select(in dns, i, out _);
                sink += (int)lb.Select(in empty, i, out _);
                sink += ServiceNat.RewriteDestination(packet, in layout, s.BackendAddress, s.BackendPort) ? 1 : 0;
                sink += ServiceNat.RewriteSource(packet, in layout, s.ServiceAddress, s.ServicePort) ? 1 : 0;
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round == 1)
            {
                Assert.Equal(0, allocated);
            }
        }
        Assert.NotEqual(0, sink);
    }
}
