namespace Gateway.Datapath.Tests;

public class AllocationTests
{
    [Fact]
    public void FlowKeyParseAndChecksumsAllocateNothingAfterWarmUp()
    {
        byte[] tcp4 = PacketFactory.Ethernet(PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Tcp, PacketFactory.Tcp(1000, 80, TcpFlags.Syn, new byte[64])));
        byte[] udp6ext = Parsers.EthernetIpv6UdpWithDestinationOptions();
        byte[] inner = PacketFactory.Ethernet(PacketFactory.Ipv4(0x0A000101, 0x0A000202, IpProtocol.Udp, PacketFactory.Udp(5353, 53, new byte[40])));
        byte[] vxlan = PacketFactory.Ethernet(PacketFactory.Ipv4(0xC0A80001, 0xC0A80002, IpProtocol.Udp, PacketFactory.Udp(40000, 8472, PacketFactory.Vxlan(42, inner))));
        byte[] payload = new byte[1500];

        int checksum = 0;
        void Run()
        {
            // Plain comparisons: xunit's generic Assert.Equal allocates on its own.
            if (FlowParser.ParseEthernet(tcp4, out FlowKey a) != ParseStatus.Ok ||
                FlowParser.Parse(LinkType.Ethernet, udp6ext, out FlowKey b, out _) != ParseStatus.Ok ||
                FlowParser.ParseVxlan(LinkType.Ethernet, vxlan, out FlowKey o, out uint vni, out FlowKey i) != ParseStatus.Ok)
            {
                throw new InvalidOperationException("parse failed");
            }
            checksum += a.SourcePort + b.DestinationPort + (int)vni + i.DestinationPort + o.SourcePort;
            checksum += InternetChecksum.Compute(payload);
            checksum += TransportChecksum.Verify(tcp4.AsSpan(14)) ? 1 : 0;
        }

        Run();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int n = 0; n < 10_000; n++)
        {
            Run();
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.NotEqual(0, checksum);
    }
}
