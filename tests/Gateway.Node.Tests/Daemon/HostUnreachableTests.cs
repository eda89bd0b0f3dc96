using System.Buffers.Binary;
using System.Text.RegularExpressions;
using Gateway.Datapath;
using Gateway.Node.Daemon;

namespace Gateway.Node.Tests.Daemon;

/// <summary>The ICMP "host unreachable" a node writes back into TUN for a packet no peer routes
/// (the kernel's netns.sh "ICMP back along the right route after a peer is removed").</summary>
public class HostUnreachableTests
{
    [Fact]
    public async Task A_packet_to_a_removed_peer_is_answered_host_unreachable_from_TUN_and_the_answers_are_rate_limited()
    {
        await using var nodes = new MemoryNodes();
        nodes.Handshake();
        var ping = Echo4(MemoryNodes.AddressA, MemoryNodes.AddressB);
        nodes.TunA.InjectPacket(ping);
        Assert.Equal(ping, MemoryNodes.Take(nodes.TunB));

        Assert.True(nodes.A.Engine.RemovePeer(nodes.A.Engine.Peers.Single().PublicKey));
        nodes.TunA.InjectPacket(ping);
        var error = MemoryNodes.Take(nodes.TunA);
        AssertHostUnreachable4(error, ping, from: MemoryNodes.AddressB);

        // An address no peer ever had: the same.
        var other = Echo4(MemoryNodes.AddressA, "10.0.0.9");
        nodes.TunA.InjectPacket(other);
        AssertHostUnreachable4(MemoryNodes.Take(nodes.TunA), other, from: "10.0.0.9");

        // The bucket (10, full at start) has 8 left at this instant of the injected clock; each
        // second of it refills 10. The reader thread allocates nothing for them.
        for (int i = 0; i < 20; i++)
        {
            nodes.TunA.InjectPacket(ping);
        }
        WaitForMetric(nodes, sent: 10, limited: 12);
        Assert.Equal(8, nodes.TunA.Drain(static (_, _) => { }));
        long before = 0;
        for (int round = 1; round <= 2; round++)
        {
            before = nodes.A.DataPathAllocatedBytes;
            nodes.Clock.Advance(TimeSpan.FromSeconds(1));
            for (int i = 0; i < 20; i++)
            {
                nodes.TunA.InjectPacket(ping);
            }
            WaitForMetric(nodes, sent: 10 + 10 * round, limited: 12 + 10 * round);
            Assert.Equal(10, nodes.TunA.Drain(static (_, _) => { }));
        }
        long allocated = nodes.A.DataPathAllocatedBytes - before;
        Assert.True(allocated < 20, $"the send path allocated {allocated} bytes for 20 unroutable packets");
        Assert.Contains("gateway_drop_count_total{interface=\"mema\",reason=\"NoRoute\"} 62", nodes.A.RenderMetrics());
    }

