using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer;

/// <summary>
/// The packets that end a client's connection to a service whose backend is gone, so the client
/// fails at once instead of hanging until its own timeout: a TCP RST from VIP:port (sequence number
/// = the client's last acknowledgment, the one value RFC 5961 makes a RST acceptable with), or for
/// UDP an ICMP port unreachable (ICMPv4 3/3, ICMPv6 1/4, as for a VIP without backends) from the
/// VIP quoting the client's datagram header, which a connected UDP socket reports as
/// ECONNREFUSED. The packets look exactly as if the service itself had answered: the client
/// never sees a backend address.
/// </summary>
public static class ServiceTeardown
{
    /// <summary>Bytes a teardown packet needs at most (IPv6 + ICMPv6 + quoted IPv6 + UDP).</summary>
    public const int MaxLength = 40 + 8 + 40 + 8;

    /// <summary>
    /// Writes into <paramref name="destination"/> the packet that ends <paramref name="flow"/>:
    /// a RST when it is TCP and <paramref name="clientAck"/> is known, an ICMP unreachable when it is
    /// UDP. Returns the packet length, or 0 when there is nothing to send (a TCP flow whose client
    /// never acknowledged anything: its next SYN goes to a live backend).
    /// </summary>
    public static int Write(in CtNat flow, uint? clientAck, Span<byte> destination)
    {
        if (destination.Length < MaxLength || !flow.IsTranslated)
        {
            return 0;
        }
        bool v6 = flow.ClientAddress.IsV6;
        int ipHeader = v6 ? 40 : 20;
        if (flow.Protocol == IpProtocol.Tcp)
        {
            if (clientAck is not { } seq)
            {
                return 0;
            }
            var packet = destination[..(ipHeader + 20)];
            packet.Clear();
            WriteIpHeader(packet, v6, IpProtocol.Tcp, flow.ServiceAddress, flow.ClientAddress);
            var tcp = packet[ipHeader..];
            BinaryPrimitives.WriteUInt16BigEndian(tcp, flow.ServicePort);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], flow.ClientPort);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], seq);
            tcp[12] = 5 << 4;            // data offset: 5 words
            tcp[13] = TcpFlag.Rst;
            TransportChecksum.TryFill(packet);
            return packet.Length;
        }
        if (flow.Protocol == IpProtocol.Udp)
        {
            int quoted = ipHeader + 8;
            var packet = destination[..(ipHeader + 8 + quoted)];
            packet.Clear();
            WriteIpHeader(packet, v6, v6 ? IpProtocol.Icmpv6 : IpProtocol.Icmp, flow.ServiceAddress, flow.ClientAddress);
            var icmp = packet[ipHeader..];
            // Destination unreachable, port unreachable: the code Linux reports to a connected UDP
            // socket as ECONNREFUSED (host/address unreachable are soft errors it keeps to itself).
            icmp[0] = v6 ? (byte)1 : (byte)3;
            icmp[1] = v6 ? (byte)4 : (byte)3;
            // The quote: the client's datagram to the VIP as it left the client.
            var quote = icmp[8..];
            WriteIpHeader(quote, v6, IpProtocol.Udp, flow.ClientAddress, flow.ServiceAddress);
            BinaryPrimitives.WriteUInt16BigEndian(quote[ipHeader..], flow.ClientPort);
            BinaryPrimitives.WriteUInt16BigEndian(quote[(ipHeader + 2)..], flow.ServicePort);
            BinaryPrimitives.WriteUInt16BigEndian(quote[(ipHeader + 4)..], 8);
            TransportChecksum.TryFill(packet);
            return packet.Length;
        }
        return 0;
    }

    /// <summary>An IP header for a packet that fills <paramref name="packet"/> (lengths from its size).</summary>
    private static void WriteIpHeader(Span<byte> packet, bool v6, byte protocol, IpAddress source, IpAddress destination)
    {
        if (v6)
        {
            packet[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(packet[4..], (ushort)(packet.Length - 40));
            packet[6] = protocol;
            packet[7] = 64;
            source.WriteBytes(packet[8..]);
            destination.WriteBytes(packet[24..]);
            return;
        }
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet[2..], (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = protocol;
        source.WriteBytes(packet[12..]);
        destination.WriteBytes(packet[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(packet[10..], InternetChecksum.Compute(packet[..20]));
    }
}
