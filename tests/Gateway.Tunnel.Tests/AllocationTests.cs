using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

public class AllocationTests
{
    [Fact]
    public void Transport_seal_and_open_allocate_nothing_per_packet()
    {
        using var p = new EnginePair();
        p.Handshake();
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 1392); // 1420 B
        var small = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 2, 36);   // 64 B
        var buffer = new byte[2048];
        var inPlace = new byte[2048];
        var from = p.A.Endpoint;

        void RoundTrip(byte[] pkt)
        {
            var r = p.A.Engine.Encapsulate(pkt, buffer);
            if (r.Action != TunnelAction.SendToNetwork) throw new InvalidOperationException(r.ToString());
            var d = p.B.Engine.Decapsulate(from, buffer.AsSpan(0, r.Length));
            if (d.Action != TunnelAction.DeliverToTun) throw new InvalidOperationException(d.ToString());
            pkt.CopyTo(inPlace, 16);
            var r2 = p.A.Engine.EncapsulateInPlace(inPlace, pkt.Length);
            var d2 = p.B.Engine.Decapsulate(from, inPlace.AsSpan(0, r2.Length));
            if (d2.Action != TunnelAction.DeliverToTun) throw new InvalidOperationException(d2.ToString());
        }

        for (int i = 0; i < 200; i++) { RoundTrip(packet); RoundTrip(small); }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 2000; i++) { RoundTrip(packet); RoundTrip(small); }
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);
        Assert.Empty(p.DeliveredToB); // delivered in place, not through the helper
    }

    [Fact]
    public void Ten_thousand_peers_route_correctly_without_allocating()
    {
        using var p = new EnginePair();
        // 10,000 more peers (no private key work needed for routing), each owning one /32.
        for (int i = 0; i < 10_000; i++)
        {
            var key = new byte[32];
            BitConverter.TryWriteBytes(key, i + 1);
            key[31] = 0x55;
            var peer = p.A.Engine.GetOrAddPeer(new PublicKey(key));
            p.A.Engine.AddAllowedIp(peer, new IpPrefix(IpAddress.FromV4(0x0A640000u + (uint)i), 32));
        }
        Assert.Equal(10_001, p.A.Engine.PeerCount);
        p.Handshake();
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 100);
        var buffer = new byte[2048];
        for (int i = 0; i < 100; i++) p.A.Engine.Encapsulate(packet, buffer);
        long before = GC.GetAllocatedBytesForCurrentThread();
        int delivered = 0;
        for (int i = 0; i < 1000; i++)
        {
            var r = p.A.Engine.Encapsulate(packet, buffer);
            var d = p.B.Engine.Decapsulate(p.A.Endpoint, buffer.AsSpan(0, r.Length));
            if (r.Action == TunnelAction.SendToNetwork && d.Action == TunnelAction.DeliverToTun) delivered++;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(1000, delivered);
        Assert.Equal(0, allocated);
        Assert.True(p.A.Engine.TryRoute(IpAddress.Parse("10.100.39.15"), out var routed));
        Assert.NotSame(p.PeerBOnA, routed);
    }
}

public class StagedAllocationTests
{
    [Fact]
    public void Packets_staged_while_a_handshake_is_pending_allocate_nothing_once_warm()
    {
        using var p = new EnginePair();
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 1392);
        var buffer = new byte[2048];
        int staged = 0;
        // No handshake completes (nothing is pumped): every packet is staged, the queue overflows
        // and drops its oldest, and the initiation is not resent within RekeyTimeout.
        for (int i = 0; i < 300; i++) p.A.Engine.Encapsulate(packet, buffer);
        long overflowBefore = p.A.Engine.GetCount(TunnelEvent.StagedOverflow);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            if (p.A.Engine.Encapsulate(packet, buffer).Reason == TunnelEvent.PacketStaged) staged++;
        }
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(1000, staged);
        Assert.Equal(overflowBefore + 1000, p.A.Engine.GetCount(TunnelEvent.StagedOverflow));
        Assert.Equal(0, after - before);
        Assert.Equal(WireGuardConstants.MaxStagedPackets, p.PeerBOnA.StagedCount);

        // The staged packets still go out, intact, once the handshake completes.
        p.Pump();
        Assert.Equal(WireGuardConstants.MaxStagedPackets, p.DeliveredToB.Count);
        Assert.All(p.DeliveredToB, delivered => Assert.Equal(packet, delivered));
    }
}
