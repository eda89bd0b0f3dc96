using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Gateway.Datapath;

/// <summary>Where the layers of a parsed packet are, as offsets from the start of the frame.</summary>
public struct PacketLayout
{
    public ushort EtherType;
    public byte VlanCount;
    public ushort OuterVlanId;
    public ushort InnerVlanId;
    /// <summary>Offset of the IP header.</summary>
    public int NetworkOffset;
    /// <summary>Offset just past the IP packet (network offset + total length): link padding starts here.</summary>
    public int NetworkEnd;
    /// <summary>Offset of the L4 header; -1 for later fragments (no L4 header).</summary>
    public int TransportOffset;
    /// <summary>Offset of the L4 payload (UDP/TCP data, ICMP body after 8 bytes); -1 if none.</summary>
    public int PayloadOffset;
    /// <summary>Bytes of L4 payload present in this packet.</summary>
    public int PayloadLength;
    /// <summary>UDP length field (whole datagram, also inside a first fragment); 0 for other protocols.</summary>
    public int UdpDatagramLength;
    /// <summary>IPv4 identification or IPv6 fragment identification (for reassembly keys).</summary>
    public uint FragmentId;
}

/// <summary>
/// One-pass parse of a packet to its <see cref="FlowKey"/>: link layer (+VLANs), IPv4 or IPv6
/// (+extension headers, fragments), then the first bytes of TCP/UDP/SCTP/ICMP. Never throws on
/// packet content, never reads outside the span, allocates nothing; every failure is a
/// <see cref="ParseStatus"/> drop reason. Length fields are cross-checked: an IP total length
/// beyond the bytes present, a UDP length beyond the IP payload or a TCP data offset beyond the
/// segment are rejected rather than trusted.
/// </summary>
// Locals are always assigned before use here, so the JIT's zeroing of them is per-packet waste.
// (Class-scoped on purpose: other datapath code relies on zeroed stackalloc.)
[SkipLocalsInit]
public static class FlowParser
{
    /// <summary>Parses a frame of the given link type.</summary>
    public static ParseStatus Parse(LinkType linkType, ReadOnlySpan<byte> frame, out FlowKey key)
    {
        return Parse(linkType, frame, out key, out _);
    }

