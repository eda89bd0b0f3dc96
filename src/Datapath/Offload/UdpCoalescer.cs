using System.Buffers.Binary;

namespace Gateway.Datapath.Offload;

/// <summary>
/// Software GRO for UDP (the kernel's udp_gro_receive for UDP_GRO sockets, wireguard-go's
/// udpGRO): runs of datagrams of one flow whose payloads all have the first one's size (the last
/// may be shorter, and then ends the run) are merged into one super-packet with a
/// <see cref="VirtioNetHeader"/> of type <see cref="GsoType.UdpL4"/>, which the kernel splits
/// again for the receiving socket. Only plain datagrams merge: IPv4 without options and not
/// fragmented, or IPv6 without extension headers; identical addresses, ports, TOS/traffic class,
/// TTL/hop limit and DF bit; a UDP checksum that verifies. Nothing allocates after construction.
/// </summary>
public sealed class UdpCoalescer
{
    /// <summary>Largest super-packet (an IP packet's length field).</summary>
    public const int MaxPacket = 65535;
    /// <summary>The kernel's limit on segments per UDP GSO packet (UDP_MAX_SEGMENTS).</summary>
    public const int MaxSegments = 64;

    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + MaxPacket);
    private int _length;
    private int _segments;
    private int _ipHeader;
    private int _size;     // payload of the first datagram
    private bool _closed;

    /// <summary>Datagrams currently held.</summary>
    public int Segments => _segments;

    /// <summary>Adds <paramref name="packet"/> when it continues the run; false leaves everything as it is.</summary>
    public bool TryAppend(ReadOnlySpan<byte> packet)
    {
        if (_segments == 0 || _closed || _segments == MaxSegments || !TryReadDatagram(packet, out int ipHeader))
        {
            return false;
        }
        int payload = packet.Length - ipHeader - 8;
        var held = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        if (ipHeader != _ipHeader || payload > _size || payload == 0 || _length + payload > MaxPacket || !SameFlow(held, packet, ipHeader))
        {
            return false;
        }
        packet[(ipHeader + 8)..].CopyTo(_buffer.AsSpan(VirtioNetHeader.Size + _length));
        _length += payload;
        _segments++;
        _closed = payload < _size;
        return true;
    }

    /// <summary>Starts a run with <paramref name="packet"/>; false when it cannot merge (not plain UDP).</summary>
    public bool TryStart(ReadOnlySpan<byte> packet)
    {
        _segments = 0;
        if (!TryReadDatagram(packet, out int ipHeader) || packet.Length == ipHeader + 8)
        {
            return false;
        }
        packet.CopyTo(_buffer.AsSpan(VirtioNetHeader.Size));
        _length = packet.Length;
        _ipHeader = ipHeader;
        _size = packet.Length - ipHeader - 8;
        _segments = 1;
        _closed = false;
        return true;
    }

    /// <summary>Finishes the run: the bytes to write to a TUN device with a vnet header. One
    /// datagram goes out as it came, with a zero header.</summary>
    public ReadOnlySpan<byte> Flush()
    {
        if (_segments == 0)
        {
            return ReadOnlySpan<byte>.Empty;
        }
        var packet = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        var header = _buffer.AsSpan(0, VirtioNetHeader.Size);
        if (_segments == 1)
        {
            header.Clear();
        }
        else
        {
            IpLengths.Write(packet, _length);
            int udpLength = _length - _ipHeader;
            BinaryPrimitives.WriteUInt16BigEndian(packet[(_ipHeader + 4)..], (ushort)udpLength);
            ulong pseudo = IpLengths.PseudoHeader(packet, IpProtocol.Udp, udpLength);
            BinaryPrimitives.WriteUInt16BigEndian(packet[(_ipHeader + 6)..], InternetChecksum.Fold(pseudo));
            new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, GsoType.UdpL4, ecn: false,
                (ushort)(_ipHeader + 8), (ushort)_size, (ushort)_ipHeader, 6).Write(header);
        }
        int total = VirtioNetHeader.Size + _length;
        _segments = 0;
        _length = 0;
        return _buffer.AsSpan(0, total);
    }

    private static bool TryReadDatagram(ReadOnlySpan<byte> packet, out int ipHeader)
    {
        ipHeader = 0;
        if (packet.Length < 28 || packet.Length > MaxPacket)
        {
            return false;
        }
        if (packet[0] == 0x45)
        {
            if (packet[9] != (byte)IpProtocol.Udp || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != packet.Length ||
                (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3FFF) != 0)
            {
                return false;
            }
            ipHeader = 20;
        }
        else if (packet[0] >> 4 == 6)
        {
            if (packet.Length < 48 || packet[6] != (byte)IpProtocol.Udp || BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) != packet.Length - 40)
            {
                return false;
            }
            ipHeader = 40;
        }
        else
        {
            return false;
        }
        // The UDP length must cover exactly the rest, and the checksum must be present and right
        // (the merged packet goes up with a partial checksum nobody checks again).
        return BinaryPrimitives.ReadUInt16BigEndian(packet[(ipHeader + 4)..]) == packet.Length - ipHeader &&
               BinaryPrimitives.ReadUInt16BigEndian(packet[(ipHeader + 6)..]) != 0 && TransportChecksum.Verify(packet);
    }

    private static bool SameFlow(ReadOnlySpan<byte> held, ReadOnlySpan<byte> packet, int ipHeader)
    {
        if (ipHeader == 20)
        {
            if (held[1] != packet[1] || held[6] != packet[6] || held[8] != packet[8] || !held.Slice(12, 8).SequenceEqual(packet.Slice(12, 8)))
            {
                return false;
            }
        }
        else if (!held[..4].SequenceEqual(packet[..4]) || !held.Slice(6, 34).SequenceEqual(packet.Slice(6, 34)))
        {
            return false;
        }
        return held.Slice(ipHeader, 4).SequenceEqual(packet.Slice(ipHeader, 4));
    }
}
