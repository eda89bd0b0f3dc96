using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.LoadBalancer;

/// <summary>
/// Rewrites a service flow's address and port in place: DNAT (VIP:port -> backend) on the way
/// out, reverse NAT (backend -> VIP:port as the source) on replies. Checksums are updated
/// incrementally (RFC 1624 eq. 3) rather than recomputed, so the cost does not grow with the
/// payload:
/// <code>
///   IPv4 header checksum  covers the addresses          -> update for the 32-bit address
///   TCP / UDP checksum    covers pseudo-header + ports   -> update for the address words and port
///   IPv6                  no header checksum; TCP/UDP pseudo-header has the 128-bit address
/// </code>
/// UDP over IPv4 with checksum 0 ("none") stays 0; an updated UDP checksum of 0 is sent as
/// 0xFFFF (RFC 768). With a partial checksum (TUN offload, CHECKSUM_PARTIAL) the field holds the
/// uncomplemented pseudo-header sum: only the address words are added in, ports are not covered.
/// The address family never changes (a VIP's backends have its family). Never throws on packet
/// content: returns false if the layout does not describe a TCP/UDP packet of that family.
/// </summary>
public static class ServiceNat
{
    /// <summary>DNAT: destination becomes <paramref name="address"/>:<paramref name="port"/>.</summary>
    public static bool RewriteDestination(Span<byte> packet, in PacketLayout layout, IpAddress address, ushort port, bool partialChecksum = false) =>
        Rewrite(packet, in layout, address, port, destination: true, partialChecksum);

    /// <summary>Reverse NAT: source becomes <paramref name="address"/>:<paramref name="port"/>.</summary>
    public static bool RewriteSource(Span<byte> packet, in PacketLayout layout, IpAddress address, ushort port, bool partialChecksum = false) =>
        Rewrite(packet, in layout, address, port, destination: false, partialChecksum);

    private static bool Rewrite(Span<byte> packet, in PacketLayout layout, IpAddress address, ushort port, bool destination, bool partialChecksum)
    {
        int n = layout.NetworkOffset;
        int t = layout.TransportOffset;
        if (n < 0 || t < 0 || t + 8 > packet.Length || n + 20 > packet.Length)
        {
            return false;
        }
        int version = packet[n] >> 4;
        if (version != (address.IsV6 ? 6 : 4))
        {
            return false;
        }
        byte protocol = version == 4 ? packet[n + 9] : ProtocolAt(packet, n, t);
        int csumOffset = protocol switch
        {
            IpProtocol.Tcp => t + 16,
            IpProtocol.Udp => t + 6,
            _ => -1,
        };
        if (csumOffset < 0 || csumOffset + 2 > packet.Length)
        {
            return false;
        }
        Span<byte> csumField = packet.Slice(csumOffset, 2);
        ushort l4 = BinaryPrimitives.ReadUInt16BigEndian(csumField);
        bool udpNoChecksum = protocol == IpProtocol.Udp && version == 4 && l4 == 0 && !partialChecksum;
        // Partial: field = fold(pseudo-header sum) uncomplemented; updating ~field is the same arithmetic.
        ushort work = partialChecksum ? (ushort)~l4 : l4;

        if (version == 4)
        {
            int at = n + (destination ? 16 : 12);
            uint oldAddr = BinaryPrimitives.ReadUInt32BigEndian(packet.Slice(at));
            uint newAddr = address.V4;
            BinaryPrimitives.WriteUInt32BigEndian(packet.Slice(at), newAddr);
            ushort ipCsum = BinaryPrimitives.ReadUInt16BigEndian(packet.Slice(n + 10));
            BinaryPrimitives.WriteUInt16BigEndian(packet.Slice(n + 10), InternetChecksum.Update(ipCsum, oldAddr, newAddr));
            work = InternetChecksum.Update(work, oldAddr, newAddr);
        }
        else
        {
            if (n + 40 > packet.Length)
            {
                return false;
            }
            Span<byte> field = packet.Slice(n + (destination ? 24 : 8), 16);
            Span<byte> newBytes = stackalloc byte[16];
            address.WriteBytes(newBytes);
            work = InternetChecksum.Update(work, field, newBytes);
            newBytes.CopyTo(field);
        }

        Span<byte> portField = packet.Slice(t + (destination ? 2 : 0), 2);
        ushort oldPort = BinaryPrimitives.ReadUInt16BigEndian(portField);
        BinaryPrimitives.WriteUInt16BigEndian(portField, port);
        if (!partialChecksum)
        {
            work = InternetChecksum.Update(work, oldPort, port);
        }

        if (udpNoChecksum)
        {
            return true;
        }
        ushort result = partialChecksum ? (ushort)~work : work;
        if (protocol == IpProtocol.Udp && result == 0 && !partialChecksum)
        {
            result = 0xFFFF;
        }
        BinaryPrimitives.WriteUInt16BigEndian(csumField, result);
        return true;
    }

    /// <summary>The IPv6 upper-layer protocol: the next-header byte of the header just before L4.</summary>
    private static byte ProtocolAt(ReadOnlySpan<byte> packet, int n, int t)
    {
        if (t == n + 40)
        {
            return packet[n + 6];
        }
        // Walk the extension headers to find the one ending at t (the parser already validated them).
        byte next = packet[n + 6];
        int at = n + 40;
        while (at < t && at + 2 <= packet.Length)
        {
            byte following = packet[at];
            int length = next == IpProtocol.Fragment ? 8 : next == IpProtocol.Ah ? (packet[at + 1] + 2) * 4 : (packet[at + 1] + 1) * 8;
            next = following;
            at += length;
        }
        return at == t ? next : (byte)0;
    }
}
