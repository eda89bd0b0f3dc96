using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Datapath.Tests;

/// <summary>
/// Builds well-formed frames with the datapath's own header writers (checksums filled), for the
/// synthetic capture fixtures and for tests. Deterministic: "ciphertext" comes from a seeded Random.
/// </summary>
public static class PacketFactory
{
    public static readonly byte[] MacA = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
    public static readonly byte[] MacB = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];

    public static uint V4(string text) => IpAddress.Parse(text).V4;

    public static byte[] Ethernet(byte[] ip, ushort? vlan = null, ushort? outerVlan = null, byte[]? dst = null, byte[]? src = null)
    {
        int tags = (vlan is null ? 0 : 4) + (outerVlan is null ? 0 : 4);
        var frame = new byte[14 + tags + ip.Length];
        LinkLayer.WriteEthernet(frame, dst ?? MacB, src ?? MacA, 0);
        int offset = 12;
        if (outerVlan is ushort ov)
        {
            LinkLayer.WriteVlanTag(frame.AsSpan(offset), EtherType.QinQ, ov);
            offset += 4;
        }
        if (vlan is ushort v)
        {
            LinkLayer.WriteVlanTag(frame.AsSpan(offset), EtherType.Vlan, v);
            offset += 4;
        }
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(offset), (ip[0] >> 4) == 6 ? EtherType.Ipv6 : EtherType.Ipv4);
        ip.CopyTo(frame, offset + 2);
        return frame;
    }

    /// <summary>An ARP request (not IP).</summary>
    public static byte[] Arp(uint sender, uint target)
    {
        var frame = new byte[42];
        LinkLayer.WriteEthernet(frame, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], MacA, EtherType.Arp);
        var arp = frame.AsSpan(14);
        BinaryPrimitives.WriteUInt16BigEndian(arp, 1);              // hardware type Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(arp.Slice(2), EtherType.Ipv4);
        arp[4] = 6; arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp.Slice(6), 1);     // request
        MacA.CopyTo(arp.Slice(8));
        BinaryPrimitives.WriteUInt32BigEndian(arp.Slice(14), sender);
        BinaryPrimitives.WriteUInt32BigEndian(arp.Slice(24), target);
        return frame;
    }

    public static byte[] Ipv4(uint src, uint dst, byte protocol, byte[] l4, ushort id = 1, bool moreFragments = false, ushort fragmentOffset = 0, bool fillL4Checksum = true)
    {
        var packet = new byte[20 + l4.Length];
        l4.CopyTo(packet, 20);
        new Ipv4Header
        {
            TotalLength = (ushort)packet.Length, Identification = id, TimeToLive = 64, Protocol = protocol,
            Source = src, Destination = dst, MoreFragments = moreFragments, FragmentOffset = fragmentOffset,
        }.Write(packet);
        if (fillL4Checksum && !moreFragments && fragmentOffset == 0)
        {
            TransportChecksum.TryFill(packet);
        }
        return packet;
    }

    public static byte[] Ipv6(UInt128 src, UInt128 dst, byte nextHeader, byte[] payload)
    {
        var packet = new byte[40 + payload.Length];
        new Ipv6Header { PayloadLength = (ushort)payload.Length, NextHeader = nextHeader, HopLimit = 64, Source = src, Destination = dst }.Write(packet);
        payload.CopyTo(packet, 40);
        TransportChecksum.TryFill(packet);
        return packet;
    }

    public static byte[] Udp(ushort sport, ushort dport, byte[] payload)
    {
        var l4 = new byte[8 + payload.Length];
        new UdpHeader { SourcePort = sport, DestinationPort = dport, DatagramLength = (ushort)l4.Length }.Write(l4);
        payload.CopyTo(l4, 8);
        return l4;
    }

    public static byte[] Tcp(ushort sport, ushort dport, byte flags, byte[] payload, uint seq = 1000)
    {
        var l4 = new byte[20 + payload.Length];
        new TcpHeader { SourcePort = sport, DestinationPort = dport, SequenceNumber = seq, Flags = flags, Window = 64240 }.Write(l4);
        payload.CopyTo(l4, 20);
        return l4;
    }

    public static byte[] IcmpEcho(bool v6, ushort id, ushort seq, int dataLength = 16)
    {
        var m = new byte[8 + dataLength];
        new IcmpHeader { Type = (byte)(v6 ? 128 : 8), Identifier = id, SequenceNumber = seq }.Write(m);
        if (!v6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(2), InternetChecksum.Compute(m));
        }
        return m;
    }

    /// <summary>ICMPv4 destination unreachable (port) quoting the first bytes of <paramref name="offending"/>.</summary>
    public static byte[] IcmpPortUnreachable(byte[] offending)
    {
        int quote = Math.Min(offending.Length, 20 + 8 + 16);
        var m = new byte[8 + quote];
        m[0] = 3; m[1] = 3;
        offending.AsSpan(0, quote).CopyTo(m.AsSpan(8));
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(2), InternetChecksum.Compute(m));
        return m;
    }

    public static byte[] Dns(ushort id)
    {
        var q = new List<byte> { (byte)(id >> 8), (byte)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
        foreach (string label in new[] { "kubernetes", "default", "svc", "cluster", "local" })
        {
            q.Add((byte)label.Length);
            q.AddRange(System.Text.Encoding.ASCII.GetBytes(label));
        }
        q.AddRange([0, 0, 1, 0, 1]);
        return q.ToArray();
    }

    public static byte[] Vxlan(uint vni, byte[] innerFrame)
    {
        var p = new byte[8 + innerFrame.Length];
        Gateway.Datapath.Vxlan.Write(p, vni);
        innerFrame.CopyTo(p, 8);
        return p;
    }

    public static byte[] Geneve(uint vni, ushort protocolType, byte[] inner, int optionBytes = 0)
    {
        var p = new byte[8 + optionBytes + inner.Length];
        new GeneveHeader { Vni = vni, ProtocolType = protocolType, OptionsLength = optionBytes }.Write(p);
        inner.CopyTo(p, 8 + optionBytes);
        return p;
    }

    /// <summary>A WireGuard message of the given type with random (seeded) body bytes.</summary>
    public static byte[] WireGuard(Random random, WireGuardMessageType type, uint sender = 0, uint receiver = 0, ulong counter = 0, int plaintextLength = 0)
    {
        int length = type switch
        {
            WireGuardMessageType.HandshakeInitiation => WireGuardHeader.InitiationLength,
            WireGuardMessageType.HandshakeResponse => WireGuardHeader.ResponseLength,
            WireGuardMessageType.CookieReply => WireGuardHeader.CookieReplyLength,
            _ => WireGuardHeader.TransportHeaderLength + ((plaintextLength + 15) & ~15) + 16,
        };
        var m = new byte[length];
        random.NextBytes(m);
        new WireGuardHeader { MessageType = type, SenderIndex = sender, ReceiverIndex = receiver, Counter = counter }.Write(m);
        m[1] = m[2] = m[3] = 0;
        return m;
    }

    /// <summary>Prefixes a Linux cooked v2 header (20 bytes) to an IP packet.</summary>
    public static byte[] Sll2(byte[] ip, int ifIndex = 3)
    {
        var frame = new byte[20 + ip.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ip[0] >> 4) == 6 ? EtherType.Ipv6 : EtherType.Ipv4);
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(4), ifIndex);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(8), 1);   // ARPHRD_ETHER
        frame[10] = 4;                                               // PACKET_OUTGOING
        frame[11] = 6;
        MacA.CopyTo(frame, 12);
        ip.CopyTo(frame, 20);
        return frame;
    }
}
