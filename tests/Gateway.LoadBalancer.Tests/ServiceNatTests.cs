using System.Buffers.Binary;
using System.Net;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Gateway.Datapath;
using PacketDotNet;

namespace Gateway.LoadBalancer.Tests;

/// <summary>
/// DNAT and reverse NAT rewrite in place with incremental checksums; the result must equal a
/// packet PacketDotNet builds from scratch with the new addresses and ports (full recomputation).
/// </summary>
public class ServiceNatTests
{
    private static byte[] Build(bool v6, bool tcp, IPAddress src, IPAddress dst, ushort sport, ushort dport, byte[] payload, uint seq)
    {
        TransportPacket l4 = tcp
            ? new TcpPacket(sport, dport) { SequenceNumber = seq, AcknowledgmentNumber = ~seq, WindowSize = 1234, Flags = 0x18, PayloadData = payload }
            : new UdpPacket(sport, dport) { PayloadData = payload };
        IPPacket ip = v6
            ? new IPv6Packet(src, dst) { HopLimit = 64, PayloadPacket = l4 }
            : new IPv4Packet(src, dst) { TimeToLive = 64, Id = (ushort)seq, PayloadPacket = l4 };
        ip.UpdateCalculatedValues();
        if (ip is IPv4Packet v4)
        {
            v4.UpdateIPChecksum();
        }
        if (l4 is TcpPacket t)
        {
            t.UpdateTcpChecksum();
        }
        else
        {
            ((UdpPacket)l4).UpdateUdpChecksum();
        }
        return ip.Bytes;
    }

    private static IPAddress Addr(Random r, bool v6)
    {
        byte[] b = new byte[v6 ? 16 : 4];
        r.NextBytes(b);
        return new IPAddress(b);
    }

