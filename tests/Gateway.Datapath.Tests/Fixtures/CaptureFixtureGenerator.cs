using Gateway.Datapath;

namespace Gateway.Datapath.Tests;

/// <summary>
/// The generator of the synthetic captures in fixtures/captures/synthetic-*.pcap. The files are
/// checked in; <see cref="FixtureGeneratorTests"/> regenerates them into a temporary directory
/// and requires byte equality, and rewrites the checked-in copies when GATEWAY_WRITE_FIXTURES=1:
///   GATEWAY_WRITE_FIXTURES=1 dotnet test tests/Gateway.Datapath.Tests -c Release --filter FixtureGenerator
/// </summary>
public static class CaptureFixtureGenerator
{
    private static readonly DateTime Start = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    public static readonly string[] FileNames =
    [
        "synthetic-wireguard.pcap",
        "synthetic-vxlan-plaintext.pcap",
        "synthetic-plain-tcp-udp.pcap",
        "synthetic-raw-ip-wireguard.pcap",
        "synthetic-sll2-mixed.pcap",
        "synthetic-vxlan-custom-port.pcap",
    ];

    public static void WriteAll(string directory)
    {
        Directory.CreateDirectory(directory);
        Write(Path.Combine(directory, FileNames[0]), LinkType.Ethernet, WireGuardEthernet());
        Write(Path.Combine(directory, FileNames[1]), LinkType.Ethernet, VxlanPlaintext());
        Write(Path.Combine(directory, FileNames[2]), LinkType.Ethernet, PlainTcpUdp());
        Write(Path.Combine(directory, FileNames[3]), LinkType.Raw, RawIpWireGuard());
        Write(Path.Combine(directory, FileNames[4]), LinkType.LinuxSll2, Sll2Mixed());
        Write(Path.Combine(directory, FileNames[5]), LinkType.Ethernet, VxlanCustomPort());
    }

    private static void Write(string path, LinkType linkType, IEnumerable<byte[]> frames)
    {
        using var writer = new CaptureFileWriter(path, linkType);
        int i = 0;
        foreach (byte[] frame in frames)
        {
            writer.Write(frame, Start.AddMilliseconds(i++ * 7));
        }
    }

    private static readonly uint NodeA = PacketFactory.V4("192.168.50.1");
    private static readonly uint NodeB = PacketFactory.V4("192.168.50.2");
    private static readonly uint PodA = PacketFactory.V4("10.0.1.5");
    private static readonly uint PodB = PacketFactory.V4("10.0.2.7");

    private static byte[] UdpV4(uint src, uint dst, ushort sport, ushort dport, byte[] payload, ushort id = 1) =>
        PacketFactory.Ipv4(src, dst, IpProtocol.Udp, PacketFactory.Udp(sport, dport, payload), id);

