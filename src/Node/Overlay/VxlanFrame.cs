using System.Buffers.Binary;
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
    public static void Write(Span<byte> header, int innerLength, IpAddress source, IpAddress destination, ushort vxlanPort,
        uint vni, ushort sourcePort, ReadOnlySpan<byte> destinationMac, ReadOnlySpan<byte> sourceMac, ushort etherType)
    {
        var ip = header[..OuterIpv4Length];
        ip[0] = 0x45;
        ip[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(Overhead + innerLength));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0);         // identification (DF set)
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x4000);    // DF
        ip[8] = 64;
        ip[9] = 17;
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], source.V4);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], destination.V4);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum.Compute(ip));

        var udp = header.Slice(OuterIpv4Length, UdpLength);
        BinaryPrimitives.WriteUInt16BigEndian(udp, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[2..], vxlanPort);
        BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(UdpLength + VxlanLength + EthernetLength + innerLength));
        BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0);

        Vxlan.Write(header.Slice(OuterIpv4Length + UdpLength, VxlanLength), vni);

        var eth = header.Slice(OuterIpv4Length + UdpLength + VxlanLength, EthernetLength);
        destinationMac.CopyTo(eth);
        sourceMac.CopyTo(eth[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(eth[12..], etherType);
    }

    /// <summary>Linux's choice of VXLAN source port: a flow hash folded into 32768..60999.</summary>
    public static ushort SourcePort(in FlowKey key)
    {
        uint h = (uint)key.GetHashCode();
        h ^= h >> 16;
        return (ushort)(32768 + h % (61000 - 32768));
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
        var udp = packet[ihl..total];
        if (BinaryPrimitives.ReadUInt16BigEndian(udp[2..]) != vxlanPort)
        {
            return false;
        }
        outerSource = IpAddress.FromV4(BinaryPrimitives.ReadUInt32BigEndian(packet[12..]));
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