    private static void Check(int seed)
    {
        var r = new Random(seed);
        bool v6 = r.Next(2) == 1, tcp = r.Next(2) == 1;
        IPAddress client = Addr(r, v6), vip = Addr(r, v6), backend = Addr(r, v6);
        ushort cport = (ushort)r.Next(1, 65536), vport = (ushort)r.Next(1, 65536), bport = (ushort)r.Next(1, 65536);
        byte[] payload = new byte[r.Next(0, 300)];
        r.NextBytes(payload);
        uint seq = (uint)r.NextInt64(0, uint.MaxValue);

        // Request: client -> VIP becomes client -> backend.
        byte[] packet = Build(v6, tcp, client, vip, cport, vport, payload, seq);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out _, out var layout));
        Assert.True(ServiceNat.RewriteDestination(packet, in layout, IpAddress.FromIPAddress(backend), bport));
        Assert.Equal(Build(v6, tcp, client, backend, cport, bport, payload, seq), packet);
        Assert.True(TransportChecksum.Verify(packet));

        // Reply: backend -> client becomes VIP -> client.
        byte[] reply = Build(v6, tcp, backend, client, bport, cport, payload, seq);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(reply, out _, out layout));
        Assert.True(ServiceNat.RewriteSource(reply, in layout, IpAddress.FromIPAddress(vip), vport));
        Assert.Equal(Build(v6, tcp, vip, client, vport, cport, payload, seq), reply);

        // PacketDotNet reads the rewritten fields and finds the checksums valid.
        var parsed = Packet.ParsePacket(LinkLayers.Raw, reply).Extract<IPPacket>();
        Assert.Equal(vip, parsed.SourceAddress);
        var l4 = (TransportPacket)parsed.PayloadPacket;
        Assert.Equal(vport, l4.SourcePort);
        Assert.True(l4 is TcpPacket t ? t.ValidTcpChecksum : ((UdpPacket)l4).ValidUdpChecksum);
        if (parsed is IPv4Packet p4)
        {
            Assert.True(p4.ValidIPChecksum);
        }
    }

    [Property(MaxTest = 500)]
    public Property RewritesEqualFullRecomputation() => Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
    {
        Check(seed);
        return true;
    });

    [Fact]
    public void UdpWithoutChecksumOverIpv4StaysWithout()
    {
        var r = new Random(5);
        byte[] packet = Build(false, false, IPAddress.Parse("10.0.0.5"), IPAddress.Parse("10.96.0.53"), 5000, 53, [1, 2, 3], 1);
        FlowParser.ParseIp(packet, out _, out var layout);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(layout.TransportOffset + 6), 0);
        Assert.True(ServiceNat.RewriteDestination(packet, in layout, IpAddress.Parse("10.0.3.1"), 5353));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(layout.TransportOffset + 6)));
        var parsed = Packet.ParsePacket(LinkLayers.Raw, packet).Extract<IPv4Packet>();
        Assert.True(parsed.ValidIPChecksum);
        Assert.Equal(IPAddress.Parse("10.0.3.1"), parsed.DestinationAddress);
        Assert.Equal(5353, ((UdpPacket)parsed.PayloadPacket).DestinationPort);
        _ = r;
    }

    /// <summary>With TUN checksum offload the field holds the pseudo-header sum; after DNAT it must be the new pseudo-header's.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PartialChecksumsFollowThePseudoHeader(bool v6)
    {
        var client = IPAddress.Parse(v6 ? "fd00::5" : "10.0.0.5");
        var vip = IPAddress.Parse(v6 ? "fd00:96::10" : "10.96.0.10");
        var backend = IPAddress.Parse(v6 ? "fd00::1:1" : "10.0.1.1");
        byte[] packet = Build(v6, true, client, vip, 40000, 80, new byte[100], 7);
        FlowParser.ParseIp(packet, out _, out var layout);
        int segLength = packet.Length - layout.TransportOffset;
        ushort Pseudo(byte[] p) => InternetChecksum.Fold(v6
            ? TransportChecksum.PseudoHeaderV6(p.AsSpan(8, 16), p.AsSpan(24, 16), IpProtocol.Tcp, segLength)
            : TransportChecksum.PseudoHeaderV4(BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(12)), BinaryPrimitives.ReadUInt32BigEndian(p.AsSpan(16)), IpProtocol.Tcp, segLength));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(layout.TransportOffset + 16), Pseudo(packet));
        Assert.True(ServiceNat.RewriteDestination(packet, in layout, IpAddress.FromIPAddress(backend), 8080, partialChecksum: true));
        Assert.Equal(Pseudo(packet), BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(layout.TransportOffset + 16)));
        // Completing the checksum as the kernel would gives a valid segment.
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(layout.TransportOffset + 16), 0);
        Assert.True(TransportChecksum.TryFill(packet));
        Assert.True(TransportChecksum.Verify(packet));
    }

    [Fact]
    public void RefusesWhatItCannotTranslate()
    {
        byte[] icmp = new byte[28];
        icmp[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(icmp.AsSpan(2), 28);
        icmp[9] = IpProtocol.Icmp;
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(icmp, out _, out var layout));
        Assert.False(ServiceNat.RewriteDestination(icmp, in layout, IpAddress.Parse("10.0.0.1"), 80));
        byte[] tcp = Build(false, true, IPAddress.Parse("10.0.0.5"), IPAddress.Parse("10.96.0.10"), 1, 80, [], 1);
        FlowParser.ParseIp(tcp, out _, out layout);
        Assert.False(ServiceNat.RewriteDestination(tcp, in layout, IpAddress.Parse("fd00::1"), 80));   // family change
        Assert.False(ServiceNat.RewriteDestination(tcp.AsSpan(0, 30), in layout, IpAddress.Parse("10.0.0.1"), 80));   // truncated
        Assert.False(ServiceNat.RewriteDestination(tcp, default(PacketLayout) with { TransportOffset = -1 }, IpAddress.Parse("10.0.0.1"), 80));
    }
}
