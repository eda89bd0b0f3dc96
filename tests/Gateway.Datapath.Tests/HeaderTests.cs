using System.Buffers.Binary;

namespace Gateway.Datapath.Tests;

public class HeaderTests
{
    [Fact]
    public void EthernetWithQinQReportsBothVlanIds()
    {
        byte[] ip = PacketFactory.Ipv4(1, 2, IpProtocol.Udp, PacketFactory.Udp(1, 2, []));
        byte[] frame = PacketFactory.Ethernet(ip, vlan: 200, outerVlan: 100);
        Assert.Equal(ParseStatus.Ok, LinkLayer.TryReadEthernet(frame, out var info));
        Assert.Equal(2, info.VlanCount);
        Assert.Equal(100, info.OuterVlanId);
        Assert.Equal(200, info.InnerVlanId);
        Assert.Equal(EtherType.Ipv4, info.EtherType);
        Assert.Equal(22, info.NetworkOffset);
    }

    [Fact]
    public void ThreeVlanTagsAreRejectedAndTruncatedTagsToo()
    {
        byte[] frame = new byte[14 + 12 + 20];
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), EtherType.QinQ);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(16), EtherType.Vlan);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(20), EtherType.Vlan);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(24), EtherType.Ipv4);
        Assert.Equal(ParseStatus.TooManyVlanTags, LinkLayer.TryReadEthernet(frame, out _));
        Assert.Equal(ParseStatus.Truncated, LinkLayer.TryReadEthernet(frame.AsSpan(0, 17), out _));
        Assert.Equal(ParseStatus.Truncated, LinkLayer.TryReadEthernet(frame.AsSpan(0, 13), out _));
    }

    [Fact]
    public void ArpIsNotIp()
    {
        Assert.Equal(ParseStatus.NotIp, LinkLayer.TryReadEthernet(PacketFactory.Arp(1, 2), out var info));
        Assert.Equal(EtherType.Arp, info.EtherType);
    }

    [Fact]
    public void CookedAndRawLinkTypesFindTheNetworkLayer()
    {
        byte[] ip = PacketFactory.Ipv4(0x0A000001, 0x0A000002, IpProtocol.Udp, PacketFactory.Udp(1, 2, []));
        Assert.Equal(ParseStatus.Ok, LinkLayer.TryRead(LinkType.LinuxSll2, PacketFactory.Sll2(ip), out var sll2));
        Assert.Equal(20, sll2.NetworkOffset);
        byte[] sll = new byte[16 + ip.Length];
        BinaryPrimitives.WriteUInt16BigEndian(sll.AsSpan(14), EtherType.Ipv4);
        ip.CopyTo(sll, 16);
        Assert.Equal(ParseStatus.Ok, LinkLayer.TryRead(LinkType.LinuxSll, sll, out var v1));
        Assert.Equal(16, v1.NetworkOffset);
        foreach (LinkType raw in new[] { LinkType.Raw, LinkType.RawDlt12, LinkType.RawDlt14, LinkType.Ipv4 })
        {
            Assert.Equal(ParseStatus.Ok, LinkLayer.TryRead(raw, ip, out var r));
            Assert.Equal(0, r.NetworkOffset);
        }
        byte[] nullLink = [2, 0, 0, 0, .. ip];
        Assert.Equal(ParseStatus.Ok, LinkLayer.TryRead(LinkType.Null, nullLink, out var n));
        Assert.Equal(4, n.NetworkOffset);
        Assert.Equal(ParseStatus.UnsupportedLinkType, LinkLayer.TryRead((LinkType)105, ip, out _));
        Assert.Equal(ParseStatus.BadVersion, LinkLayer.TryRead(LinkType.Raw, [0x50, 0, 0, 0], out _));
        Assert.Equal(ParseStatus.Truncated, LinkLayer.TryRead(LinkType.LinuxSll2, PacketFactory.Sll2(ip).AsSpan(0, 19), out _));
    }

    [Fact]
    public void Ipv4WriteReadRoundTripWithOptionsAndFragmentFields()
    {
        var h = new Ipv4Header
        {
            TypeOfService = 0xB8, TotalLength = 24 + 8, Identification = 0xBEEF, DontFragment = false, MoreFragments = true,
            FragmentOffset = 0x123, TimeToLive = 7, Protocol = IpProtocol.Udp, Source = 0x0A000001, Destination = 0xC0A80102,
        };
        byte[] buffer = new byte[32];
        Assert.Equal(24, h.Write(buffer, [1, 1, 1, 0]));   // NOP NOP NOP EOL
        Assert.True(Ipv4Header.VerifyChecksum(buffer));
        Assert.Equal(ParseStatus.Ok, Ipv4Header.TryRead(buffer, out var r));
        Assert.Equal(24, r.HeaderLength);
        Assert.Equal(4, r.OptionsLength);
        Assert.Equal(h.Identification, r.Identification);
        Assert.True(r.MoreFragments);
        Assert.False(r.DontFragment);
        Assert.Equal(0x123, r.FragmentOffset);
        Assert.True(r.IsFragment);
        Assert.Equal(h.Source, r.Source);
        Assert.Equal(h.Destination, r.Destination);
        Assert.Equal(0xB8, r.TypeOfService);
        Assert.Throws<ArgumentException>(() => h.Write(buffer, [1, 2, 3]));
    }

    [Theory]
    [InlineData(0x45, 20, 20, ParseStatus.Ok)]
    [InlineData(0x55, 20, 20, ParseStatus.BadVersion)]
    [InlineData(0x44, 20, 20, ParseStatus.BadHeaderLength)]
    [InlineData(0x46, 20, 24, ParseStatus.BadHeaderLength)]   // IHL 24 > total length 20
    [InlineData(0x45, 19, 20, ParseStatus.BadTotalLength)]    // total below minimum
    [InlineData(0x45, 21, 20, ParseStatus.BadTotalLength)]    // total beyond the bytes present
    [InlineData(0x4F, 60, 40, ParseStatus.Truncated)]         // options beyond the span
    public void Ipv4LyingFieldsAreRejected(byte versionIhl, ushort totalLength, int spanLength, ParseStatus expected)
    {
        byte[] packet = new byte[spanLength];
        packet[0] = versionIhl;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), totalLength);
        Assert.Equal(expected, Ipv4Header.TryRead(packet, out _));
        Assert.Equal(expected, FlowParser.ParseIp(packet, out _));
    }

    [Fact]
    public void Ipv6ExtensionChainIsWalkedToTheTransport()
    {
        // HBH(8) -> Routing(16) -> Fragment(8, offset 0, M=1) -> AH(12+4=16) -> DestOpts(8) -> TCP
        var payload = new List<byte>();
        payload.AddRange([IpProtocol.Routing, 0, 1, 4, 0, 0, 0, 0]);
        payload.AddRange([IpProtocol.Fragment, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        payload.AddRange([IpProtocol.Ah, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF]);
        payload.AddRange([IpProtocol.DestinationOptions, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        payload.AddRange([IpProtocol.Tcp, 0, 1, 4, 0, 0, 0, 0]);
        payload.AddRange(PacketFactory.Tcp(1234, 443, TcpFlags.Syn, []));
        Assert.Equal(ParseStatus.Ok, Ipv6Extensions.TryWalk(payload.ToArray(), IpProtocol.HopByHop, out var info));
        Assert.Equal(IpProtocol.Tcp, info.Protocol);
        Assert.Equal(8 + 16 + 8 + 16 + 8, info.TransportOffset);
        Assert.Equal(5, info.Count);
        Assert.True(info.IsFragment);
        Assert.True(info.MoreFragments);
        Assert.Equal(0xDEADBEEFu, info.FragmentIdentification);
        Assert.Equal(ParseStatus.Truncated, Ipv6Extensions.TryWalk(payload.ToArray().AsSpan(0, 30), IpProtocol.HopByHop, out _));
    }

    [Fact]
    public void Ipv6ExtensionAbuseIsRejected()
    {
        // Hop-by-hop after another header.
        byte[] late = [IpProtocol.HopByHop, 0, 0, 0, 0, 0, 0, 0, IpProtocol.Tcp, 0, 0, 0, 0, 0, 0, 0];
        Assert.Equal(ParseStatus.BadExtensionHeader, Ipv6Extensions.TryWalk(late, IpProtocol.DestinationOptions, out _));
        // Nine destination options headers.
        byte[] chain = new byte[9 * 8];
        for (int i = 0; i < 9; i++) chain[i * 8] = IpProtocol.DestinationOptions;
        Assert.Equal(ParseStatus.TooManyExtensionHeaders, Ipv6Extensions.TryWalk(chain, IpProtocol.DestinationOptions, out _));
        // No next header ends the chain.
        Assert.Equal(ParseStatus.Ok, Ipv6Extensions.TryWalk([IpProtocol.NoNextHeader, 0, 0, 0, 0, 0, 0, 0], IpProtocol.DestinationOptions, out var nn));
        Assert.Equal(IpProtocol.NoNextHeader, nn.Protocol);
        // AH with a length shorter than its fixed part.
        Assert.Equal(ParseStatus.BadExtensionHeader, Ipv6Extensions.TryWalk([IpProtocol.Tcp, 0, 0, 0, 0, 0, 0, 0], IpProtocol.Ah, out _));
    }

    [Fact]
    public void Ipv6PayloadLengthBeyondTheSpanIsRejected()
    {
        byte[] p = PacketFactory.Ipv6(1, 2, IpProtocol.Udp, PacketFactory.Udp(1, 2, [1, 2]));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(4), 11);
        Assert.Equal(ParseStatus.BadTotalLength, Ipv6Header.TryRead(p, out _));
        Assert.Equal(ParseStatus.BadTotalLength, FlowParser.ParseIp(p, out _));
        p[0] = 0x40;
        Assert.Equal(ParseStatus.BadVersion, Ipv6Header.TryRead(p, out _));
    }

    [Fact]
    public void TcpHeaderRoundTripAndBadDataOffset()
    {
        byte[] seg = new byte[24];
        new TcpHeader { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Syn | TcpFlags.Ack, Window = 5, UrgentPointer = 6 }
            .Write(seg, [2, 4, 5, 0xb4]);
        Assert.Equal(ParseStatus.Ok, TcpHeader.TryRead(seg, out var t));
        Assert.Equal((1, 2, 3u, 4u, 24, (byte)0x12, (ushort)5, (ushort)6),
            (t.SourcePort, t.DestinationPort, t.SequenceNumber, t.AcknowledgmentNumber, t.HeaderLength, t.Flags, t.Window, t.UrgentPointer));
        seg[12] = 0x40;
        Assert.Equal(ParseStatus.BadHeaderLength, TcpHeader.TryRead(seg, out _));
        seg[12] = 0xF0;
        Assert.Equal(ParseStatus.BadL4Length, TcpHeader.TryRead(seg, out _));
    }

    [Fact]
    public void UdpLengthLiesAreRejectedByTheFlowParser()
    {
        byte[] p = PacketFactory.Ipv4(1, 2, IpProtocol.Udp, PacketFactory.Udp(1, 2, [1, 2, 3]));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), 12);   // 1 more than the datagram
        Assert.Equal(ParseStatus.BadL4Length, FlowParser.ParseIp(p, out _));
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(24), 7);
        Assert.Equal(ParseStatus.BadL4Length, FlowParser.ParseIp(p, out _));
    }

    [Fact]
    public void IcmpIdentifierOnlyForQueries()
    {
        byte[] echo = PacketFactory.IcmpEcho(false, 0x1234, 9);
        Assert.Equal(ParseStatus.Ok, IcmpHeader.TryRead(echo, false, out var e));
        Assert.Equal((8, 0, 0x1234, 9), (e.Type, e.Code, e.Identifier, e.SequenceNumber));
        Assert.Equal(ParseStatus.Truncated, IcmpHeader.TryRead(echo.AsSpan(0, 6), false, out _));
        Assert.Equal(ParseStatus.Ok, IcmpHeader.TryRead([3, 3, 0, 0], false, out var u));
        Assert.Equal(0, u.Identifier);
        Assert.Equal(ParseStatus.Ok, IcmpHeader.TryRead([129, 0, 0, 0, 0xAB, 0xCD, 0, 1], true, out var v6));
        Assert.Equal(0xABCD, v6.Identifier);
    }

    [Fact]
    public void VxlanHeaderPerRfc7348()
    {
        byte[] h = new byte[8];
        Vxlan.Write(h, 0xABCDEF);
        Assert.Equal(new byte[] { 0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0 }, h);
        Assert.Equal(ParseStatus.Ok, Vxlan.TryRead(h, out uint vni));
        Assert.Equal(0xABCDEFu, vni);
        Assert.True(Vxlan.IsStrict(h));
        h[0] = 0;
        Assert.Equal(ParseStatus.BadVxlanHeader, Vxlan.TryRead(h, out _));
        Assert.Equal(ParseStatus.Truncated, Vxlan.TryRead(h.AsSpan(0, 7), out _));
        Assert.Throws<ArgumentOutOfRangeException>(() => Vxlan.Write(h, 0x1000000));
    }

    [Fact]
    public void GeneveHeaderPerRfc8926()
    {
        byte[] h = new byte[16];
        new GeneveHeader { OptionsLength = 8, Oam = true, ProtocolType = EtherType.TransparentEthernetBridging, Vni = 0x123456 }.Write(h);
        Assert.Equal(new byte[] { 0x02, 0x80, 0x65, 0x58, 0x12, 0x34, 0x56, 0 }, h[..8]);
        Assert.Equal(ParseStatus.Ok, GeneveHeader.TryRead(h, out var g));
        Assert.Equal((0, 8, true, false, (ushort)0x6558, 0x123456u, 16), (g.Version, g.OptionsLength, g.Oam, g.Critical, g.ProtocolType, g.Vni, g.HeaderLength));
        Assert.Equal(ParseStatus.Truncated, GeneveHeader.TryRead(h.AsSpan(0, 15), out _));
        h[0] |= 0x40;
        Assert.Equal(ParseStatus.BadVersion, GeneveHeader.TryRead(h, out _));
    }

    [Theory]
    [InlineData(WireGuardMessageType.HandshakeInitiation, 148, true)]
    [InlineData(WireGuardMessageType.HandshakeInitiation, 149, false)]
    [InlineData(WireGuardMessageType.HandshakeResponse, 92, true)]
    [InlineData(WireGuardMessageType.HandshakeResponse, 148, false)]
    [InlineData(WireGuardMessageType.CookieReply, 64, true)]
    [InlineData(WireGuardMessageType.CookieReply, 92, false)]
    [InlineData(WireGuardMessageType.TransportData, 32, true)]
    [InlineData(WireGuardMessageType.TransportData, 48, true)]
    [InlineData(WireGuardMessageType.TransportData, 1440, true)]
    [InlineData(WireGuardMessageType.TransportData, 16, false)]
    [InlineData(WireGuardMessageType.TransportData, 40, false)]
    public void WireGuardRecognisedByTypeAndExactSize(WireGuardMessageType type, int size, bool expected)
    {
        byte[] m = new byte[size];
        new Random(size).NextBytes(m);
        new WireGuardHeader { MessageType = type, SenderIndex = 0x01020304, ReceiverIndex = 0x0A0B0C0D, Counter = 0x1122334455667788 }.Write(m);
        Assert.Equal(expected ? ParseStatus.Ok : ParseStatus.NotWireGuard, WireGuardHeader.TryRead(m, out var h));
        if (expected)
        {
            Assert.Equal(type, h.MessageType);
            Assert.Equal(type is WireGuardMessageType.HandshakeInitiation or WireGuardMessageType.HandshakeResponse ? 0x01020304u : 0u, h.SenderIndex);
            Assert.Equal(type == WireGuardMessageType.HandshakeInitiation ? 0u : 0x0A0B0C0Du, h.ReceiverIndex);
            Assert.Equal(type == WireGuardMessageType.TransportData ? 0x1122334455667788ul : 0ul, h.Counter);
        }
        // Little-endian on the wire: type byte first, three reserved zero bytes.
        Assert.Equal((byte)type, m[0]);
        Assert.Equal(0, m[1] | m[2] | m[3]);
        m[2] = 1;
        Assert.Equal(ParseStatus.NotWireGuard, WireGuardHeader.TryRead(m, out _));
    }

    [Fact]
    public void WireGuardTypeZeroAndFiveAreNotWireGuard()
    {
        Assert.Equal(ParseStatus.NotWireGuard, WireGuardHeader.TryRead(new byte[148], out _));
        byte[] five = new byte[32];
        five[0] = 5;
        Assert.Equal(ParseStatus.NotWireGuard, WireGuardHeader.TryRead(five, out _));
        Assert.Equal(ParseStatus.Truncated, WireGuardHeader.TryRead([4, 0, 0], out _));
    }
}

