using System.Buffers.Binary;
using Gateway.Datapath.Audit;

namespace Gateway.Datapath.Tests;

/// <summary>
/// WireGuard pads to 16 but never beyond the MTU, so full-size transport messages are 32 + MTU
/// bytes. Real full-speed captures of `gateway up` against wireguard-go must audit ENCRYPTED;
/// plaintext that merely starts like a transport message must still be a LEAK.
/// </summary>
public class FullSizeWireGuardAuditTests
{
    public static TheoryData<int, string> Captures()
    {
        var data = new TheoryData<int, string>();
        foreach (string family in new[] { "v4", "v6" })
        {
            foreach (int mtu in new[] { 1280, 1420, 1500, 8920 })
            {
                data.Add(mtu, family);
            }
        }
        return data;
    }

    private static string CapturePath(int mtu, string family) =>
        Path.Combine(RepoPaths.Captures, $"fullspeed-gateway-wggo-mtu{mtu}-{family}.pcap");

    /// <summary>UDP datagrams (by the UDP length field) of exactly 32 + MTU payload bytes, per sender.</summary>
    private static Dictionary<IpAddress, int> FullSizeSenders(string path, int mtu)
    {
        var senders = new Dictionary<IpAddress, int>();
        using var reader = CaptureFileReader.Open(path);
        byte[] buffer = new byte[65536];
        while (reader.TryReadNext(out CapturedPacket packet))
        {
            packet.Data.CopyTo(buffer);
            Array.Clear(buffer, packet.Data.Length, Math.Max(0, packet.OriginalLength - packet.Data.Length));
            var frame = buffer.AsSpan(0, Math.Max(packet.OriginalLength, packet.Data.Length));
            if (FlowParser.Parse(reader.LinkType, frame, out FlowKey key, out PacketLayout layout) == ParseStatus.Ok &&
                key.Protocol == IpProtocol.Udp && layout.UdpDatagramLength - UdpHeader.Length == 32 + mtu)
            {
                senders[key.Source] = senders.GetValueOrDefault(key.Source) + 1;
            }
        }
        return senders;
    }

    [Theory]
    [MemberData(nameof(Captures))]
    public void FullSpeedGatewayToWireguardGoCaptureIsEncrypted(int mtu, string family)
    {
        string path = CapturePath(mtu, family);
        AuditReport r = CaptureAuditor.AuditFile(path);
        Assert.Equal("ENCRYPTED", r.Verdict);
        Assert.Equal(0, r.Counts[PacketClass.PlaintextCluster]);
        WireGuardFlow flow = Assert.Single(r.WireGuardFlows);
        Assert.Equal(1, flow.Initiations);
        Assert.Equal(1, flow.Responses);
        Assert.True(flow.TransportMessages > 2900, $"{flow.TransportMessages} transport messages");
        // Both ends (gateway and wireguard-go, iperf3 --bidir) sent full-size messages capped at the MTU.
        Dictionary<IpAddress, int> senders = FullSizeSenders(path, mtu);
        Assert.Equal(2, senders.Count);
        Assert.All(senders.Values, n => Assert.True(n > 100, $"only {n} full-size messages from one side"));
        if (mtu % 16 != 0)
        {
            // These are exactly the messages the old (length - 16) % 16 rule called plaintext.
            Assert.NotEqual(0, (32 + mtu - 16) % 16);
        }
    }

    [Theory]
    [InlineData(1420, "v4")]
    [InlineData(8920, "v6")]
    public void CaptureStartedMidSessionIsEncrypted(int mtu, string family)
    {
        // Drop the handshakes and the first messages: the sessions are established only by
        // 16-aligned transport messages and by consistent counters.
        var frames = new List<(byte[] Data, DateTime Time, int Length)>();
        LinkType link;
        using (var reader = CaptureFileReader.Open(CapturePath(mtu, family)))
        {
            link = reader.LinkType;
            while (reader.TryReadNext(out CapturedPacket p))
            {
                frames.Add((p.Data.ToArray(), p.TimestampUtc, p.OriginalLength));
            }
        }
        frames = frames.Skip(500).ToList();
        var auditor = new CaptureAuditor(link);
        foreach (var f in frames)
        {
            auditor.Learn(f.Data, f.Length);
        }
        auditor.EndLearning();
        foreach (var f in frames)
        {
            auditor.Add(f.Data, f.Time, f.Length);
        }
        Assert.Equal("ENCRYPTED", auditor.Report.Verdict);
        Assert.Equal(0, auditor.Report.WireGuardFlows.Sum(w => w.Initiations));
    }

    private const uint NodeA = 0xC0A84D01, NodeB = 0xC0A84D02;   // 192.168.77.1/.2
    private const uint PodA = 0x0A000105, PodB = 0x0A000207;     // 10.0.1.5, 10.0.2.7

    private static byte[] Packet(uint src, uint dst, ushort sport, ushort dport, byte[] payload) =>
        PacketFactory.Ipv4(src, dst, IpProtocol.Udp, PacketFactory.Udp(sport, dport, payload));

