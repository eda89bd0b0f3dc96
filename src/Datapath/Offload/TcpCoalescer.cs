using System.Buffers.Binary;

namespace Gateway.Datapath.Offload;

/// <summary>
/// Software GRO for TCP (what Linux's tcp_gro_receive does, in wireguard-go's strict form): runs
/// of in-order segments of one TCP flow are merged into one super-packet with a
/// <see cref="VirtioNetHeader"/> (GSO TCPv4/TCPv6, partial checksum), so one TUN write hands the
/// kernel what would have been dozens. Only plain segments merge: IPv4 without options or IPv6
/// without extension headers, not fragmented, identical addresses, ports, TOS/traffic class,
/// TTL/hop limit, DF bit, acknowledgment number, window, TCP options and header length; flags ACK
/// (PSH allowed on the last segment, which then ends the run); each segment continuing the
/// sequence where the previous ended; all of the first segment's size except a shorter last one.
/// Segments with a wrong TCP checksum are not merged. Anything else is written on its own. Works in
/// a caller-owned buffer; nothing allocates.
/// </summary>
public sealed class TcpCoalescer
{
    /// <summary>Largest super-packet (an IP packet's length field).</summary>
    public const int MaxPacket = 65535;
    private const byte Ack = 0x10;
    private const byte Psh = 0x08;

    private readonly byte[] _buffer;
    private int _length;         // bytes of the merged packet at _buffer[VirtioNetHeader.Size..]
    private int _segments;       // segments merged so far (0 = empty)
    private int _ipHeader;       // 20 or 40
    private int _headers;        // IP + TCP header length
    private int _mss;            // payload of the first segment
    private bool _closed;        // a shorter or PSH segment ended the run

    public TcpCoalescer()
    {
        _buffer = GC.AllocateUninitializedArray<byte>(VirtioNetHeader.Size + MaxPacket);
    }

    /// <summary>Segments currently held.</summary>
    public int Segments => _segments;

    /// <summary>
    /// Adds <paramref name="packet"/> to the run when it continues it; otherwise leaves everything
    /// as it is and returns false (the caller then flushes and either starts a new run with
    /// <see cref="TryStart"/> or writes the packet on its own).
    /// </summary>
    public bool TryAppend(ReadOnlySpan<byte> packet)
    {
        if (_segments == 0 || _closed || !TryReadSegment(packet, out int ipHeader, out int headers, out byte flags))
        {
            return false;
        }
        var held = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        int payload = packet.Length - headers;
        if (ipHeader != _ipHeader || headers != _headers || payload > _mss || _length + payload > MaxPacket ||
            !SameFlowAndState(held, packet, ipHeader, headers))
        {
            return false;
        }
        uint expected = BinaryPrimitives.ReadUInt32BigEndian(held[(ipHeader + 4)..]) + (uint)(_length - _headers);
        if (BinaryPrimitives.ReadUInt32BigEndian(packet[(ipHeader + 4)..]) != expected)
        {
            return false;
        }
        packet[headers..].CopyTo(_buffer.AsSpan(VirtioNetHeader.Size + _length));
        _length += payload;
        _segments++;
        if ((flags & Psh) != 0)
        {
            held[ipHeader + 13] |= Psh;
            _closed = true;
        }
        if (payload < _mss)
        {
            _closed = true;
        }
        return true;
    }

    /// <summary>Starts a run with <paramref name="packet"/>; false (nothing held) when it cannot
    /// merge with anything (not a plain TCP data segment).</summary>
    public bool TryStart(ReadOnlySpan<byte> packet)
    {
        _segments = 0;
        if (!TryReadSegment(packet, out int ipHeader, out int headers, out byte flags) || packet.Length == headers)
        {
            return false;
        }
        packet.CopyTo(_buffer.AsSpan(VirtioNetHeader.Size));
        _length = packet.Length;
        _ipHeader = ipHeader;
        _headers = headers;
        _mss = packet.Length - headers;
        _segments = 1;
        _closed = (flags & Psh) != 0;
        return true;
    }