public class FlowParserEdgeTests
{
    [Fact]
    public void Ipv4OptionsAreSkippedBeforeTheTransportHeader()
    {
        byte[] tcp = PacketFactory.Tcp(1234, 443, TcpFlags.Syn | TcpFlags.Ece, []);
        byte[] packet = new byte[28 + tcp.Length];
        new Ipv4Header { TotalLength = (ushort)packet.Length, TimeToLive = 1, Protocol = IpProtocol.Tcp, Source = 0x0A000001, Destination = 0x0A000002 }
            .Write(packet, [0x94, 0x04, 0, 0, 1, 1, 1, 0]);   // Router Alert, NOP NOP NOP EOL
        tcp.CopyTo(packet, 28);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out FlowKey key, out PacketLayout layout));
        Assert.Equal((1234, 443, (byte)(TcpFlags.Syn | TcpFlags.Ece)), ((int)key.SourcePort, (int)key.DestinationPort, key.TcpFlags));
        Assert.Equal(28, layout.TransportOffset);
        Assert.Equal(48, layout.PayloadOffset);
    }

    [Fact]
    public void QinQAndCookedV1FramesParseToTheSameKey()
    {
        byte[] ip = PacketFactory.Ipv6(IpAddress.Parse("fd00::1").V6, IpAddress.Parse("fd00::2").V6, IpProtocol.Udp, PacketFactory.Udp(10, 20, [1]));
        Assert.Equal(ParseStatus.Ok, FlowParser.Parse(LinkType.Ethernet, PacketFactory.Ethernet(ip, vlan: 7, outerVlan: 3), out FlowKey qinq, out PacketLayout l));
        Assert.Equal((2, (ushort)3, (ushort)7, 22), ((int)l.VlanCount, l.OuterVlanId, l.InnerVlanId, l.NetworkOffset));
        byte[] sll = new byte[16 + ip.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(sll.AsSpan(14), EtherType.Ipv6);
        ip.CopyTo(sll, 16);
        Assert.Equal(ParseStatus.Ok, FlowParser.Parse(LinkType.LinuxSll, sll, out FlowKey cooked));
        Assert.Equal(qinq, cooked);
        Assert.Equal(6, cooked.IpVersion);
    }

    [Fact]
    public void NonIpAndIcmpErrorsAndUnknownProtocols()
    {
        Assert.Equal(ParseStatus.NotIp, FlowParser.ParseEthernet(PacketFactory.Arp(1, 2), out _));
        byte[] unreachable = PacketFactory.Ipv4(1, 2, IpProtocol.Icmp, PacketFactory.IcmpPortUnreachable(PacketFactory.Ipv4(2, 1, IpProtocol.Udp, PacketFactory.Udp(5, 6, []))));
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(unreachable, out FlowKey icmp));
        Assert.Equal((3, 3, 0), ((int)icmp.IcmpType, (int)icmp.IcmpCode, (int)icmp.IcmpId));
        byte[] gre = PacketFactory.Ipv4(1, 2, IpProtocol.Gre, new byte[8]);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(gre, out FlowKey g, out PacketLayout gl));
        Assert.Equal((IpProtocol.Gre, (ushort)0, 20), (g.Protocol, g.SourcePort, gl.TransportOffset));
        // ICMPv6 inside IPv4 is not ICMP for the key.
        byte[] odd = PacketFactory.Ipv4(1, 2, IpProtocol.Icmpv6, [128, 0, 0, 0, 0, 9, 0, 1]);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(odd, out FlowKey o));
        Assert.Equal(0, o.IcmpId);
    }

    [Fact]
    public void GenevePayloadWithOptionsCarryingIpv6()
    {
        byte[] inner = PacketFactory.Ipv6(IpAddress.Parse("fd00::a").V6, IpAddress.Parse("fd00::b").V6, IpProtocol.Tcp, PacketFactory.Tcp(1, 2, TcpFlags.Rst, []));
        byte[] geneve = PacketFactory.Geneve(0xABCDEF, EtherType.Ipv6, inner, optionBytes: 12);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseGenevePayload(geneve, out uint vni, out FlowKey key, out PacketLayout layout));
        Assert.Equal(0xABCDEFu, vni);
        Assert.Equal((IpProtocol.Tcp, TcpFlags.Rst, 20), (key.Protocol, key.TcpFlags, layout.NetworkOffset));
        byte[] bad = PacketFactory.Geneve(1, 0x1234, inner);
        Assert.Equal(ParseStatus.BadGeneveHeader, FlowParser.ParseGenevePayload(bad, out _, out _, out _));
    }

    [Fact]
    public void VxlanOverNonUdpIsRejected()
    {
        byte[] tcp = PacketFactory.Ethernet(PacketFactory.Ipv4(1, 2, IpProtocol.Tcp, PacketFactory.Tcp(1, 8472, 0, [])));
        Assert.Equal(ParseStatus.NotUdp, FlowParser.ParseVxlan(LinkType.Ethernet, tcp, out _, out _, out _));
    }
}