    /// <summary>Cilium-style node-to-node WireGuard on 51871: handshake, cookie, transport,
    /// an IPv4-fragmented large transport message, an ICMP error quoting a WireGuard datagram
    /// and ARP. Expected: ENCRYPTED.</summary>
    private static IEnumerable<byte[]> WireGuardEthernet()
    {
        var r = new Random(1);
        yield return PacketFactory.Arp(NodeA, NodeB);
        yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.HandshakeInitiation, sender: 0x11111111)));
        yield return PacketFactory.Ethernet(UdpV4(NodeB, NodeA, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.CookieReply, receiver: 0x11111111)));
        yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.HandshakeInitiation, sender: 0x11111112)));
        yield return PacketFactory.Ethernet(UdpV4(NodeB, NodeA, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.HandshakeResponse, sender: 0x22222222, receiver: 0x11111112)));
        for (ulong c = 0; c < 4; c++)
        {
            yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 0x22222222, counter: c, plaintextLength: 84)));
            yield return PacketFactory.Ethernet(UdpV4(NodeB, NodeA, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 0x11111112, counter: c, plaintextLength: c == 3 ? 0 : 84)));
        }
        // A 2000-byte transport message split into two IPv4 fragments (DF clear, MTU 1500; UDP
        // checksum 0 = none, allowed over IPv4).
        byte[] big = PacketFactory.Udp(51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 0x22222222, counter: 4, plaintextLength: 1960));
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(NodeA, NodeB, IpProtocol.Udp, big[..1480], id: 77, moreFragments: true));
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(NodeA, NodeB, IpProtocol.Udp, big[1480..], id: 77, fragmentOffset: 1480 / 8));
        // Node B's kernel complains about a datagram to a closed port: quotes WireGuard bytes.
        byte[] stray = UdpV4(NodeA, NodeB, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 0x22222222, counter: 5, plaintextLength: 16));
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(NodeB, NodeA, IpProtocol.Icmp, PacketFactory.IcmpPortUnreachable(stray)));
    }

    /// <summary>VXLAN (8472) and Geneve (6081) between nodes carrying pod traffic in plaintext,
    /// with no WireGuard: LEAK plus the tunnel-interface hint.</summary>
    private static IEnumerable<byte[]> VxlanPlaintext()
    {
        byte[] innerArp = PacketFactory.Arp(PodA, PodB);
        yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 40001, 8472, PacketFactory.Vxlan(42, innerArp)));
        byte[] innerDns = PacketFactory.Ethernet(UdpV4(PodA, PodB, 53000, 53, PacketFactory.Dns(0x1a2b)));
        yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 40002, 8472, PacketFactory.Vxlan(42, innerDns)));
        byte[] innerSyn = PacketFactory.Ethernet(PacketFactory.Ipv4(PodA, PodB, IpProtocol.Tcp, PacketFactory.Tcp(41000, 80, TcpFlags.Syn, [])));
        yield return PacketFactory.Ethernet(UdpV4(NodeA, NodeB, 40003, 4789, PacketFactory.Vxlan(7, innerSyn)));
        byte[] innerPing = PacketFactory.Ipv4(PodB, PodA, IpProtocol.Icmp, PacketFactory.IcmpEcho(false, 0x4242, 1));
        yield return PacketFactory.Ethernet(UdpV4(NodeB, NodeA, 40004, 6081, PacketFactory.Geneve(300, EtherType.Ipv4, innerPing, optionBytes: 8)));
    }

    /// <summary>Pod-to-pod TCP and UDP without any tunnel (one VLAN-tagged, one IPv6 ULA pair),
    /// plus traffic to a public address: LEAK, no hint.</summary>
    private static IEnumerable<byte[]> PlainTcpUdp()
    {
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(PodA, PodB, IpProtocol.Tcp, PacketFactory.Tcp(41000, 8080, TcpFlags.Syn, [])), vlan: 100);
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(PodB, PodA, IpProtocol.Tcp, PacketFactory.Tcp(8080, 41000, TcpFlags.Syn | TcpFlags.Ack, [])), vlan: 100);
        yield return PacketFactory.Ethernet(UdpV4(PodA, PodB, 53001, 53, PacketFactory.Dns(7)));
        UInt128 ulaA = IpAddress.Parse("fd00:10::5").V6, ulaB = IpAddress.Parse("fd00:10::7").V6;
        yield return PacketFactory.Ethernet(PacketFactory.Ipv6(ulaA, ulaB, IpProtocol.Udp, PacketFactory.Udp(5000, 6000, [1, 2, 3, 4])));
        yield return PacketFactory.Ethernet(PacketFactory.Ipv4(PodA, PacketFactory.V4("198.51.100.9"), IpProtocol.Tcp, PacketFactory.Tcp(41001, 443, TcpFlags.Syn, [])));
    }

    /// <summary>WireGuard over an IPv6 ULA underlay in a raw-IP capture (a TUN-like link): ENCRYPTED.</summary>
    private static IEnumerable<byte[]> RawIpWireGuard()
    {
        var r = new Random(3);
        UInt128 a = IpAddress.Parse("fd00:1::1").V6, b = IpAddress.Parse("fd00:1::2").V6;
        yield return PacketFactory.Ipv6(a, b, IpProtocol.Udp, PacketFactory.Udp(51820, 51820, PacketFactory.WireGuard(r, WireGuardMessageType.HandshakeInitiation, sender: 7)));
        yield return PacketFactory.Ipv6(b, a, IpProtocol.Udp, PacketFactory.Udp(51820, 51820, PacketFactory.WireGuard(r, WireGuardMessageType.HandshakeResponse, sender: 8, receiver: 7)));
        for (ulong c = 0; c < 3; c++)
        {
            yield return PacketFactory.Ipv6(a, b, IpProtocol.Udp, PacketFactory.Udp(51820, 51820, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 8, counter: c, plaintextLength: 100)));
        }
    }

    /// <summary>A `tcpdump -i any` (SLL2) capture with WireGuard and one plaintext pod datagram: LEAK.</summary>
    private static IEnumerable<byte[]> Sll2Mixed()
    {
        var r = new Random(4);
        yield return PacketFactory.Sll2(UdpV4(NodeA, NodeB, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 9, counter: 0, plaintextLength: 60)));
        yield return PacketFactory.Sll2(UdpV4(PodA, PodB, 40000, 8080, [0x48, 0x49]));
        yield return PacketFactory.Sll2(UdpV4(NodeB, NodeA, 51871, 51871, PacketFactory.WireGuard(r, WireGuardMessageType.TransportData, receiver: 10, counter: 0, plaintextLength: 0)));
    }

    /// <summary>VXLAN on a non-standard port (9999) between public-range underlay addresses:
    /// only `--tunnel-port 9999` reveals the plaintext pod traffic inside.</summary>
    private static IEnumerable<byte[]> VxlanCustomPort()
    {
        uint a = PacketFactory.V4("203.0.113.1"), b = PacketFactory.V4("203.0.113.2");
        byte[] inner = PacketFactory.Ethernet(UdpV4(PodA, PodB, 53002, 53, PacketFactory.Dns(9)));
        yield return PacketFactory.Ethernet(UdpV4(a, b, 40010, 9999, PacketFactory.Vxlan(77, inner)));
    }
}
