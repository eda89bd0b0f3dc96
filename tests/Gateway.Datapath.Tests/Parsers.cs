namespace Gateway.Datapath.Tests;

/// <summary>Hand-built packets shared by tests and checked against PacketDotNet elsewhere.</summary>
internal static class Parsers
{
    /// <summary>Ethernet / IPv6 / Destination Options (8 bytes, PadN) / UDP 5353 -> 53 with 20 payload bytes.</summary>
    public static byte[] EthernetIpv6UdpWithDestinationOptions()
    {
        byte[] udp = PacketFactory.Udp(5353, 53, new byte[20]);
        byte[] payload = new byte[8 + udp.Length];
        payload[0] = IpProtocol.Udp;   // next header
        payload[1] = 0;                // 8 bytes
        payload[2] = 1; payload[3] = 4; // PadN option with 4 bytes of padding
        udp.CopyTo(payload, 8);
        return PacketFactory.Ethernet(PacketFactory.Ipv6(IpAddress.Parse("fd00::1").V6, IpAddress.Parse("fd00::2").V6, IpProtocol.DestinationOptions, payload));
    }
}
