using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Datapath.Offload;

namespace Gateway.Node.Daemon;

/// <summary>
/// Answers a packet read from TUN that no peer routes with an ICMP "destination unreachable"
/// written back into TUN (IPv4 type 3 code 1 host unreachable, IPv6 type 1 code 3 address
/// unreachable), as the Linux driver does with <c>icmp_ndo_send(ICMP_HOST_UNREACH)</c>, so the
/// sender learns at once instead of timing out. Runs on the send path's reader thread: one
/// preallocated frame, no allocation; rate limited by a token bucket on the engine's clock; never
/// for ICMP errors, non-first fragments, or multicast, broadcast or unspecified addresses.
/// </summary>
/// <remarks>
/// The error's source is the unreachable destination itself: the TUN device's own addresses are
/// local to the host, and the kernel drops a packet arriving on an interface from one of its own
/// addresses (a martian source), while the destination routes back through the same device and so
/// passes reverse-path filtering. The quote is the original IP header and 8 bytes (IPv4, RFC 792),
/// or as much of the packet as fits in 1280 bytes (IPv6, RFC 4443).
/// </remarks>
internal sealed class HostUnreachable
{
    /// <summary>Errors per second the bucket refills, and the most it holds (the burst).</summary>
    public const int PerSecond = 10;
    public const int Burst = 10;

    private const long Interval = 1_000_000_000L / PerSecond; // ns per token
    private const int Ipv6MinMtu = 1280;

    private readonly BatchTunDevice? _device;
    private readonly byte[] _frame = new byte[VirtioNetHeader.Size + Ipv6MinMtu]; // zero vnet header in front
    private long _budget = Burst * Interval; // ns of credit; starts full
    private long _last = long.MinValue;

    /// <summary>Errors written to TUN, and errors the rate limit held back.</summary>
    public long Sent;
    public long RateLimited;

    public HostUnreachable(IBatchTunDevice tun)
    {
        // A device that can take one frame at a time (both real and in-memory ones can); its
        // single-frame write holds no state shared with the receive path's batched writes.
        _device = tun as BatchTunDevice;
    }

    /// <summary>Answers <paramref name="packet"/> (an IP packet no peer routes) at time <paramref name="now"/> (ns).</summary>
    public void Reply(ReadOnlySpan<byte> packet, long now)
    {
        if (_device is null || packet.IsEmpty)
        {
            return;
        }
        var ip = _frame.AsSpan(VirtioNetHeader.Size);
        int length = (packet[0] >> 4) switch
        {
            4 => BuildV4(packet, ip),
            6 => BuildV6(packet, ip),
            _ => 0,
        };
        if (length == 0 || !TakeToken(now))
        {
            return;
        }
        int start = _device.HasVnetHeader ? 0 : VirtioNetHeader.Size;
        if (_device.Write(_frame.AsSpan(start, VirtioNetHeader.Size - start + length)))
        {
            Interlocked.Increment(ref Sent);
        }
    }

    private bool TakeToken(long now)
    {
        const long full = Burst * Interval;
        if (_last != long.MinValue && now > _last)
        {
            _budget = Math.Min(full, _budget + (now - _last));
        }
        _last = now;
        if (_budget < Interval)
        {
            Interlocked.Increment(ref RateLimited);
            return false;
        }
        _budget -= Interval;
        return true;
    }

    // 0 when no error may be sent for the packet.
    internal static int BuildV4(ReadOnlySpan<byte> packet, Span<byte> output)
    {
        if (packet.Length < 20)
        {
            return 0;
        }
        int ihl = (packet[0] & 0x0F) << 2;
        if (ihl < 20 || ihl > packet.Length)
        {
            return 0;
        }
        if ((BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x1FFF) != 0)
        {
            return 0; // a later fragment
        }
        uint source = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
        uint destination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        if (!IsUnicast4(source) || !IsUnicast4(destination))
        {
            return 0;
        }
        if (packet[9] == 1)
        {
            // Never an error about an error (RFC 1122 3.2.2): only about queries we know.
            if (packet.Length <= ihl)
            {
                return 0;
            }
            byte type = packet[ihl];
            if (type is 3 or 4 or 5 or 11 or 12 || type > 18)
            {
                return 0;
            }
        }
        int quote = Math.Min(packet.Length, ihl + 8);
        int total = 20 + 8 + quote;
        output[..28].Clear();
        output[0] = 0x45;
        output[1] = 0xC0; // internetwork control, as the kernel's ICMP
        BinaryPrimitives.WriteUInt16BigEndian(output[2..], (ushort)total);
        output[8] = 64;
        output[9] = 1;
        packet.Slice(16, 4).CopyTo(output[12..]); // from the unreachable destination
        packet.Slice(12, 4).CopyTo(output[16..]); // to the sender
        BinaryPrimitives.WriteUInt16BigEndian(output[10..], InternetChecksum.Compute(output[..20]));
        var icmp = output[20..total];
        icmp[0] = 3;
        icmp[1] = 1;
        packet[..quote].CopyTo(icmp[8..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Compute(icmp));
        return total;
    }

    internal static int BuildV6(ReadOnlySpan<byte> packet, Span<byte> output)
    {
        if (packet.Length < 40)
        {
            return 0;
        }
        var source = packet.Slice(8, 16);
        var destination = packet.Slice(24, 16);
        if (source[0] == 0xFF || destination[0] == 0xFF || source.IndexOfAnyExcept((byte)0) < 0)
        {
            return 0; // multicast or unspecified
        }
        // Walk the extension headers to the upper layer: no error about a later fragment or an ICMPv6 error.
        byte next = packet[6];
        int offset = 40;
        for (int hops = 0; hops < 8; hops++)
        {
            if (next is 0 or 43 or 60)
            {
                if (packet.Length < offset + 8)
                {
                    return 0;
                }
                next = packet[offset];
                offset += (packet[offset + 1] + 1) * 8;
                continue;
            }
            if (next == 44)
            {
                if (packet.Length < offset + 8)
                {
                    return 0;
                }
                if ((BinaryPrimitives.ReadUInt16BigEndian(packet[(offset + 2)..]) & 0xFFF8) != 0)
                {
                    return 0; // a later fragment
                }
                next = packet[offset];
                offset += 8;
                continue;
            }
            break;
        }
        if (next == 58)
        {
            if (packet.Length <= offset || packet[offset] < 128)
            {
                return 0; // an ICMPv6 error (types 0-127), or one we cannot read
            }
        }
        int quote = Math.Min(packet.Length, Ipv6MinMtu - 48);
        int payload = 8 + quote;
        output[..48].Clear();
        output[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(output[4..], (ushort)payload);
        output[6] = 58;
        output[7] = 64;
        destination.CopyTo(output[8..]);
        source.CopyTo(output[24..]);
        var icmp = output.Slice(40, payload);
        icmp[0] = 1;
        icmp[1] = 3;
        packet[..quote].CopyTo(icmp[8..]);
        // The pseudo-header: source, destination, upper-layer length, next header.
        ulong sum = InternetChecksum.Add(0, output.Slice(8, 32));
        sum = InternetChecksum.Add(sum, (uint)payload);
        sum = InternetChecksum.Add(sum, (uint)58);
        sum = InternetChecksum.Add(sum, icmp);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], InternetChecksum.Finish(sum));
        return 40 + payload;
    }

    private static bool IsUnicast4(uint address) =>
        address != 0 && address != 0xFFFFFFFF && (address >> 28) != 0xE;
}
