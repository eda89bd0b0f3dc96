using System.Buffers.Binary;
using Gateway.Datapath;
using Gateway.Datapath.Offload;
using Gateway.Node.Overlay;
using Gateway.Policy;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// The whole daemon (send path, receive path, handshakes, overlay stages, TUN offloads) between
/// two nodes on in-memory devices: no root, no kernel, protocol time from an injected clock.
/// </summary>
public sealed class MemoryNodeTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(0)]
    public async Task Plain_packets_cross_both_ways_after_one_handshake_and_only_WireGuard_is_on_the_underlay(int workers)
    {
        await using var nodes = new MemoryNodes(workers: workers);
        var ab = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 7, 1000);
        nodes.TunA.InjectPacket(ab);
        Assert.Equal(ab, MemoryNodes.Take(nodes.TunB));
        var ba = MemoryNodes.Udp4(MemoryNodes.AddressB, MemoryNodes.AddressA, 7, 40000, 300, fill: 0x33);
        nodes.TunB.InjectPacket(ba);
        Assert.Equal(ba, MemoryNodes.Take(nodes.TunA));

        Assert.Equal(1, nodes.Count(MessageType.HandshakeInitiation));
        Assert.Equal(1, nodes.Count(MessageType.HandshakeResponse));
        Assert.True(nodes.Count(MessageType.TransportData) >= 2);
        // Every underlay datagram is a WireGuard message of a valid size: nothing in plaintext.
        foreach (var d in nodes.Underlay)
        {
            Assert.True(d.Type is 1 or 2 or 3 or 4, $"non-WireGuard datagram type {d.Type}");
            Assert.True(d.Type != 4 || (d.Length >= 32 && (d.Length - 32) % 16 == 0), $"transport of {d.Length} bytes");
        }
        Assert.Contains("gateway_handshakes_total{interface=\"mema\",type=\"response\"} 1", nodes.A.RenderMetrics());
    }

    [Fact]
    public async Task A_burst_arrives_complete_and_in_order()
    {
        await using var nodes = new MemoryNodes(workers: 2);
        nodes.Handshake();
        const int count = 2000;
        for (int i = 0; i < count; i++)
        {
            var packet = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 7, 200);
            BinaryPrimitives.WriteInt32BigEndian(packet.AsSpan(28), i);
            nodes.TunA.InjectPacket(packet);
        }
        // The receiving node's hand-off ring is bounded: on a loaded machine its workers can fall
        // behind and datagrams are dropped and counted (ReceiveQueueFull), as a real socket would
        // lose them. What must hold: what arrives is in order, and nothing vanishes uncounted.
        var seen = new List<int>();
        while (seen.Count < count && nodes.TunB.TryTake(out var got, TimeSpan.FromSeconds(5)))
        {
            seen.Add(BinaryPrimitives.ReadInt32BigEndian(got.AsSpan(28)));
        }
        Assert.True(seen.Count >= count / 4, $"only {seen.Count} of {count} packets arrived");
        for (int i = 1; i < seen.Count; i++)
        {
            Assert.True(seen[i] > seen[i - 1], $"packet {seen[i]} arrived after {seen[i - 1]}");
        }
        string metrics = nodes.B.RenderMetrics();
        var dropped = System.Text.RegularExpressions.Regex.Match(metrics,
            "gateway_drop_count_total\\{interface=\"memb\",reason=\"ReceiveQueueFull\"\\} (\\d+)");
        Assert.True(dropped.Success, "no ReceiveQueueFull counter in the metrics");
        Assert.Equal(count, seen.Count + int.Parse(dropped.Groups[1].Value));
        Assert.Contains($"gateway_forward_count_total{{direction=\"ingress\",interface=\"memb\"}} {seen.Count + 1}", metrics);
    }

    [Fact]
    public async Task A_lost_initiation_is_retried_on_the_injected_clock_and_the_session_rekeys_after_RekeyAfterTime()
    {
        await using var nodes = new MemoryNodes();
        nodes.DropWhen = (_, datagram) => datagram[0] == (byte)MessageType.HandshakeInitiation && nodes.Count(MessageType.HandshakeInitiation) == 1;
        var packet = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 7, 100);
        nodes.TunA.InjectPacket(packet);
        Assert.False(nodes.TunB.TryTake(out _, TimeSpan.FromMilliseconds(200)));
        // RekeyTimeout (5 s + jitter) later the timers send a second initiation; the staged packet follows.
        nodes.Clock.Advance(TimeSpan.FromSeconds(5.5));
        nodes.A.Tick();
        Assert.Equal(packet, MemoryNodes.Take(nodes.TunB));
        Assert.Equal(2, nodes.Count(MessageType.HandshakeInitiation));

        // 121 s on, the next packet A sends starts a new handshake (RekeyAfterTime), and still arrives.
        nodes.Clock.Advance(TimeSpan.FromSeconds(121));
        nodes.TunA.InjectPacket(packet);
        Assert.Equal(packet, MemoryNodes.Take(nodes.TunB));
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (nodes.Count(MessageType.HandshakeResponse) < 2 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5); // the other node's threads, not protocol time
        }
        Assert.Equal(3, nodes.Count(MessageType.HandshakeInitiation));
        Assert.Equal(2, nodes.Count(MessageType.HandshakeResponse));
    }

    [Fact]
    public async Task Overlay_forwards_allowed_workload_traffic_in_VXLAN_and_drops_the_rest_with_Cilium_reasons()
    {
        await using var nodes = new MemoryNodes(overlay: true);
        nodes.Handshake();
        long egress = nodes.A.Overlay!.Pipeline.Forwards(Direction.Egress), ingress = nodes.B.Overlay!.Pipeline.Forwards(Direction.Ingress);
        // frontend -> backend on TCP 80: allowed by both policies, arrives as the same IP packet.
        var syn = MemoryNodes.Tcp4("10.11.1.10", "10.11.2.10", 40000, 80, 1, 0, flags: 0x02);
        nodes.TunA.InjectPacket(syn);
        Assert.Equal(syn, MemoryNodes.Take(nodes.TunB));
        Assert.Equal(egress + 1, nodes.A.Overlay.Pipeline.Forwards(Direction.Egress));
        Assert.Equal(ingress + 1, nodes.B.Overlay.Pipeline.Forwards(Direction.Ingress));
        // A VXLAN datagram is 50 bytes larger inside WireGuard: 40 + 50 -> padded to 96, + 32.
        Assert.Contains(nodes.Underlay, d => d.Type == 4 && d.Length == 32 + 96);

        // intruder -> backend: no egress rule selects intruder, so A sends it; backend's ingress policy at B drops it.
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.20", "10.11.2.10", 40001, 80, 1, 0, flags: 0x02));
        // frontend -> db: not allowed by frontend's egress.
        nodes.TunA.InjectPacket(MemoryNodes.Tcp4("10.11.1.10", "10.11.2.20", 40002, 5432, 1, 0, flags: 0x02));
        // a workload sending to the VXLAN port: strict mode.
        nodes.TunA.InjectPacket(MemoryNodes.Udp4("10.11.1.10", "10.11.2.10", 40003, 8472, 20));
        // to a cluster address no node has.
        nodes.TunA.InjectPacket(MemoryNodes.Udp4("10.11.1.10", "10.11.9.9", 40004, 53, 20));
        var pipeline = nodes.A.Overlay.Pipeline;
        var deadline = DateTime.UtcNow.AddSeconds(5);
        var pipelineB = nodes.B.Overlay.Pipeline;
        while ((pipeline.Drops(Direction.Egress, OverlayDrop.NoTunnelEndpoint) == 0 || pipelineB.Drops(Direction.Ingress, OverlayDrop.PolicyDenied) == 0) &&
               DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5); // the nodes' threads
        }
        Assert.Equal(1, pipelineB.Drops(Direction.Ingress, OverlayDrop.PolicyDenied));
        Assert.Equal(1, pipeline.Drops(Direction.Egress, OverlayDrop.PolicyDenied));
        Assert.Equal(1, pipeline.Drops(Direction.Egress, OverlayDrop.EncapsulationProhibited));
        Assert.Equal(1, pipeline.Drops(Direction.Egress, OverlayDrop.NoTunnelEndpoint));
        Assert.False(nodes.TunB.TryTake(out _, TimeSpan.FromMilliseconds(100)));
        string metrics = nodes.A.RenderMetrics();
        Assert.Contains("gateway_overlay_drop_count_total{direction=\"EGRESS\",interface=\"mema\",reason=\"POLICY_DENIED\"} 1", metrics);
    }

    [Fact]
    public async Task Overlay_node_traffic_between_tunnel_addresses_is_plain_WireGuard()
    {
        await using var nodes = new MemoryNodes(overlay: true);
        var ping = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 1, 2, 64);
        nodes.TunA.InjectPacket(ping);
        Assert.Equal(ping, MemoryNodes.Take(nodes.TunB));
        // 92 bytes sealed as they are (padded to 96, + 32); with VXLAN they would have been 142 (+ 2, + 32).
        Assert.Contains(nodes.Underlay, d => d.Type == 4 && d.Length == 96 + 32);
        Assert.DoesNotContain(nodes.Underlay, d => d.Type == 4 && d.Length == 144 + 32);
    }

    private static byte[] SuperPacket(GsoType gso, byte[] packet, int headerLength, int segmentSize, int checksumStart, int checksumOffset)
    {
        var frame = new byte[VirtioNetHeader.Size + packet.Length];
        new VirtioNetHeader(VirtioNetHeader.FlagNeedsChecksum, gso, ecn: false, (ushort)headerLength, (ushort)segmentSize,
            (ushort)checksumStart, (ushort)checksumOffset).Write(frame);
        packet.CopyTo(frame, VirtioNetHeader.Size);
        return frame;
    }

    [Fact]
    public async Task Offloads_cut_a_TCP_super_packet_on_send_and_merge_the_segments_again_on_receive()
    {
        await using var nodes = new MemoryNodes(offloads: true);
        nodes.Handshake();
        int before = nodes.Count(MessageType.TransportData);
        // 4 x 1000 bytes handed over as one 4040-byte TCP packet (TSO), as the kernel would.
        var big = MemoryNodes.Tcp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 5001, 1000, 4000);
        nodes.TunA.Inject(SuperPacket(GsoType.TcpV4, big, 40, 1000, 20, 16));
        var frame = MemoryNodes.Take(nodes.TunB);
        var header = VirtioNetHeader.Read(frame);
        Assert.Equal(GsoType.TcpV4, header.Gso);
        Assert.Equal(1000, header.GsoSize);
        var merged = frame.AsSpan(VirtioNetHeader.Size);
        Assert.Equal(big.Length, merged.Length);
        Assert.True(big.AsSpan(40).SequenceEqual(merged[40..]), "payload changed on the way");
        Assert.Equal(before + 4, nodes.Count(MessageType.TransportData));
        Assert.Equal(1, nodes.TunA.Counters.SuperPacketsRead);
        Assert.Equal(1, nodes.TunB.Counters.SuperPacketsWritten);
        Assert.Contains("gateway_tun_super_packets_total{direction=\"written\",interface=\"memb\"} 1", nodes.B.RenderMetrics());
    }

    [Fact]
    public async Task Offloads_cut_a_UDP_super_packet_on_send_and_merge_the_datagrams_again_on_receive()
    {
        await using var nodes = new MemoryNodes(offloads: true);
        nodes.Handshake();
        int before = nodes.Count(MessageType.TransportData);
        // Three 1200-byte datagrams and a 500-byte one handed over as one UDP GSO packet (USO).
        var big = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 5001, 3 * 1200 + 500);
        nodes.TunA.Inject(SuperPacket(GsoType.UdpL4, big, 28, 1200, 20, 6));
        var frame = MemoryNodes.Take(nodes.TunB);
        var header = VirtioNetHeader.Read(frame);
        Assert.Equal(GsoType.UdpL4, header.Gso);
        Assert.Equal(1200, header.GsoSize);
        var merged = frame.AsSpan(VirtioNetHeader.Size);
        Assert.Equal(big.Length, merged.Length);
        Assert.True(big.AsSpan(28).SequenceEqual(merged[28..]));
        Assert.Equal(before + 4, nodes.Count(MessageType.TransportData));
    }

    [Fact]
    public async Task A_malformed_super_packet_is_counted_and_dropped_and_the_node_goes_on()
    {
        await using var nodes = new MemoryNodes(offloads: true);
        nodes.Handshake();
        var big = MemoryNodes.Tcp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 40000, 5001, 1, 3000);
        nodes.TunA.Inject(SuperPacket(GsoType.TcpV4, big, 40, 1000, 5000, 16)); // checksum start past the end
        nodes.TunA.Inject(new byte[5]);                                          // shorter than a vnet header
        var ok = MemoryNodes.Udp4(MemoryNodes.AddressA, MemoryNodes.AddressB, 1, 2, 10);
        nodes.TunA.InjectPacket(ok);
        var frame = MemoryNodes.Take(nodes.TunB);
        Assert.Equal(ok, frame.AsSpan(VirtioNetHeader.Size).ToArray());
        Assert.Equal(2, nodes.TunA.Counters.OffloadInvalid);
        Assert.Contains("gateway_drop_count_total{interface=\"mema\",reason=\"TunOffloadInvalid\"} 2", nodes.A.RenderMetrics());
    }
}

