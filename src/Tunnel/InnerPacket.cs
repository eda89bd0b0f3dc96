using System.Buffers.Binary;
using Gateway.Datapath;

namespace Gateway.Tunnel;

/// <summary>
/// The few fields of the tunnelled IP packet the engine needs: destination (routing outward),
/// source (allowed-IPs check inward) and the real length (to strip padding). Fixed offsets:
/// IPv4 total length at 2, source at 12, destination at 16; IPv6 payload length at 4, source at 8,
/// destination at 24. Never throws, never reads past the span.
/// </summary>
public static class InnerPacket
{
    public const int Ipv4HeaderSize = 20;
    public const int Ipv6HeaderSize = 40;

    public static bool TryGetDestination(ReadOnlySpan<byte> packet, out ReadOnlySpan<byte> destination)
    {
        destination = default;
        if (packet.IsEmpty) return false;
        switch (packet[0] >> 4)
        {
            case 4 when packet.Length >= Ipv4HeaderSize:
                destination = packet.Slice(16, 4);
                return true;
            case 6 when packet.Length >= Ipv6HeaderSize:
                destination = packet.Slice(24, 16);
                return true;
            default:
                return false;
        }
    }

    /// <summary>Source address bytes and the packet's own length (header field), which must fit in <paramref name="packet"/>.</summary>
    public static bool TryGetSource(ReadOnlySpan<byte> packet, out ReadOnlySpan<byte> source, out int length)
    {
        source = default;
        length = 0;
        if (packet.IsEmpty) return false;
        switch (packet[0] >> 4)
        {
            case 4 when packet.Length >= Ipv4HeaderSize:
            {
                int total = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
                if (total < Ipv4HeaderSize || total > packet.Length) return false;
                source = packet.Slice(12, 4);
                length = total;
                return true;
            }
            case 6 when packet.Length >= Ipv6HeaderSize:
            {
                int total = Ipv6HeaderSize + BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
                if (total > packet.Length) return false;
                source = packet.Slice(8, 16);
                length = total;
                return true;
            }
            default:
                return false;
        }
    }

    /// <summary>
    /// True when <paramref name="packet"/> is a UDP datagram from port <paramref name="sourcePort"/>
    /// to <paramref name="destination"/>: read from the TUN device with our own listen port as
    /// source and the peer's endpoint as destination, it is the engine's own WireGuard datagram
    /// that the kernel routed back into the tunnel (the peer's endpoint lies inside its own allowed
    /// IPs). Sealing it again would loop for ever; the Linux driver refuses such a route (ELOOP).
    /// Only the first fragment carries ports; later fragments end on their next pass.
    /// </summary>
    public static bool IsDatagramFromPortTo(ReadOnlySpan<byte> packet, ushort sourcePort, in IpEndpoint destination)
    {
        if (sourcePort == 0 || packet.IsEmpty) return false;
        int transport;
        ReadOnlySpan<byte> address;
        switch (packet[0] >> 4)
        {
            case 4 when packet.Length >= Ipv4HeaderSize + 8 && packet[9] == 17
                                                          && (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x1fff) == 0:
                transport = (packet[0] & 0x0f) * 4;
                address = packet.Slice(16, 4);
                break;
            case 6 when packet.Length >= Ipv6HeaderSize + 8 && packet[6] == 17:
                transport = Ipv6HeaderSize;
                address = packet.Slice(24, 16);
                break;
            default:
                return false;
        }
        return transport >= Ipv4HeaderSize && packet.Length >= transport + 8
            && BinaryPrimitives.ReadUInt16BigEndian(packet[transport..]) == sourcePort
            && BinaryPrimitives.ReadUInt16BigEndian(packet[(transport + 2)..]) == destination.Port
            && IpAddress.FromBytes(address) == destination.Address;
    }
}