    [Fact]
    public void An_IPv6_packet_is_answered_address_unreachable_with_the_pseudo_header_checksum()
    {
        var packet = new byte[40 + 8 + 1400];
        packet[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(packet.Length - 40));
        packet[6] = 58;
        packet[7] = 64;
        IpAddress.Parse("fd00::1").WriteBytes(packet.AsSpan(8));
        IpAddress.Parse("fd00::2").WriteBytes(packet.AsSpan(24));
        packet[40] = 128; // echo request
        var output = new byte[1280];
        int length = HostUnreachable.BuildV6(packet, output);
        Assert.Equal(1280, length); // the quote is cut to fit the minimum MTU
        Assert.Equal(0x60, output[0]);
        Assert.Equal(length - 40, BinaryPrimitives.ReadUInt16BigEndian(output.AsSpan(4)));
        Assert.Equal(58, output[6]);
        Assert.Equal(packet.AsSpan(24, 16).ToArray(), output.AsSpan(8, 16).ToArray());
        Assert.Equal(packet.AsSpan(8, 16).ToArray(), output.AsSpan(24, 16).ToArray());
        Assert.Equal(1, output[40]);
        Assert.Equal(3, output[41]);
        Assert.Equal(packet.AsSpan(0, 1280 - 48).ToArray(), output.AsSpan(48, 1280 - 48).ToArray());
        ulong sum = InternetChecksum.Add(0, output.AsSpan(8, 32));
        sum = InternetChecksum.Add(sum, (uint)(length - 40));
        sum = InternetChecksum.Add(sum, 58u);
        sum = InternetChecksum.Add(sum, output.AsSpan(40, length - 40));
        Assert.Equal(0xFFFF, InternetChecksum.Fold(sum));

        // Never about an ICMPv6 error, a later fragment, or a multicast destination.
        packet[40] = 1;
        Assert.Equal(0, HostUnreachable.BuildV6(packet, output));
        packet[40] = 128;
        packet[6] = 44;
        packet[40] = 58;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(42), 8 << 3);
        Assert.Equal(0, HostUnreachable.BuildV6(packet, output));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(42), 1); // first fragment (M flag)
        packet[48] = 128;
        Assert.NotEqual(0, HostUnreachable.BuildV6(packet, output));
        IpAddress.Parse("ff02::1").WriteBytes(packet.AsSpan(24));
        Assert.Equal(0, HostUnreachable.BuildV6(packet, output));
    }

    [Fact]
    public void No_IPv4_error_about_an_error_a_later_fragment_or_a_broadcast_or_multicast_address()
    {
        var output = new byte[1280];
        var ping = Echo4("10.0.0.1", "10.0.0.2");
        Assert.NotEqual(0, HostUnreachable.BuildV4(ping, output));
        var error = Echo4("10.0.0.1", "10.0.0.2");
        error[20] = 3;
        Assert.Equal(0, HostUnreachable.BuildV4(error, output));
        var fragment = Echo4("10.0.0.1", "10.0.0.2");
        BinaryPrimitives.WriteUInt16BigEndian(fragment.AsSpan(6), 185);
        Assert.Equal(0, HostUnreachable.BuildV4(fragment, output));
        Assert.Equal(0, HostUnreachable.BuildV4(Echo4("10.0.0.1", "255.255.255.255"), output));
        Assert.Equal(0, HostUnreachable.BuildV4(Echo4("10.0.0.1", "224.0.0.1"), output));
        Assert.Equal(0, HostUnreachable.BuildV4(Echo4("0.0.0.0", "10.0.0.2"), output));
    }

    private static void WaitForMetric(MemoryNodes nodes, int sent, int limited)
    {
        string expected = $"sent {sent}, rate_limited {limited}";
        string seen = "";
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            string metrics = nodes.A.RenderMetrics();
            seen = $"sent {Value(metrics, "sent")}, rate_limited {Value(metrics, "rate_limited")}";
            if (seen == expected)
            {
                return;
            }
            Thread.Sleep(20); // the node's reader thread, not protocol time
        }
        Assert.Equal(expected, seen);
    }

    private static string Value(string metrics, string outcome) =>
        Regex.Match(metrics, $"gateway_icmp_unreachable_total\\{{interface=\"mema\",outcome=\"{outcome}\"\\}} (\\d+)").Groups[1].Value;

    private static void AssertHostUnreachable4(byte[] error, byte[] original, string from)
    {
        Assert.Equal(0x45, error[0]);
        Assert.Equal(1, error[9]);
        Assert.Equal(error.Length, BinaryPrimitives.ReadUInt16BigEndian(error.AsSpan(2)));
        Assert.Equal(0, InternetChecksum.Compute(error.AsSpan(0, 20)));
        Assert.Equal(IpAddress.Parse(from), IpAddress.FromBytes(error.AsSpan(12, 4)));
        Assert.Equal(IpAddress.FromBytes(original.AsSpan(12, 4)), IpAddress.FromBytes(error.AsSpan(16, 4)));
        Assert.Equal(3, error[20]);
        Assert.Equal(1, error[21]);
        Assert.Equal(0, InternetChecksum.Compute(error.AsSpan(20)));
        Assert.Equal(original.AsSpan(0, 28).ToArray(), error.AsSpan(28).ToArray());
    }

    // An ICMP echo request with 8 bytes of data.
    private static byte[] Echo4(string source, string destination)
    {
        var packet = new byte[36];
        packet[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(2), (ushort)packet.Length);
        packet[8] = 64;
        packet[9] = 1;
        IpAddress.Parse(source).WriteBytes(packet.AsSpan(12));
        IpAddress.Parse(destination).WriteBytes(packet.AsSpan(16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(10), InternetChecksum.Compute(packet.AsSpan(0, 20)));
        packet[20] = 8;
        packet.AsSpan(28).Fill(0x42);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(22), InternetChecksum.Compute(packet.AsSpan(20)));
        return packet;
    }
}
