using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Gateway.Datapath;

namespace Gateway.Node.Overlay;

/// <summary>
/// Builds and reads the VXLAN datagram that carries one workload packet between two nodes'
/// tunnel addresses. The 50 bytes go in the buffer's headroom in front of the packet:
/// <code>
///  0                   20        28        36                50
///  +-------------------+---------+---------+-----------------+----------------------+
///  | IPv4 (tunnel a->b)| UDP 8472| VXLAN   | Ethernet II     | workload IP packet   |
///  | proto 17, DF      | csum 0  | I, VNI  | dst, src, type  |                      |
///  +-------------------+---------+---------+-----------------+----------------------+
/// </code>
/// The VNI is the source endpoint's security identity (24 bits). The UDP source port is a hash
/// of the inner flow, as Linux does, so that ECMP in the underlay keeps a flow on one path.
/// The UDP checksum is zero, which RFC 7348 allows over IPv4.
/// </summary>
public static class VxlanFrame
{
    public const int OuterIpv4Length = 20;
    public const int UdpLength = 8;
    public const int VxlanLength = 8;
    public const int EthernetLength = 14;
    /// <summary>Everything in front of the workload packet.</summary>
    public const int Overhead = OuterIpv4Length + UdpLength + VxlanLength + EthernetLength;

    /// <summary>Locally administered MAC that Gateway nodes use: 02:47:57 ("GW") + the low
    /// three bytes of the tunnel address.</summary>
    public static void NodeMac(IpAddress tunnelAddress, Span<byte> mac)
    {
        uint v = tunnelAddress.V4;
        mac[0] = 0x02;
        mac[1] = 0x47;
        mac[2] = 0x57;
        mac[3] = (byte)(v >> 16);
        mac[4] = (byte)(v >> 8);
        mac[5] = (byte)v;
    }