public class Ipv6ExtensionWriterTests
{
    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(264)]
    [InlineData(2048)]
    public void PaddedHeadersAndFragmentHeaderWalkBack(int length)
    {
        byte[] tcp = PacketFactory.Tcp(7, 8, TcpFlags.Fin, []);
        byte[] payload = new byte[length + 8 + tcp.Length];
        Ipv6Extensions.WritePaddedHeader(payload, IpProtocol.Fragment, length);
        Ipv6Extensions.WriteFragmentHeader(payload.AsSpan(length), IpProtocol.Tcp, 0, moreFragments: true, identification: 99);
        tcp.CopyTo(payload, length + 8);
        Assert.Equal(ParseStatus.Ok, Ipv6Extensions.TryWalk(payload, IpProtocol.HopByHop, out var info));
        Assert.Equal((IpProtocol.Tcp, length + 8, true, true, 99u), (info.Protocol, info.TransportOffset, info.IsFragment, info.MoreFragments, info.FragmentIdentification));
        // PacketDotNet agrees on where TCP starts for a single padded header.
        byte[] single = new byte[length + tcp.Length];
        Ipv6Extensions.WritePaddedHeader(single, IpProtocol.Tcp, length);
        tcp.CopyTo(single, length);
        byte[] packet = PacketFactory.Ipv6(1, 2, IpProtocol.DestinationOptions, single);
        var parsed = PacketDotNet.Packet.ParsePacket(PacketDotNet.LinkLayers.Raw, packet).Extract<PacketDotNet.TcpPacket>();
        Assert.Equal(7, parsed.SourcePort);
        Assert.Equal(ParseStatus.Ok, FlowParser.ParseIp(packet, out FlowKey key));
        Assert.Equal((7, 8, TcpFlags.Fin), ((int)key.SourcePort, (int)key.DestinationPort, key.TcpFlags));
    }
}
