using System.Buffers.Binary;

namespace Gateway.Datapath.Offload;

/// <summary>
/// Software TCP segmentation (what a NIC does for TSO): cuts a TCP super-packet handed over with
/// a <see cref="VirtioNetHeader"/> into segments of at most MSS payload bytes, each a complete
/// IPv4 or IPv6 packet with its own length, IPv4 identification and header checksum, sequence
/// number and TCP checksum. FIN and PSH stay only on the last segment, CWR only on the first,
/// as in the kernel's tcp_gso_segment. Everything works on caller-owned spans; nothing allocates.
/// </summary>
public static class TcpSegmenter
{
    /// <summary>Where a super-packet's parts are: TCP header offset, all headers' length, MSS, segments.</summary>
    public readonly record struct Layout(int TcpOffset, int HeaderLength, int Mss, int Count);

    private const byte Fin = 0x01;
    private const byte Psh = 0x08;
    private const byte Cwr = 0x80;

    /// <summary>
    /// Checks a super-packet against its header and finds where its payload starts. False for
    /// anything that is not a well-formed TCP super-packet of the announced family.
    /// </summary>
    public static bool TryGetLayout(ReadOnlySpan<byte> packet, in VirtioNetHeader header, out Layout layout)
    {
        layout = default;
        int mss = header.GsoSize;
        if (mss == 0 || packet.Length < 20)
        {
            return false;
        }
        int version = packet[0] >> 4;
        if ((header.Gso == GsoType.TcpV4 && version != 4) || (header.Gso == GsoType.TcpV6 && version != 6) ||
            header.Gso is not (GsoType.TcpV4 or GsoType.TcpV6))
        {
            return false;
        }
        int ipHeader = version == 4 ? (packet[0] & 0x0F) * 4 : 40;
        if (version == 4 && (ipHeader < 20 || packet[9] != (byte)IpProtocol.Tcp))
        {
            return false;
        }
        // The TCP header starts at csum_start (past any IPv6 extension headers).
        int tcp = header.ChecksumStart;
        if (tcp < ipHeader || tcp + 20 > packet.Length)
        {
            return false;
        }
        if (version == 6 && tcp == 40 && packet[6] != (byte)IpProtocol.Tcp)
        {
            return false;
        }
        int tcpHeader = (packet[tcp + 12] >> 4) * 4;
        int headerLength = tcp + tcpHeader;
        if (tcpHeader < 20 || headerLength >= packet.Length)
        {
            return false;
        }
        layout = new Layout(tcp, headerLength, mss, (packet.Length - headerLength + mss - 1) / mss);
        return true;
    }

    /// <summary>
    /// Writes segment <paramref name="index"/> of <paramref name="packet"/> into
    /// <paramref name="destination"/> (which needs HeaderLength + Mss bytes) and returns its length.
    /// </summary>
    public static int WriteSegment(ReadOnlySpan<byte> packet, in Layout layout, int index, Span<byte> destination)
    {
        if (index < 0 || index >= layout.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }
        int headerLength = layout.HeaderLength, mss = layout.Mss, count = layout.Count, tcp = layout.TcpOffset;
        int payloadStart = headerLength + index * mss;
        int payload = Math.Min(mss, packet.Length - payloadStart);
        int length = headerLength + payload;
        var segment = destination[..length];
        packet[..headerLength].CopyTo(segment);
        packet.Slice(payloadStart, payload).CopyTo(segment[headerLength..]);

        IpLengths.Write(segment, length, idIncrement: index);
        uint sequence = BinaryPrimitives.ReadUInt32BigEndian(packet[(tcp + 4)..]);
        BinaryPrimitives.WriteUInt32BigEndian(segment[(tcp + 4)..], sequence + (uint)(index * mss));
        byte flags = packet[tcp + 13];
        if (index != count - 1)
        {
            flags &= unchecked((byte)~(Fin | Psh));
        }
        if (index != 0)
        {
            flags &= unchecked((byte)~Cwr);
        }
        segment[tcp + 13] = flags;
        FillTcpChecksum(segment, tcp);
        return length;
    }

    /// <summary>Completes a checksum the sender left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM): the
    /// field at start + offset holds the pseudo-header sum; the sum runs from start to the end.</summary>
    public static bool TryCompleteChecksum(Span<byte> packet, int start, int offset)
    {
        if (start < 0 || offset < 0 || start + offset + 2 > packet.Length)
        {
            return false;
        }
        ushort value = InternetChecksum.Finish(InternetChecksum.Add(0, packet[start..]));
        if (value == 0 && offset == 6)
        {
            value = 0xFFFF; // UDP: 0 would mean "no checksum"
        }
        BinaryPrimitives.WriteUInt16BigEndian(packet[(start + offset)..], value);
        return true;
    }

    private static void FillTcpChecksum(Span<byte> segment, int tcp)
    {
        int tcpLength = segment.Length - tcp;
        ulong sum = IpLengths.PseudoHeader(segment, IpProtocol.Tcp, tcpLength);
        segment[tcp + 16] = 0;
        segment[tcp + 17] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(segment[(tcp + 16)..], InternetChecksum.Finish(InternetChecksum.Add(sum, segment[tcp..])));
    }
}