    /// <summary>
    /// Writes the 50-byte header into <paramref name="header"/> (exactly <see cref="Overhead"/>
    /// bytes, directly in front of the <paramref name="innerLength"/>-byte packet).
    /// </summary>
    /// <remarks>
    /// Per packet, so written as a handful of 8-, 4- and 2-byte stores after one length check, and
    /// the IPv4 header checksum is summed from the field values (every other word of the header is
    /// a constant) instead of being read back from the buffer.
    /// </remarks>
    public static void Write(Span<byte> header, int innerLength, IpAddress source, IpAddress destination, ushort vxlanPort,
        uint vni, ushort sourcePort, ReadOnlySpan<byte> destinationMac, ReadOnlySpan<byte> sourceMac, ushort etherType)
    {
        if (header.Length < Overhead || destinationMac.Length < 6 || sourceMac.Length < 6)
        {
            throw new ArgumentException("The VXLAN header needs 50 bytes and two 6-byte MACs.");
        }
        if (vni > Vxlan.MaxVni)
        {
            throw new ArgumentOutOfRangeException(nameof(vni));
        }
        ref byte h = ref MemoryMarshal.GetReference(header);
        uint total = (ushort)(Overhead + innerLength);
        uint src = source.V4, dst = destination.V4;

        // IPv4: version/IHL 0x45, TOS 0, total length, identification 0, DF, TTL 64, UDP, checksum.
        uint sum = 0x4500u + total + 0x4000u + 0x4011u + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        StoreBigEndian(ref h, 0, 0x4500_0000_0000_4000UL | ((ulong)total << 32));
        StoreBigEndian(ref h, 8, 0x4011_0000u | (ushort)~sum);
        StoreBigEndian(ref h, 12, src);
        StoreBigEndian(ref h, 16, dst);

        // UDP: source port (flow hash), VXLAN port, length, checksum 0 (RFC 7348 over IPv4).
        uint udpLength = (ushort)(UdpLength + VxlanLength + EthernetLength + innerLength);
        StoreBigEndian(ref h, OuterIpv4Length, ((ulong)sourcePort << 48) | ((ulong)vxlanPort << 32) | ((ulong)udpLength << 16));

        // VXLAN (RFC 7348): flags with the I bit, 24 reserved bits, VNI, 8 reserved bits.
        StoreBigEndian(ref h, OuterIpv4Length + UdpLength, ((ulong)Vxlan.FlagValidVni << 56) | ((ulong)vni << 8));

        // Ethernet II: destination, source, EtherType.
        const int eth = OuterIpv4Length + UdpLength + VxlanLength;
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref h, eth), Unsafe.ReadUnaligned<uint>(ref MemoryMarshal.GetReference(destinationMac)));
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref h, eth + 4), Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref MemoryMarshal.GetReference(destinationMac), 4)));
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref h, eth + 6), Unsafe.ReadUnaligned<uint>(ref MemoryMarshal.GetReference(sourceMac)));
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref h, eth + 10), Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref MemoryMarshal.GetReference(sourceMac), 4)));
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref h, eth + 12), BinaryPrimitives.ReverseEndianness(etherType));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBigEndian(ref byte header, int offset, ulong value) =>
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref header, offset), BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(value) : value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBigEndian(ref byte header, int offset, uint value) =>
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref header, offset), BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(value) : value);

    /// <summary>
    /// The VXLAN source port for a flow: a hash of its addresses, protocol, ports and ICMP
    /// identifier folded into Linux's range 32768..60999, so that ECMP in the underlay keeps a flow
    /// on one path. A fixed multiply-fold (the port is public on the wire anyway): a few
    /// multiplications per packet, where the flow key's general hash costs a round per field.
    /// </summary>
    public static ushort SourcePort(in FlowKey key)
    {
        ulong ports = ((ulong)key.SourcePort << 48) | ((ulong)key.DestinationPort << 32) | ((ulong)key.IcmpId << 16) | key.Protocol;
        ulong h = Fold(key.Source.Low ^ 0x9E3779B97F4A7C15UL, key.Destination.Low ^ 0xC2B2AE3D27D4EB4FUL) ^
                  Fold(key.Source.High ^ 0x165667B19E3779F9UL, key.Destination.High ^ 0x27D4EB2F165667C5UL);
        h = Fold(h ^ 0x94D049BB133111EBUL, ports ^ 0xBF58476D1CE4E5B9UL);
        return (ushort)(32768 + (((h & 0xFFFF_FFFFUL) * (61000 - 32768)) >> 32));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Fold(ulong x, ulong y)
    {
        ulong high = Math.BigMul(x, y, out ulong low);
        return high ^ low;
    }

    /// <summary>
    /// Reads an inner IPv4 packet that may be a VXLAN datagram to <paramref name="tunnelAddress"/>
    /// on <paramref name="vxlanPort"/>. Returns false when it is not one (plain traffic); when it
    /// is, gives the outer source, the VNI, and where the inner Ethernet frame is.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> packet, IpAddress tunnelAddress, ushort vxlanPort,
        out IpAddress outerSource, out uint vni, out int frameOffset, out int frameLength, out bool malformed)
    {
        outerSource = default;
        vni = 0;
        frameOffset = frameLength = 0;
        malformed = false;
        if (packet.Length < OuterIpv4Length || packet[0] >> 4 != 4)
        {
            return false;
        }
        int ihl = (packet[0] & 0x0f) * 4;
        int total = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (ihl < 20 || total < ihl + UdpLength || total > packet.Length || packet[9] != 17 ||
            BinaryPrimitives.ReadUInt32BigEndian(packet[16..]) != tunnelAddress.V4 ||
            (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3fff) != 0) // fragments are not VXLAN we accept
        {
            return false;
        }
        outerSource = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(packet[12..]));
        return TryReadUdp(packet[..total], ihl, vxlanPort, out vni, out frameOffset, out frameLength, out malformed);
    }

    /// <summary>
    /// <see cref="TryRead"/> for a packet WireGuard has just delivered: the engine parsed its IP
    /// header already (version, total length equal to the span's length, <paramref name="outerSource"/>),
    /// so only the fields it did not read are read here.
    /// </summary>
    public static bool TryReadOpened(ReadOnlySpan<byte> packet, IpAddress outerSource, IpAddress tunnelAddress, ushort vxlanPort,
        out uint vni, out int frameOffset, out int frameLength, out bool malformed)
    {
        vni = 0;
        frameOffset = frameLength = 0;
        malformed = false;
        if (!outerSource.IsV4 || packet.Length < OuterIpv4Length)
        {
            return false;
        }
        int ihl = (packet[0] & 0x0f) * 4;
        if (ihl < 20 || packet.Length < ihl + UdpLength || packet[9] != 17 ||
            BinaryPrimitives.ReadUInt32BigEndian(packet[16..]) != tunnelAddress.V4 ||
            (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3fff) != 0) // fragments are not VXLAN we accept
        {
            return false;
        }
        return TryReadUdp(packet, ihl, vxlanPort, out vni, out frameOffset, out frameLength, out malformed);
    }

    /// <summary>The UDP and VXLAN headers of an IPv4 packet (exactly the packet: no link padding)
    /// whose header is <paramref name="ihl"/> bytes and leaves room for a UDP header.</summary>
    private static bool TryReadUdp(ReadOnlySpan<byte> packet, int ihl, ushort vxlanPort, out uint vni, out int frameOffset, out int frameLength, out bool malformed)
    {
        vni = 0;
        frameOffset = frameLength = 0;
        malformed = false;
        var udp = packet[ihl..];
        if (BinaryPrimitives.ReadUInt16BigEndian(udp[2..]) != vxlanPort)
        {
            return false;
        }
        int udpLength = BinaryPrimitives.ReadUInt16BigEndian(udp[4..]);
        if (udpLength < UdpLength + VxlanLength + EthernetLength || udpLength > udp.Length ||
            Vxlan.TryRead(udp.Slice(UdpLength, udpLength - UdpLength), out vni) != ParseStatus.Ok)
        {
            malformed = true;
            return true;
        }
        frameOffset = ihl + UdpLength + VxlanLength;
        frameLength = udpLength - UdpLength - VxlanLength;
        return true;
    }
}
