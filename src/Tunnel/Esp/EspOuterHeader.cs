using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Tunnel.Esp;

/// <summary>
/// The outer IPv4 header of tunnel-mode ESP (protocol 50) between two node addresses: written in
/// front of a sealed ESP packet for captures and raw sockets with IP_HDRINCL, read off a received
/// packet to find the sender (which, with the SPI, selects the inbound SA).
/// </summary>
public static class EspOuterHeader
{
    public const int Ipv4Length = Ipv4Header.MinLength;

    /// <summary>Writes a 20-byte IPv4 header (DF, TTL 64, protocol 50, checksum) for an ESP packet of
    /// <paramref name="espLength"/> bytes.</summary>
    public static void WriteIpv4(Span<byte> header, IpAddress source, IpAddress destination, int espLength, ushort identification)
    {
        if (!source.IsV4 || !destination.IsV4)
            throw new ArgumentException("The outer IPv4 header needs IPv4 node addresses.");
        if (espLength < 0 || espLength > ushort.MaxValue - Ipv4Length)
            throw new ArgumentOutOfRangeException(nameof(espLength), "Too long for one IPv4 packet.");
        header[0] = 0x45;
        header[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)(Ipv4Length + espLength));
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], identification);
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], 0x4000); // DF
        header[8] = 64;
        header[9] = EspSecurityAssociation.IpProtocolEsp;
        BinaryPrimitives.WriteUInt32BigEndian(header[12..], source.V4);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], destination.V4);
        Ipv4Header.FillChecksum(header[..Ipv4Length]);
    }

    /// <summary>
    /// Reads an IPv4 packet carrying ESP: false for anything else (not IPv4, not protocol 50, a
    /// fragment, malformed). On success the ESP packet is packet[espOffset .. espOffset+espLength).
    /// </summary>
    public static bool TryReadIpv4(ReadOnlySpan<byte> packet, out IpAddress source, out IpAddress destination, out int espOffset, out int espLength)
    {
        source = destination = default;
        espOffset = espLength = 0;
        if (Ipv4Header.TryRead(packet, out Ipv4Header ip) != ParseStatus.Ok) return false;
        if (ip.Protocol != EspSecurityAssociation.IpProtocolEsp || ip.IsFragment) return false;
        source = IpAddress.FromV4(ip.Source);
        destination = IpAddress.FromV4(ip.Destination);
        espOffset = ip.HeaderLength;
        espLength = ip.PayloadLength;
        return true;
    }
}