    /// <summary>A transport-shaped payload of 32 + <paramref name="mtu"/> bytes (not 16-aligned).</summary>
    private static byte[] Capped(Random random, uint receiver, ulong counter, int mtu = 1420)
    {
        var m = new byte[32 + mtu];
        random.NextBytes(m);
        BinaryPrimitives.WriteUInt32LittleEndian(m, 4);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), receiver);
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(8), counter);
        return m;
    }

    /// <summary>A session between the two nodes: initiation (A index 0x11), response (B index 0x22).</summary>
    private static CaptureAuditor WithSession(Random random)
    {
        var auditor = new CaptureAuditor(LinkType.Raw);
        Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeA, NodeB, 51820, 51820,
            PacketFactory.WireGuard(random, WireGuardMessageType.HandshakeInitiation, sender: 0x11)), DateTime.UnixEpoch));
        Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeB, NodeA, 51820, 51820,
            PacketFactory.WireGuard(random, WireGuardMessageType.HandshakeResponse, sender: 0x22, receiver: 0x11)), DateTime.UnixEpoch));
        return auditor;
    }

    [Fact]
    public void CappedMessagesInAHandshakenSessionAreWireGuard()
    {
        var random = new Random(7);
        CaptureAuditor auditor = WithSession(random);
        for (ulong c = 0; c < 5; c++)
        {
            Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, c)), DateTime.UnixEpoch));
            Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeB, NodeA, 51820, 51820, Capped(random, 0x11, c)), DateTime.UnixEpoch));
        }
        Assert.Equal("ENCRYPTED", auditor.Report.Verdict);
        Assert.Equal(10, auditor.Report.WireGuardFlows[0].TransportMessages);
    }

    [Fact]
    public void PlaintextBetweenPodsShapedLikeAFullSizeTransportMessageIsALeak()
    {
        var random = new Random(8);
        var auditor = new CaptureAuditor(LinkType.Raw);
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(PodA, PodB, 40000, 51820, Capped(random, 0x22, 0)), DateTime.UnixEpoch));
        Assert.True(auditor.Report.IsLeak);
    }

    [Fact]
    public void PodTrafficCopyingARealSessionsIndexAndCountersIsALeak()
    {
        var random = new Random(9);
        CaptureAuditor auditor = WithSession(random);
        Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, 0)), DateTime.UnixEpoch));
        // Same index and counters, same ports, but between pod addresses: not that session's 4-tuple.
        for (ulong c = 1; c <= 20; c++)
        {
            Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(PodA, PodB, 51820, 51820, Capped(random, 0x22, c)), DateTime.UnixEpoch));
        }
        Assert.Equal(20, auditor.Report.LeakPackets);
    }

    [Fact]
    public void UnknownIndexOnTheTunnelPairIsALeak()
    {
        var random = new Random(10);
        CaptureAuditor auditor = WithSession(random);
        // Right 4-tuple, but no handshake announced index 0x99 and it is not consistent over many messages.
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x99, 0)), DateTime.UnixEpoch));
    }

    [Fact]
    public void CounterFarOutsideTheSessionsWindowIsALeak()
    {
        var random = new Random(11);
        CaptureAuditor auditor = WithSession(random);
        Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, 100_000)), DateTime.UnixEpoch));
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, 1UL << 40)), DateTime.UnixEpoch));
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, 10)), DateTime.UnixEpoch));
        // Reordering inside the replay window is normal.
        Assert.Equal(PacketClass.WireGuard, auditor.Add(Packet(NodeA, NodeB, 51820, 51820, Capped(random, 0x22, 99_990)), DateTime.UnixEpoch));
        Assert.Equal(2, auditor.Report.LeakPackets);
    }

    [Fact]
    public void ConsistentLookingPlaintextFlowWithoutAnyWireGuardIsALeak()
    {
        // A pod stream that imitates a session (constant index, growing counters) on a pair that
        // never carried structurally valid WireGuard.
        var random = new Random(12);
        var auditor = new CaptureAuditor(LinkType.Raw);
        var frames = Enumerable.Range(0, 50).Select(i => Packet(PodA, PodB, 40000, 40001, Capped(random, 0x77, (ulong)i))).ToList();
        frames.ForEach(f => auditor.Learn(f));
        auditor.EndLearning();
        frames.ForEach(f => Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(f, DateTime.UnixEpoch)));
    }

    [Fact]
    public void DnsQueryWhoseHeaderReadsAsTypeFourIsALeak()
    {
        // DNS id 0x0400 with all flags clear starts 04 00 00 00 like a transport message.
        byte[] dns = PacketFactory.Dns(0x0400);
        dns[2] = 0;
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(dns));
        var auditor = new CaptureAuditor(LinkType.Raw);
        Assert.NotEqual(0, (dns.Length - 16) % 16);
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(Packet(PodA, PodB, 33333, 53, dns), DateTime.UnixEpoch));
    }

    [Fact]
    public void Ipv6NeighborDiscoveryBetweenUnderlayAddressesIsLinkControl()
    {
        byte[] na = new byte[24];
        na[0] = 136;
        byte[] ip = PacketFactory.Ipv6(IpAddress.Parse("fd00:78::2").V6, IpAddress.Parse("fd00:78::1").V6, IpProtocol.Icmpv6, na);
        var auditor = new CaptureAuditor(LinkType.Raw);
        Assert.Equal(PacketClass.Other, auditor.Add(ip, DateTime.UnixEpoch));
        // Echo between the same addresses is still plaintext cluster traffic.
        byte[] echo = PacketFactory.Ipv6(IpAddress.Parse("fd00:78::2").V6, IpAddress.Parse("fd00:78::1").V6, IpProtocol.Icmpv6, PacketFactory.IcmpEcho(true, 1, 1));
        Assert.Equal(PacketClass.PlaintextCluster, auditor.Add(echo, DateTime.UnixEpoch));
    }
}