/// <summary>The daemon's data path allocates nothing per packet, in plain and overlay mode
/// (inline crypto, so the two reader threads do all of it and their allocation counters see it).</summary>
public sealed class MemoryNodeAllocationTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public async Task Steady_state_traffic_allocates_nothing_per_packet(bool overlay, bool offloads)
    {
        await using var nodes = new MemoryNodes(overlay: overlay, offloads: offloads, workers: 0);
        nodes.Handshake();
        nodes.Network.Tap = null; // the test's underlay log grows a list: not the data path's allocation
        string source = overlay ? "10.11.1.10" : MemoryNodes.AddressA, destination = overlay ? "10.11.2.10" : MemoryNodes.AddressB;
        var packet = MemoryNodes.Tcp4(source, destination, 40000, 80, 1, 1000);
        var frame = offloads ? new byte[Gateway.Datapath.Offload.VirtioNetHeader.Size + packet.Length] : packet;
        packet.CopyTo(frame, frame.Length - packet.Length);

        void Burst(int count)
        {
            int arrived = 0;
            for (int i = 0; i < count; i++)
            {
                nodes.TunA.Inject(frame);
                if (i % 64 == 63)
                {
                    arrived += Wait(nodes, 32);
                }
            }
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (arrived < count && DateTime.UtcNow < deadline)
            {
                arrived += Wait(nodes, count - arrived);
            }
            Assert.Equal(count, arrived);
        }

        Burst(3000); // warm-up: JIT, pools, conntrack entry
        long before = nodes.A.DataPathAllocatedBytes + nodes.B.DataPathAllocatedBytes;
        const int packets = 5000;
        Burst(packets);
        long allocated = nodes.A.DataPathAllocatedBytes + nodes.B.DataPathAllocatedBytes - before;
        Assert.True(allocated < packets / 10, $"the data path allocated {allocated} bytes for {packets} packets");
    }

    private static int Wait(MemoryNodes nodes, int atLeast)
    {
        int n = 0;
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (n < atLeast && DateTime.UtcNow < deadline)
        {
            int got = nodes.TunB.Drain(static (_, _) => { });
            n += got;
            if (got == 0)
            {
                Thread.Sleep(1); // the nodes' threads
            }
        }
        return n;
    }
}
