using System.Buffers.Binary;

namespace Gateway.Datapath;

/// <summary>pcap LINKTYPE_/DLT_ values the datapath reads (tcpdump.org/linktypes.html).</summary>
public enum LinkType : ushort
{
    /// <summary>BSD loopback: 4-byte address family in host byte order, then IP.</summary>
    Null = 0,
    /// <summary>Ethernet II (with optional 802.1Q/802.1ad tags).</summary>
    Ethernet = 1,
    /// <summary>Raw IP as DLT 12 on most BSDs/libpcap builds.</summary>
    RawDlt12 = 12,
    /// <summary>Raw IP as DLT 14 (old OpenBSD).</summary>
    RawDlt14 = 14,
    /// <summary>LINKTYPE_RAW: the packet starts with the IPv4 or IPv6 header (TUN devices).</summary>
    Raw = 101,
    /// <summary>OpenBSD loopback: like Null but the family is in network byte order.</summary>
    Loop = 108,
    /// <summary>Linux cooked capture v1 (tcpdump -i any on older libpcap).</summary>
    LinuxSll = 113,
    /// <summary>LINKTYPE_IPV4: raw IPv4 only.</summary>
    Ipv4 = 228,
    /// <summary>LINKTYPE_IPV6: raw IPv6 only.</summary>
    Ipv6 = 229,
    /// <summary>Linux cooked capture v2 (tcpdump -i any on libpcap &gt;= 1.10).</summary>
    LinuxSll2 = 276,
}

/// <summary>EtherType values (IEEE 802 numbers).</summary>
public static class EtherType
{
    public const ushort Ipv4 = 0x0800;
    public const ushort Arp = 0x0806;
    public const ushort Vlan = 0x8100;       // 802.1Q C-tag
    public const ushort Ipv6 = 0x86DD;
    public const ushort QinQ = 0x88A8;       // 802.1ad S-tag
    public const ushort QinQLegacy = 0x9100; // pre-standard S-tag, still seen on switches
    public const ushort TransparentEthernetBridging = 0x6558; // Geneve/GRE carrying Ethernet
}

/// <summary>Where the network layer starts in a frame and what the link layer said about it.</summary>
public struct LinkLayerInfo
{
    /// <summary>EtherType of the network layer (after any VLAN tags); 0x0800/0x86DD for raw IP.</summary>
    public ushort EtherType;
    /// <summary>Offset of the network header from the start of the frame.</summary>
    public int NetworkOffset;
    /// <summary>Number of VLAN tags (0..2).</summary>
    public byte VlanCount;
    /// <summary>VLAN id of the outer tag (S-tag with QinQ), 0 if none.</summary>
    public ushort OuterVlanId;
    /// <summary>VLAN id of the inner tag with QinQ, 0 if none.</summary>
    public ushort InnerVlanId;
}

/// <summary>
/// Link-layer readers: Ethernet II + VLAN tags, Linux cooked SLL/SLL2, raw IP, BSD loopback.
/// All readers are total over their input: they return a status and never read past the span.
/// </summary>
public static class LinkLayer
{
    /// <summary>Length of an Ethernet II header without tags.</summary>
    public const int EthernetHeaderLength = 14;
    /// <summary>Length of one 802.1Q/802.1ad tag.</summary>
    public const int VlanTagLength = 4;
    public const int SllHeaderLength = 16;
    public const int Sll2HeaderLength = 20;
    /// <summary>Tags we walk before giving up; QinQ is two, more is a malformed or hostile frame.</summary>
    public const int MaxVlanTags = 2;

    /// <summary>Finds the network layer of <paramref name="frame"/> for <paramref name="linkType"/>.</summary>
    public static ParseStatus TryRead(LinkType linkType, ReadOnlySpan<byte> frame, out LinkLayerInfo info)
    {
        switch (linkType)
        {
            case LinkType.Ethernet:
                return TryReadEthernet(frame, out info);
            case LinkType.Raw or LinkType.RawDlt12 or LinkType.RawDlt14 or LinkType.Ipv4 or LinkType.Ipv6:
                info = default;
                return RawIp(frame, 0, ref info);
            case LinkType.Null or LinkType.Loop:
                info = default;
                // The family is host-order (Null) or network-order (Loop) and its value for IPv6
                // differs per OS (10, 24, 28, 30); the IP version nibble is the reliable signal.
                return frame.Length < 4 ? ParseStatus.Truncated : RawIp(frame, 4, ref info);
            case LinkType.LinuxSll:
                return TryReadSll(frame, out info);
            case LinkType.LinuxSll2:
                return TryReadSll2(frame, out info);
            default:
                info = default;
                return ParseStatus.UnsupportedLinkType;
        }
    }

    /*
     Ethernet II (IEEE 802.3 clause 3, DIX framing), optional 802.1ad S-tag and 802.1Q C-tag:
      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |                    Destination MAC (6 octets)                 |
     +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |                               |                               |
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+      Source MAC (6 octets)    +
     |                                                               |
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |  TPID 0x88a8/0x8100 (if tag)  | PCP |D|        VLAN ID        |
     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
     |          EtherType            |  payload ...
    */

    /// <summary>Reads an Ethernet II header and up to two VLAN tags.</summary>
    public static ParseStatus TryReadEthernet(ReadOnlySpan<byte> frame, out LinkLayerInfo info)
    {
        info = default;
        if (frame.Length < EthernetHeaderLength)
        {
            return ParseStatus.Truncated;
        }
        return WalkVlans(frame, 12, ref info);
    }

