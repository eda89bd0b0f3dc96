using System.Buffers.Binary;

namespace Gateway.Tunnel.Tests;

/// <summary>
/// The split data path a worker pool uses: the in-order half of a seal (session and counter)
/// apart from the AEAD, and the AEAD of an open apart from its in-order half (replay window,
/// timers, source check).
/// </summary>
public class SplitPathTests
{
    private static byte[] InPlace(byte[] packet)
    {
        var buffer = new byte[16 + packet.Length + 32];
        packet.CopyTo(buffer, 16);
        return buffer;
    }

    [Theory]
    [InlineData(100, 112)]   // padded to 16
    [InlineData(1410, 1420)] // padded only up to the MTU (1420)
    [InlineData(1420, 1420)]
    [InlineData(1470, 1470)] // larger than the MTU (an overlay datagram in the replay): not padded
    public void PaddedLength_is_what_the_engine_seals(int packetLength, int padded)
    {
        using var p = new EnginePair();
        p.Handshake();
        Assert.Equal(padded, p.A.Engine.PaddedLength(packetLength));
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, packetLength - 28);
        Assert.Equal(packetLength, packet.Length);
        var buffer = InPlace(packet);
        var r = p.A.Engine.EncapsulateInPlace(buffer, packet.Length);
        Assert.Equal(TunnelAction.SendToNetwork, r.Action);
        Assert.Equal(Messages.TransportHeaderSize + padded + Messages.TagSize, r.Length);
    }

    [Fact]
    public void Counters_follow_the_order_of_the_first_half_whatever_order_the_AEAD_runs_in()
    {
        using var p = new EnginePair();
        p.Handshake();
        const int n = 16;
        var buffers = new byte[n][];
        var tickets = new SealTicket[n];
        var lengths = new int[n];
        for (int i = 0; i < n; i++)
        {
            buffers[i] = InPlace(Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, (ushort)i, 100));
            var r = p.A.Engine.BeginEncapsulateInPlace(buffers[i], buffers[i].Length - 48, out tickets[i]);
            Assert.Equal(TunnelAction.SendToNetwork, r.Action);
            Assert.True(tickets[i].IsPending);
            lengths[i] = r.Length;
        }
        // Workers finish in reverse order.
        for (int i = n - 1; i >= 0; i--) Assert.True(p.A.Engine.CompleteEncapsulate(tickets[i], buffers[i]));
        ulong first = BinaryPrimitives.ReadUInt64LittleEndian(buffers[0].AsSpan(8));
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(first + (ulong)i, BinaryPrimitives.ReadUInt64LittleEndian(buffers[i].AsSpan(8)));
            var d = p.B.Engine.Decapsulate(p.A.Endpoint, buffers[i].AsSpan(0, lengths[i]));
            Assert.Equal(TunnelAction.DeliverToTun, d.Action);
            Assert.Equal((ushort)i, BinaryPrimitives.ReadUInt16BigEndian(buffers[i].AsSpan(16 + 20 + 6)));
        }
    }

    [Fact]
    public void Opens_may_run_in_any_order_and_the_second_half_applies_the_replay_window()
    {
        using var p = new EnginePair();
        p.Handshake();
        const int n = 8;
        var datagrams = new byte[n][];
        for (int i = 0; i < n; i++)
        {
            var buffer = new byte[2048];
            var r = p.A.Engine.Encapsulate(Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, (ushort)i, 64), buffer);
            datagrams[i] = buffer.AsSpan(0, r.Length).ToArray();
        }
        var copyOfThird = datagrams[3].ToArray();
        var tickets = new OpenTicket[n];
        for (int i = n - 1; i >= 0; i--)
        {
            var r = p.B.Engine.BeginDecapsulate(p.A.Endpoint, datagrams[i], out tickets[i]);
            Assert.True(tickets[i].IsPending, r.ToString());
        }
        long deliveredBefore = p.B.Engine.GetCount(TunnelEvent.TransportDelivered);
        for (int i = 0; i < n; i++)
        {
            var d = p.B.Engine.CompleteDecapsulate(tickets[i], p.A.Endpoint, datagrams[i]);
            Assert.Equal(TunnelAction.DeliverToTun, d.Action);
        }
        Assert.Equal(deliveredBefore + n, p.B.Engine.GetCount(TunnelEvent.TransportDelivered));

        // The same datagram again authenticates in the first half and is refused in the second.
        Assert.True(p.B.Engine.BeginDecapsulate(p.A.Endpoint, copyOfThird, out var again).Action == TunnelAction.None);
        Assert.True(again.IsPending);
        var replayed = p.B.Engine.CompleteDecapsulate(again, p.A.Endpoint, copyOfThird);
        Assert.Equal(TunnelEvent.Replayed, replayed.Reason);
    }

    [Fact]
    public void A_forged_datagram_ends_in_the_first_half()
    {
        using var p = new EnginePair();
        p.Handshake();
        var buffer = new byte[2048];
        var r = p.A.Engine.Encapsulate(Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 64), buffer);
        buffer[r.Length - 1] ^= 1;
        var d = p.B.Engine.BeginDecapsulate(p.A.Endpoint, buffer.AsSpan(0, r.Length), out var ticket);
        Assert.False(ticket.IsPending);
        Assert.Equal(TunnelEvent.AuthenticationFailed, d.Reason);
        Assert.Throws<ArgumentException>(() => p.B.Engine.CompleteDecapsulate(ticket, p.A.Endpoint, buffer.AsSpan(0, r.Length)));
    }

    [Fact]
    public void A_session_destroyed_between_the_halves_is_never_used()
    {
        using var p = new EnginePair();
        p.Handshake();
        var buffer = InPlace(Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 64));
        p.A.Engine.BeginEncapsulateInPlace(buffer, buffer.Length - 48, out var seal);
        var sealedCopy = new byte[2048];
        var sent = p.A.Engine.Encapsulate(Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 2, 64), sealedCopy);
        p.B.Engine.BeginDecapsulate(p.A.Endpoint, sealedCopy.AsSpan(0, sent.Length), out var open);
        Assert.True(seal.IsPending && open.IsPending);

        long expiredA = p.A.Engine.GetCount(TunnelEvent.KeypairExpired);
        long expiredB = p.B.Engine.GetCount(TunnelEvent.KeypairExpired);
        p.A.Engine.RemovePeer(p.PeerBOnA.PublicKey); // keys zeroed: no AEAD may run with them
        p.B.Engine.RemovePeer(p.PeerAOnB.PublicKey);
        Assert.False(p.A.Engine.CompleteEncapsulate(seal, buffer));
        Assert.Equal(expiredA + 1, p.A.Engine.GetCount(TunnelEvent.KeypairExpired));
        var d = p.B.Engine.CompleteDecapsulate(open, p.A.Endpoint, sealedCopy.AsSpan(0, sent.Length));
        Assert.Equal(TunnelAction.Drop, d.Action);
        Assert.Equal(expiredB + 1, p.B.Engine.GetCount(TunnelEvent.KeypairExpired));
    }

    [Fact]
    public void The_split_path_allocates_nothing_per_packet()
    {
        using var p = new EnginePair();
        p.Handshake();
        var packet = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1, 1392);
        var buffer = new byte[2048];
        var from = p.A.Endpoint;
        int failures = 0;

        void RoundTrip()
        {
            packet.CopyTo(buffer, 16);
            var r = p.A.Engine.BeginEncapsulateInPlace(buffer, packet.Length, out var seal);
            if (!seal.IsPending || !p.A.Engine.CompleteEncapsulate(seal, buffer)) failures++;
            p.B.Engine.BeginDecapsulate(from, buffer.AsSpan(0, r.Length), out var open);
            if (!open.IsPending || p.B.Engine.CompleteDecapsulate(open, from, buffer.AsSpan(0, r.Length)).Action != TunnelAction.DeliverToTun) failures++;
        }

        for (int i = 0; i < 200; i++) RoundTrip();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 2000; i++) RoundTrip();
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, failures);
        Assert.Equal(0, after - before);
    }
}
