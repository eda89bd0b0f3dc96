using System.Buffers.Binary;

namespace Gateway.Datapath.Offload;

/// <summary>
/// The IP-level fix-ups shared by segmentation (one super-packet cut into packets) and
/// coalescing (packets merged into a super-packet): new length fields, the IPv4 header checksum,
/// and the pseudo-header sum a transport checksum starts from.
/// </summary>
internal static class IpLengths
{
    /// <summary>Sets the IP length of <paramref name="packet"/> (IPv4 total length and header
    /// checksum, with the identification moved on by <paramref name="idIncrement"/>; IPv6 payload length).</summary>
    public static void Write(Span<byte> packet, int length, int idIncrement = 0)
    {
        if (packet[0] >> 4 == 4)
        {
            int ipHeader = (packet[0] & 0x0F) * 4;
            BinaryPrimitives.WriteUInt16BigEndian(packet[2..], (ushort)length);
            if (idIncrement != 0)
            {
                ushort id = BinaryPrimitives.ReadUInt16BigEndian(packet[4..]);
                BinaryPrimitives.WriteUInt16BigEndian(packet[4..], (ushort)(id + idIncrement));
            }
            packet[10] = 0;
            packet[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(packet[10..], InternetChecksum.Compute(packet[..ipHeader]));
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet[4..], (ushort)(length - 40));
        }
    }

    /// <summary>The pseudo-header sum of <paramref name="packet"/>'s addresses for a transport
    /// segment of <paramref name="transportLength"/> bytes.</summary>
    public static ulong PseudoHeader(ReadOnlySpan<byte> packet, byte protocol, int transportLength) =>
        packet[0] >> 4 == 4
            ? TransportChecksum.PseudoHeaderV4(BinaryPrimitives.ReadUInt32BigEndian(packet[12..]), BinaryPrimitives.ReadUInt32BigEndian(packet[16..]), protocol, transportLength)
            : TransportChecksum.PseudoHeaderV6(packet.Slice(8, 16), packet.Slice(24, 16), protocol, transportLength);
}