    /// <summary>
    /// Finishes the run: returns the bytes to write to a TUN device with a vnet header (header and
    /// packet) and empties the coalescer. A single segment goes out as it came, with a zero header.
    /// </summary>
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
            bool v4 = _ipHeader == 20;
            IpLengths.Write(packet, _length);
            // Partial checksum, as a sender with checksum offload leaves it: the pseudo-header sum.
            int tcpLength = _length - _ipHeader;
            ulong pseudo = IpLengths.PseudoHeader(packet, IpProtocol.Tcp, tcpLength);
            BinaryPrimitives.WriteUInt16BigEndian(packet[(_ipHeader + 16)..], InternetChecksum.Fold(pseudo));
            new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, v4 ? GsoType.TcpV4 : GsoType.TcpV6, ecn: false,
                (ushort)_headers, (ushort)_mss, (ushort)_ipHeader, 16).Write(header);
        }
        int total = VirtioNetHeader.Size + _length;
        _segments = 0;
        _length = 0;
        return _buffer.AsSpan(0, total);
    }

    /// <summary>A plain TCP segment: IPv4 without options (not a fragment) or IPv6 without
    /// extension headers, complete, flags ACK or ACK+PSH.</summary>
    private static bool TryReadSegment(ReadOnlySpan<byte> packet, out int ipHeader, out int headers, out byte flags)
    {
        ipHeader = headers = 0;
        flags = 0;
        if (packet.Length < 40 || packet.Length > MaxPacket)
        {
            return false;
        }
        if (packet[0] == 0x45)
        {
            if (packet[9] != (byte)IpProtocol.Tcp || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != packet.Length ||
                (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3FFF) != 0)
            {
                return false; // another protocol, padding or a fragment
            }
            ipHeader = 20;
        }
        else if (packet[0] >> 4 == 6)
        {
            if (packet.Length < 60 || packet[6] != (byte)IpProtocol.Tcp || BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) != packet.Length - 40)
            {
                return false;
            }
            ipHeader = 40;
        }
        else
        {
            return false;
        }
        int tcpHeader = (packet[ipHeader + 12] >> 4) * 4;
        headers = ipHeader + tcpHeader;
        flags = packet[ipHeader + 13];
        // Like the kernel's GRO, merge only segments whose checksum is right: the merged packet
        // goes up with a partial checksum the kernel no longer checks, and a bad segment must
        // still be dropped by the kernel, on its own, as it would be without offloads.
        return tcpHeader >= 20 && headers <= packet.Length && (flags & ~Psh) == Ack && TransportChecksum.Verify(packet);
    }

    /// <summary>Same addresses, ports, IP fields that GRO requires equal, ack, window and options.</summary>
    private static bool SameFlowAndState(ReadOnlySpan<byte> held, ReadOnlySpan<byte> packet, int ipHeader, int headers)
    {
        if (ipHeader == 20)
        {
            // TOS, DF/flags, TTL, protocol and both addresses; not length, id or checksum.
            if (held[1] != packet[1] || held[6] != packet[6] || held[8] != packet[8] || !held.Slice(12, 8).SequenceEqual(packet.Slice(12, 8)))
            {
                return false;
            }
        }
        else
        {
            // Version, traffic class, flow label, next header, hop limit and both addresses.
            if (!held[..4].SequenceEqual(packet[..4]) || !held.Slice(6, 34).SequenceEqual(packet.Slice(6, 34)))
            {
                return false;
            }
        }
        // Ports; then acknowledgment number, data offset, flags (PSH aside), window; then options.
        var a = held[ipHeader..headers];
        var b = packet[ipHeader..headers];
        return a[..4].SequenceEqual(b[..4]) && a.Slice(8, 5).SequenceEqual(b.Slice(8, 5)) &&
               (a[13] & ~Psh) == (b[13] & ~Psh) && a.Slice(14, 2).SequenceEqual(b.Slice(14, 2)) &&
               a[20..].SequenceEqual(b[20..]);
    }
}
