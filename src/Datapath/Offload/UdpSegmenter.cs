using System.Buffers.Binary;

namespace Gateway.Datapath.Offload;

/// <summary>
/// Software UDP segmentation (USO, what the kernel's udp4_ufo/__udp_gso_segment does): cuts a
/// UDP super-packet handed over with a <see cref="VirtioNetHeader"/> of type
/// <see cref="GsoType.UdpL4"/> into datagrams of GsoSize payload bytes (the last may be
/// shorter), each a complete IPv4 or IPv6 packet with its own lengths, IPv4 identification and
/// header checksum, and UDP checksum. Works on caller-owned spans; nothing allocates.
/// </summary>
public static class UdpSegmenter
{
    /// <summary>Where a super-packet's parts are: UDP header offset, all headers' length, segment payload, segments.</summary>
    public readonly record struct Layout(int UdpOffset, int HeaderLength, int SegmentSize, int Count);

    /// <summary>Checks a super-packet against its header; false for anything malformed.</summary>
    public static bool TryGetLayout(ReadOnlySpan<byte> packet, in VirtioNetHeader header, out Layout layout)
    {
        layout = default;
        int size = header.GsoSize;
        if (header.Gso != GsoType.UdpL4 || size == 0 || packet.Length < 28)
        {
            return false;
        }
        int version = packet[0] >> 4;
        int ipHeader;
        if (version == 4)
        {
            ipHeader = (packet[0] & 0x0F) * 4;
            if (ipHeader < 20 || packet[9] != (byte)IpProtocol.Udp)
            {
                return false;
            }
        }
        else if (version == 6)
        {
            ipHeader = 40;
        }
        else
        {
            return false;
        }
        int udp = header.ChecksumStart;
        if (udp < ipHeader || udp + 8 > packet.Length || (version == 6 && udp == 40 && packet[6] != (byte)IpProtocol.Udp))
        {
            return false;
        }
        int headerLength = udp + 8;
        if (headerLength >= packet.Length)
        {
            return false;
        }
        layout = new Layout(udp, headerLength, size, (packet.Length - headerLength + size - 1) / size);
        return true;
    }

    /// <summary>Writes datagram <paramref name="index"/> into <paramref name="destination"/>
    /// (HeaderLength + SegmentSize bytes) and returns its length.</summary>
    public static int WriteSegment(ReadOnlySpan<byte> packet, in Layout layout, int index, Span<byte> destination)
    {
        if (index < 0 || index >= layout.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }
        int headerLength = layout.HeaderLength, udp = layout.UdpOffset;
        int payloadStart = headerLength + index * layout.SegmentSize;
        int payload = Math.Min(layout.SegmentSize, packet.Length - payloadStart);
        int length = headerLength + payload;
        var segment = destination[..length];
        packet[..headerLength].CopyTo(segment);
        packet.Slice(payloadStart, payload).CopyTo(segment[headerLength..]);
        IpLengths.Write(segment, length, idIncrement: index);
        int udpLength = length - udp;
        BinaryPrimitives.WriteUInt16BigEndian(segment[(udp + 4)..], (ushort)udpLength);
        ulong sum = IpLengths.PseudoHeader(segment, IpProtocol.Udp, udpLength);
        segment[udp + 6] = 0;
        segment[udp + 7] = 0;
        ushort checksum = InternetChecksum.Finish(InternetChecksum.Add(sum, segment[udp..]));
        BinaryPrimitives.WriteUInt16BigEndian(segment[(udp + 6)..], checksum == 0 ? (ushort)0xFFFF : checksum);
        return length;
    }
}