    // offset points at an EtherType/TPID field.
    private static ParseStatus WalkVlans(ReadOnlySpan<byte> frame, int offset, ref LinkLayerInfo info)
    {
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(offset));
        while (type is EtherType.Vlan or EtherType.QinQ or EtherType.QinQLegacy)
        {
            if (info.VlanCount == MaxVlanTags)
            {
                return ParseStatus.TooManyVlanTags;
            }
            if (frame.Length < offset + 2 + VlanTagLength)
            {
                return ParseStatus.Truncated;
            }
            ushort vid = (ushort)(BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(offset + 2)) & 0x0FFF);
            if (info.VlanCount == 0)
            {
                info.OuterVlanId = vid;
            }
            else
            {
                info.InnerVlanId = vid;
            }
            info.VlanCount++;
            offset += VlanTagLength;
            type = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(offset));
        }
        info.EtherType = type;
        info.NetworkOffset = offset + 2;
        return type is EtherType.Ipv4 or EtherType.Ipv6 ? ParseStatus.Ok : ParseStatus.NotIp;
    }

    /*
     Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 16 octets):
     +---------------------------+
     | Packet type (2)           |  0 = to us, 4 = sent by us, ...
     | ARPHRD_ type (2)          |
     | Link-layer address len (2)|
     | Link-layer address (8)    |
     | Protocol type (2)         |  EtherType for Ethernet-like devices
     +---------------------------+
    */

    /// <summary>Reads a Linux cooked v1 header.</summary>
    public static ParseStatus TryReadSll(ReadOnlySpan<byte> frame, out LinkLayerInfo info)
    {
        info = default;
        if (frame.Length < SllHeaderLength)
        {
            return ParseStatus.Truncated;
        }
        return WalkVlans(frame, 14, ref info);
    }

    /*
     Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 20 octets):
     +---------------------------+
     | Protocol type (2)         |  EtherType
     | Reserved (2, MBZ)         |
     | Interface index (4)       |
     | ARPHRD_ type (2)          |
     | Packet type (1)           |
     | Link-layer address len (1)|
     | Link-layer address (8)    |
     +---------------------------+
    */

    /// <summary>Reads a Linux cooked v2 header.</summary>
    public static ParseStatus TryReadSll2(ReadOnlySpan<byte> frame, out LinkLayerInfo info)
    {
        info = default;
        if (frame.Length < Sll2HeaderLength)
        {
            return ParseStatus.Truncated;
        }
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame);
        if (type is EtherType.Vlan or EtherType.QinQ or EtherType.QinQLegacy)
        {
            // Rare (the kernel normally strips tags into aux data); the tag follows the header,
            // laid out like an Ethernet tag whose TPID sits in the protocol field.
            if (frame.Length < Sll2HeaderLength + VlanTagLength)
            {
                return ParseStatus.Truncated;
            }
            info.VlanCount = 1;
            info.OuterVlanId = (ushort)(BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(Sll2HeaderLength)) & 0x0FFF);
            type = BinaryPrimitives.ReadUInt16BigEndian(frame.Slice(Sll2HeaderLength + 2));
            info.EtherType = type;
            info.NetworkOffset = Sll2HeaderLength + VlanTagLength;
        }
        else
        {
            info.EtherType = type;
            info.NetworkOffset = Sll2HeaderLength;
        }
        return type is EtherType.Ipv4 or EtherType.Ipv6 ? ParseStatus.Ok : ParseStatus.NotIp;
    }

    private static ParseStatus RawIp(ReadOnlySpan<byte> frame, int offset, ref LinkLayerInfo info)
    {
        if (frame.Length <= offset)
        {
            return ParseStatus.Truncated;
        }
        info.NetworkOffset = offset;
        switch (frame[offset] >> 4)
        {
            case 4:
                info.EtherType = EtherType.Ipv4;
                return ParseStatus.Ok;
            case 6:
                info.EtherType = EtherType.Ipv6;
                return ParseStatus.Ok;
            default:
                return ParseStatus.BadVersion;
        }
    }

    /// <summary>Writes an untagged Ethernet II header; returns 14.</summary>
    public static int WriteEthernet(Span<byte> destination, ReadOnlySpan<byte> destinationMac, ReadOnlySpan<byte> sourceMac, ushort etherType)
    {
        if (destinationMac.Length != 6 || sourceMac.Length != 6)
        {
            throw new ArgumentException("MAC addresses are 6 bytes.");
        }
        if (destination.Length < EthernetHeaderLength)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        destinationMac.CopyTo(destination);
        sourceMac.CopyTo(destination.Slice(6));
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(12), etherType);
        return EthernetHeaderLength;
    }

    /// <summary>Writes one VLAN tag (TPID + TCI) followed by nothing; the caller writes the next
    /// EtherType after it. Returns 4.</summary>
    public static int WriteVlanTag(Span<byte> destination, ushort tpid, ushort vlanId, byte priority = 0)
    {
        if (vlanId > 0x0FFF || priority > 7)
        {
            throw new ArgumentOutOfRangeException(nameof(vlanId));
        }
        if (destination.Length < VlanTagLength)
        {
            throw new ArgumentException("Destination too small.", nameof(destination));
        }
        BinaryPrimitives.WriteUInt16BigEndian(destination, tpid);
        BinaryPrimitives.WriteUInt16BigEndian(destination.Slice(2), (ushort)((priority << 13) | vlanId));
        return VlanTagLength;
    }
}