    /// <summary>Parses a frame of the given link type and reports where its layers are.</summary>
    public static ParseStatus Parse(LinkType linkType, ReadOnlySpan<byte> frame, out FlowKey key, out PacketLayout layout)
    {
        key = default;
        layout = default;
        // Fast path: untagged Ethernet II carrying IP, the overwhelmingly common frame.
        if (linkType == LinkType.Ethernet && frame.Length >= LinkLayer.EthernetHeaderLength)
        {
            ushort etherType = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(12));
            if (etherType is EtherType.Ipv4 or EtherType.Ipv6)
            {
                layout.EtherType = etherType;
                return ParseNetwork(frame, LinkLayer.EthernetHeaderLength, etherType == EtherType.Ipv6, ref key, ref layout);
            }
        }
        ParseStatus status;
        LinkLayerInfo link;
        if (linkType == LinkType.Ethernet)
        {
            status = LinkLayer.TryReadEthernet(frame, out link);
        }
        else
        {
            status = LinkLayer.TryRead(linkType, frame, out link);
        }
        layout.EtherType = link.EtherType;
        layout.VlanCount = link.VlanCount;
        layout.OuterVlanId = link.OuterVlanId;
        layout.InnerVlanId = link.InnerVlanId;
        if (status != ParseStatus.Ok)
        {
            return status;
        }
        return ParseNetwork(frame, link.NetworkOffset, link.EtherType == EtherType.Ipv6, ref key, ref layout);
    }

    /// <summary>Parses an Ethernet II frame (the common case, without the link-type switch).</summary>
    public static ParseStatus ParseEthernet(ReadOnlySpan<byte> frame, out FlowKey key)
    {
        return Parse(LinkType.Ethernet, frame, out key, out _);
    }

    /// <summary>Parses a raw IP packet (TUN device, LINKTYPE_RAW); the version nibble decides.</summary>
    public static ParseStatus ParseIp(ReadOnlySpan<byte> packet, out FlowKey key)
    {
        return ParseIp(packet, out key, out _);
    }

    /// <summary>Parses a raw IP packet and reports where its layers are.</summary>
    public static ParseStatus ParseIp(ReadOnlySpan<byte> packet, out FlowKey key, out PacketLayout layout)
    {
        key = default;
        layout = default;
        if (packet.IsEmpty)
        {
            return ParseStatus.Truncated;
        }
        int version = packet[0] >> 4;
        if (version != 4 && version != 6)
        {
            return ParseStatus.BadVersion;
        }
        layout.EtherType = version == 6 ? EtherType.Ipv6 : EtherType.Ipv4;
        return ParseNetwork(packet, 0, version == 6, ref key, ref layout);
    }

    /// <summary>
    /// Parses a VXLAN datagram in one pass: the outer packet, the VXLAN header and the inner
    /// Ethernet frame. Does not look at the UDP port (the caller decides what is VXLAN);
    /// returns <see cref="ParseStatus.NotUdp"/> for an outer packet that is not an unfragmented
    /// UDP datagram, and the inner parse status otherwise.
    /// </summary>
    public static ParseStatus ParseVxlan(LinkType linkType, ReadOnlySpan<byte> frame, out FlowKey outer, out uint vni, out FlowKey inner)
    {
        vni = 0;
        inner = default;
        ParseStatus status = Parse(linkType, frame, out outer, out PacketLayout layout);
        if (status != ParseStatus.Ok)
        {
            return status;
        }
        if (outer.Protocol != IpProtocol.Udp || outer.Fragment != FragmentState.None)
        {
            return ParseStatus.NotUdp;
        }
        // Inline of ParseVxlanPayload without the inner layout it would compute and shift.
        ReadOnlySpan<byte> payload = frame.Slice(layout.PayloadOffset, layout.PayloadLength);
        status = Vxlan.TryRead(payload, out vni);
        if (status != ParseStatus.Ok)
        {
            return status;
        }
        return Parse(LinkType.Ethernet, payload.Slice(Vxlan.HeaderLength), out inner, out _);
    }

    /// <summary>Parses the VXLAN header and inner Ethernet frame of a UDP payload. The inner
    /// layout's offsets are relative to the start of <paramref name="udpPayload"/>.</summary>
    public static ParseStatus ParseVxlanPayload(ReadOnlySpan<byte> udpPayload, out uint vni, out FlowKey inner, out PacketLayout innerLayout)
    {
        inner = default;
        innerLayout = default;
        ParseStatus status = Vxlan.TryRead(udpPayload, out vni);
        if (status != ParseStatus.Ok)
        {
            return status;
        }
        status = Parse(LinkType.Ethernet, udpPayload.Slice(Vxlan.HeaderLength), out inner, out innerLayout);
        Shift(ref innerLayout, Vxlan.HeaderLength);
        return status;
    }

    /// <summary>Parses the Geneve header and inner packet (Ethernet, IPv4 or IPv6 by protocol type)
    /// of a UDP payload. Inner layout offsets are relative to <paramref name="udpPayload"/>.</summary>
    public static ParseStatus ParseGenevePayload(ReadOnlySpan<byte> udpPayload, out uint vni, out FlowKey inner, out PacketLayout innerLayout)
    {
        inner = default;
        innerLayout = default;
        vni = 0;
        ParseStatus status = GeneveHeader.TryRead(udpPayload, out GeneveHeader header);
        if (status != ParseStatus.Ok)
        {
            return status;
        }
        vni = header.Vni;
        ReadOnlySpan<byte> rest = udpPayload.Slice(header.HeaderLength);
        switch (header.ProtocolType)
        {
            case EtherType.TransparentEthernetBridging:
                status = Parse(LinkType.Ethernet, rest, out inner, out innerLayout);
                break;
            case EtherType.Ipv4 or EtherType.Ipv6:
                status = ParseIp(rest, out inner, out innerLayout);
                break;
            default:
                return ParseStatus.BadGeneveHeader;
        }
        Shift(ref innerLayout, header.HeaderLength);
        return status;
    }

    private static void Shift(ref PacketLayout layout, int by)
    {
        layout.NetworkOffset += by;
        layout.NetworkEnd += by;
        if (layout.TransportOffset >= 0) layout.TransportOffset += by;
        if (layout.PayloadOffset >= 0) layout.PayloadOffset += by;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ParseStatus ParseNetwork(ReadOnlySpan<byte> frame, int offset, bool isV6, ref FlowKey key, ref PacketLayout layout)
    {
        layout.NetworkOffset = offset;
        layout.TransportOffset = -1;
        layout.PayloadOffset = -1;
        return isV6 ? ParseIpv6(frame, offset, ref key, ref layout) : ParseIpv4(frame, offset, ref key, ref layout);
    }

    private static ParseStatus ParseIpv4(ReadOnlySpan<byte> frame, int offset, ref FlowKey key, ref PacketLayout layout)
    {
        ReadOnlySpan<byte> ip = frame.Slice(offset);
        if (ip.Length < Ipv4Header.MinLength)
        {
            return ParseStatus.Truncated;
        }
        byte vihl = ip[0];
        if (vihl >> 4 != 4)
        {
            return ParseStatus.BadVersion;
        }
        int hl = (vihl & 0x0F) << 2;
        if (hl < Ipv4Header.MinLength)
        {
            return ParseStatus.BadHeaderLength;
        }
        if (hl > ip.Length)
        {
            return ParseStatus.Truncated;
        }
        int total = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(2));
        if (total < hl)
        {
            return total < Ipv4Header.MinLength ? ParseStatus.BadTotalLength : ParseStatus.BadHeaderLength;
        }
        if (total > ip.Length)
        {
            return ParseStatus.BadTotalLength;
        }
        key.Source = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(12)));
        key.Destination = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(ip.Slice(16)));
        key.Protocol = ip[9];
        layout.NetworkEnd = offset + total;
        layout.FragmentId = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(4));
        int frag = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(6));
        if ((frag & 0x1FFF) != 0)
        {
            key.Fragment = FragmentState.Later;
            return ParseStatus.Ok;
        }
        bool first = (frag & 0x2000) != 0;
        key.Fragment = first ? FragmentState.First : FragmentState.None;
        return ParseTransport(ip.Slice(hl, total - hl), offset + hl, false, first, ref key, ref layout);
    }

    private static ParseStatus ParseIpv6(ReadOnlySpan<byte> frame, int offset, ref FlowKey key, ref PacketLayout layout)
    {
        ReadOnlySpan<byte> ip = frame.Slice(offset);
        if (ip.Length < Ipv6Header.Length)
        {
            return ParseStatus.Truncated;
        }
        if (ip[0] >> 4 != 6)
        {
            return ParseStatus.BadVersion;
        }
        int payloadLength = BinaryPrimitives.ReadUInt16BigEndian(ip.Slice(4));
        if (Ipv6Header.Length + payloadLength > ip.Length)
        {
            return ParseStatus.BadTotalLength;
        }
        key.Source = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip.Slice(8)));
        key.Destination = IpAddress.FromV6(BinaryPrimitives.ReadUInt128BigEndian(ip.Slice(24)));
        layout.NetworkEnd = offset + Ipv6Header.Length + payloadLength;
        ReadOnlySpan<byte> payload = ip.Slice(Ipv6Header.Length, payloadLength);
        byte next = ip[6];
        int l4 = 0;
        bool first = false;
        // Fast path for the common options/routing headers (no fragment, no AH): walk them here
        // without the general walker's bookkeeping.
        int count = 0;
        while (next is IpProtocol.HopByHop or IpProtocol.DestinationOptions or IpProtocol.Routing)
        {
            if (count == Ipv6Extensions.MaxHeaders)
            {
                return ParseStatus.TooManyExtensionHeaders;
            }
            if (next == IpProtocol.HopByHop && count != 0)
            {
                return ParseStatus.BadExtensionHeader;
            }
            if (payload.Length - l4 < 8)
            {
                return ParseStatus.Truncated;
            }
            int length = (payload[l4 + 1] + 1) << 3;
            if (length > payload.Length - l4)
            {
                return ParseStatus.Truncated;
            }
            next = payload[l4];
            l4 += length;
            count++;
        }
        if (next is IpProtocol.Fragment or IpProtocol.Ah)
        {
            // Rare: restart with the general walker over the whole chain.
            l4 = 0;
            next = ip[6];
            ParseStatus status = Ipv6Extensions.TryWalk(payload, next, out Ipv6ExtensionInfo ext);
            if (status != ParseStatus.Ok)
            {
                return status;
            }
            next = ext.Protocol;
            l4 = ext.TransportOffset;
            if (ext.IsFragment)
            {
                layout.FragmentId = ext.FragmentIdentification;
                if (ext.FragmentOffset != 0)
                {
                    key.Protocol = next;
                    key.Fragment = FragmentState.Later;
                    return ParseStatus.Ok;
                }
                // Offset 0 without M is an "atomic fragment" (RFC 6946): a whole datagram.
                first = ext.MoreFragments;
                key.Fragment = first ? FragmentState.First : FragmentState.None;
            }
        }
        key.Protocol = next;
        int l4Offset = offset + Ipv6Header.Length + l4;
        return ParseTransport(payload.Slice(l4), l4Offset, true, first, ref key, ref layout);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ParseStatus ParseTransport(ReadOnlySpan<byte> segment, int segmentOffset, bool isV6, bool firstFragment, ref FlowKey key, ref PacketLayout layout)
    {
        switch (key.Protocol)
        {
            case IpProtocol.Tcp:
            {
                if (segment.Length < TcpHeader.MinLength)
                {
                    return ParseStatus.Truncated;
                }
                uint ports = BinaryPrimitives.ReadUInt32BigEndian(segment);
                key.SourcePort = (ushort)(ports >> 16);
                key.DestinationPort = (ushort)ports;
                key.TcpFlags = segment[13];
                int doff = (segment[12] >> 4) << 2;
                if (doff < TcpHeader.MinLength)
                {
                    return ParseStatus.BadHeaderLength;
                }
                if (doff > segment.Length)
                {
                    return firstFragment ? ParseStatus.Truncated : ParseStatus.BadL4Length;
                }
                layout.TransportOffset = segmentOffset;
                layout.PayloadOffset = segmentOffset + doff;
                layout.PayloadLength = segment.Length - doff;
                return ParseStatus.Ok;
            }
            case IpProtocol.Udp:
            {
                if (segment.Length < UdpHeader.Length)
                {
                    return ParseStatus.Truncated;
                }
                uint ports = BinaryPrimitives.ReadUInt32BigEndian(segment);
                key.SourcePort = (ushort)(ports >> 16);
                key.DestinationPort = (ushort)ports;
                int ulen = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(4));
                layout.UdpDatagramLength = ulen;
                if (ulen < UdpHeader.Length)
                {
                    return ParseStatus.BadL4Length;
                }
                int present;
                if (firstFragment)
                {
                    present = Math.Min(ulen, segment.Length);
                }
                else
                {
                    if (ulen > segment.Length)
                    {
                        return ParseStatus.BadL4Length;
                    }
                    present = ulen;   // bytes past the UDP length are not part of the datagram
                }
                layout.TransportOffset = segmentOffset;
                layout.PayloadOffset = segmentOffset + UdpHeader.Length;
                layout.PayloadLength = present - UdpHeader.Length;
                return ParseStatus.Ok;
            }
            case IpProtocol.Icmp:
            case IpProtocol.Icmpv6:
            {
                if (segment.Length < IcmpHeader.MinLength)
                {
                    return ParseStatus.Truncated;
                }
                // ICMP inside the other IP version is not ICMP as far as the flow key goes.
                bool v6Icmp = key.Protocol == IpProtocol.Icmpv6;
                if (v6Icmp != isV6)
                {
                    layout.TransportOffset = segmentOffset;
                    return ParseStatus.Ok;
                }
                byte type = segment[0];
                key.IcmpType = type;
                key.IcmpCode = segment[1];
                if (v6Icmp ? IcmpHeader.V6HasIdentifier(type) : IcmpHeader.V4HasIdentifier(type))
                {
                    if (segment.Length < IcmpHeader.EchoLength)
                    {
                        return ParseStatus.Truncated;
                    }
                    key.IcmpId = BinaryPrimitives.ReadUInt16BigEndian(segment.Slice(4));
                }
                layout.TransportOffset = segmentOffset;
                int body = Math.Min(IcmpHeader.EchoLength, segment.Length);
                layout.PayloadOffset = segmentOffset + body;
                layout.PayloadLength = segment.Length - body;
                return ParseStatus.Ok;
            }
            case IpProtocol.Sctp:
            {
                // SCTP common header: ports, verification tag, checksum (12 octets).
                if (segment.Length < 12)
                {
                    return ParseStatus.Truncated;
                }
                uint ports = BinaryPrimitives.ReadUInt32BigEndian(segment);
                key.SourcePort = (ushort)(ports >> 16);
                key.DestinationPort = (ushort)ports;
                layout.TransportOffset = segmentOffset;
                layout.PayloadOffset = segmentOffset + 12;
                layout.PayloadLength = segment.Length - 12;
                return ParseStatus.Ok;
            }
            default:
                layout.TransportOffset = segmentOffset;
                layout.PayloadOffset = segmentOffset;
                layout.PayloadLength = segment.Length;
                return ParseStatus.Ok;
        }
    }
}
