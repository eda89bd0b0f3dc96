using System.Buffers.Binary;
using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

public class HandshakeTests
{
    private static byte[] Ping(EnginePair p, Node from, ushort seq, int payload = 32) =>
        Packets.Icmp4(from.TunnelAddress, (from == p.A ? p.B : p.A).TunnelAddress, seq, payload);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Handshake_then_transport_both_ways(bool withPsk)
    {
        byte[]? psk = withPsk ? Enumerable.Range(1, 32).Select(i => (byte)i).ToArray() : null;
        using var p = new EnginePair(psk);
        p.Handshake();
        // Initiation, response, keepalive (the initiator confirms the session).
        Assert.Contains(p.Results, r => r.Reason == TunnelEvent.InitiationProcessed);
        Assert.Contains(p.Results, r => r.Reason == TunnelEvent.ResponseProcessed);
        Assert.Contains(p.Results, r => r.Reason == TunnelEvent.KeepaliveReceived);
        Assert.True(p.PeerBOnA.HasSession);
        Assert.True(p.PeerAOnB.HasSession);

        for (ushort i = 0; i < 20; i++)
        {
            var fromA = Ping(p, p.A, i, i * 7);
            Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.A, fromA).Action);
            Assert.Equal(fromA, p.DeliveredToB[^1]);
            var fromB = Ping(p, p.B, i, 100 + i);
            Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.B, fromB).Action);
            Assert.Equal(fromB, p.DeliveredToA[^1]);
        }
        Assert.NotNull(p.PeerBOnA.LastHandshake);
        Assert.Equal(p.Clock.GetUtcNow(), p.PeerAOnB.LastHandshake);
    }

    [Fact]
    public void Mismatched_psk_fails_the_handshake()
    {
        using var p = new EnginePair();
        p.A.Engine.SetPresharedKey(p.PeerBOnA, Enumerable.Repeat((byte)9, 32).ToArray());
        p.Handshake();
        Assert.Contains(p.Results, r => r.Reason == TunnelEvent.HandshakeFailed);
        Assert.False(p.PeerBOnA.HasSession);
    }

    [Fact]
    public void First_packet_is_staged_and_flushed_when_the_handshake_completes()
    {
        using var p = new EnginePair();
        var packets = Enumerable.Range(0, 5).Select(i => Ping(p, p.A, (ushort)i)).ToList();
        foreach (var pkt in packets)
            Assert.Equal(TunnelEvent.PacketStaged, p.Send(p.A, pkt).Reason);
        Assert.Single(p.A.Output.OfType(MessageType.HandshakeInitiation)); // one initiation, not five
        Assert.Equal(5, p.PeerBOnA.StagedCount);
        p.Pump();
        Assert.Equal(0, p.PeerBOnA.StagedCount);
        Assert.Equal(packets, p.DeliveredToB);
    }

    [Fact]
    public void Staged_queue_is_bounded_and_drops_the_oldest()
    {
        using var p = new EnginePair();
        for (int i = 0; i < WireGuardConstants.MaxStagedPackets + 10; i++) p.Send(p.A, Ping(p, p.A, (ushort)i));
        Assert.Equal(WireGuardConstants.MaxStagedPackets, p.PeerBOnA.StagedCount);
        Assert.Equal(10, p.A.Engine.GetCount(TunnelEvent.StagedOverflow));
        p.Pump();
        Assert.Equal(WireGuardConstants.MaxStagedPackets, p.DeliveredToB.Count);
        Assert.Equal(Ping(p, p.A, 10), p.DeliveredToB[0]);
    }

    [Fact]
    public void Responder_keypair_waits_in_next_until_the_first_transport_message()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        p.Deliver(p.B, p.A.Endpoint, init);
        // B derived a keypair but may not send with it yet.
        Assert.NotEqual(0u, p.PeerAOnB.NextLocalIndex);
        Assert.Equal(0u, p.PeerAOnB.CurrentLocalIndex);
        Assert.False(p.PeerAOnB.HasSession);
        var response = p.B.Output.Drain().Single().Data;
        p.Deliver(p.A, p.B.Endpoint, response);
        Assert.True(p.PeerBOnA.HasSession); // initiator uses it at once
        uint next = p.PeerAOnB.NextLocalIndex;
        var keepalive = p.A.Output.Drain().Single().Data;
        Assert.Equal(Messages.KeepaliveSize, keepalive.Length);
        Assert.Equal(TunnelEvent.KeepaliveReceived, p.Deliver(p.B, p.A.Endpoint, keepalive).Reason);
        Assert.Equal(next, p.PeerAOnB.CurrentLocalIndex);
        Assert.Equal(0u, p.PeerAOnB.NextLocalIndex);
        Assert.True(p.PeerAOnB.HasSession);
    }

    [Fact]
    public void Rekey_rotates_current_to_previous_and_old_packets_still_open()
    {
        using var p = new EnginePair();
        p.Handshake();
        uint first = p.PeerBOnA.CurrentLocalIndex;
        // A seals a packet with the first session but it is delivered only after the rekey.
        var buffer = new byte[200];
        var old = p.A.Engine.Encapsulate(Ping(p, p.A, 1), buffer);
        var inFlight = buffer.AsSpan(0, old.Length).ToArray();
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.Handshake();
        Assert.NotEqual(first, p.PeerBOnA.CurrentLocalIndex);
        Assert.Equal(first, p.PeerBOnA.PreviousLocalIndex);
        Assert.Equal(TunnelAction.DeliverToTun, p.Deliver(p.B, p.A.Endpoint, inFlight).Action);
    }

    [Fact]
    public void Tampered_handshake_messages_are_dropped()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        // Every byte of the initiation matters: the header, the indices under mac1, the macs.
        for (int i = 0; i < Messages.InitiationSize - 16; i++)
        {
            var copy = (byte[])init.Clone();
            copy[i] ^= 0x01;
            var r = p.Deliver(p.B, p.A.Endpoint, copy);
            Assert.True(r.Action == TunnelAction.Drop, $"byte {i}: {r}");
            Assert.Empty(p.B.Output.Sent);
        }
        // A flipped mac2 is ignored while not under load (wireguard-go checks mac2 only under load).
        var ok = p.Deliver(p.B, p.A.Endpoint, init);
        Assert.Equal(TunnelEvent.InitiationProcessed, ok.Reason);
        var response = p.B.Output.Drain().Single().Data;
        for (int i = 0; i < Messages.ResponseSize - 16; i++)
        {
            var copy = (byte[])response.Clone();
            copy[i] ^= 0x80;
            var r = p.Deliver(p.A, p.B.Endpoint, copy);
            Assert.True(r.Action == TunnelAction.Drop, $"byte {i}: {r}");
        }
        Assert.False(p.PeerBOnA.HasSession);
        Assert.Equal(TunnelEvent.ResponseProcessed, p.Deliver(p.A, p.B.Endpoint, response).Reason);
        Assert.True(p.PeerBOnA.HasSession);
    }

    [Fact]
    public void Truncated_and_extended_messages_are_invalid()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        for (int len = 0; len < init.Length; len++)
            Assert.Equal(TunnelEvent.InvalidMessage, p.Deliver(p.B, p.A.Endpoint, init[..len]).Reason);
        Assert.Equal(TunnelEvent.InvalidMessage, p.Deliver(p.B, p.A.Endpoint, [.. init, 0]).Reason);
        p.Deliver(p.B, p.A.Endpoint, init);
        var response = p.B.Output.Drain().Single().Data;
        for (int len = 0; len < response.Length; len++)
            Assert.Equal(TunnelEvent.InvalidMessage, p.Deliver(p.A, p.B.Endpoint, response[..len]).Reason);
        p.Deliver(p.A, p.B.Endpoint, response);
        var keepalive = p.A.Output.Drain().Single().Data;
        for (int len = 0; len < Messages.MinTransportSize; len++)
            Assert.Equal(TunnelEvent.InvalidMessage, p.Deliver(p.B, p.A.Endpoint, keepalive[..len]).Reason);
    }

    [Fact]
    public void Replayed_initiation_is_refused_by_its_timestamp()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        p.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(TunnelEvent.StaleOrReplayedInitiation, p.Deliver(p.B, p.A.Endpoint, init).Reason);
    }

    [Fact]
    public void Second_initiation_within_20ms_is_refused_as_flood()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var first = p.A.Output.Drain().Single().Data;
        // A second, genuinely newer initiation from A (its own rate limit forces a clock jump,
        // which is undone for B by building it on a second engine with A's key).
        var clock2 = new FakeClock();
        clock2.Advance(TimeSpan.FromHours(1)); // later TAI64N stamp
        var out2 = new CapturingOutput();
        using var a2 = new WireGuardEngine(out2, new WireGuardEngineOptions { Clock = clock2 });
        a2.SetPrivateKey(p.A.PrivateKey);
        var peer = a2.GetOrAddPeer(p.B.Key);
        a2.SetEndpoint(peer, p.B.Endpoint);
        a2.InitiateHandshake(peer);
        var second = out2.Sent.Single().Data;

        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, first).Reason);
        p.Clock.Advance(TimeSpan.FromMilliseconds(10));
        Assert.Equal(TunnelEvent.InitiationFlood, p.Deliver(p.B, p.A.Endpoint, second).Reason);
        p.Clock.Advance(TimeSpan.FromMilliseconds(15));
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, second).Reason);
    }

    [Fact]
    public void Initiation_from_unknown_key_is_dropped_without_reply()
    {
        using var p = new EnginePair();
        p.B.Engine.RemovePeer(p.A.Key);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.HandshakeFailed, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        Assert.Empty(p.B.Output.Sent);
    }

    [Fact]
    public void Low_order_peer_key_never_produces_a_handshake()
    {
        using var p = new EnginePair();
        // The all-zero point and a known small-order point of Curve25519.
        byte[][] lowOrder =
        [
            new byte[32],
            Convert.FromHexString("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        ];
        foreach (var key in lowOrder)
        {
            var bad = p.A.Engine.GetOrAddPeer(new PublicKey(key));
            p.A.Engine.SetEndpoint(bad, new IpEndpoint(IpAddress.Parse("192.0.2.9"), 1));
            p.A.Engine.InitiateHandshake(bad);
            Assert.Empty(p.A.Output.Sent);
        }
    }

    [Fact]
    public void Low_order_ephemeral_in_initiation_is_dropped()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        init.AsSpan(Messages.InitEphemeral, 32).Clear();
        FixMac1(init, p.B.PublicKey);
        Assert.Equal(TunnelEvent.HandshakeFailed, p.Deliver(p.B, p.A.Endpoint, init).Reason);
    }

    internal static void FixMac1(byte[] message, byte[] receiverPublic)
    {
        var key = new byte[32];
        var h = new Blake2sHasher(32);
        h.Update("mac1----"u8);
        h.Update(receiverPublic);
        h.Finish(key);
        Blake2s.Hash(key, message.AsSpan(0, message.Length - 32), message.AsSpan(message.Length - 32, 16));
    }

    [Fact]
    public void Transport_replay_reorder_and_tamper()
    {
        using var p = new EnginePair();
        p.Handshake();
        var sealedPackets = new List<byte[]>();
        for (ushort i = 0; i < 10; i++)
        {
            var buf = new byte[200];
            var r = p.A.Engine.Encapsulate(Ping(p, p.A, i), buf);
            Assert.Equal(TunnelAction.SendToNetwork, r.Action);
            Assert.Equal(0, (r.Length - Messages.TransportOverhead) % 16); // padded to 16
            sealedPackets.Add(buf[..r.Length]);
        }
        // Reordered delivery is fine.
        foreach (int i in new[] { 3, 1, 0, 2, 9, 4, 8, 5, 7, 6 })
            Assert.Equal(TunnelAction.DeliverToTun, p.Deliver(p.B, p.A.Endpoint, sealedPackets[i]).Action);
        // Replays are not.
        foreach (var s in sealedPackets)
            Assert.Equal(TunnelEvent.Replayed, p.Deliver(p.B, p.A.Endpoint, s).Reason);
        // Tampering anywhere after the header fails authentication; in the index, it is unknown.
        var buf2 = new byte[200];
        var r2 = p.A.Engine.Encapsulate(Ping(p, p.A, 77), buf2);
        var fresh = buf2[..r2.Length];
        for (int i = 8; i < fresh.Length; i++)
        {
            var copy = (byte[])fresh.Clone();
            copy[i] ^= 0x20;
            Assert.Equal(TunnelAction.Drop, p.Deliver(p.B, p.A.Endpoint, copy).Action);
        }
        var badIndex = (byte[])fresh.Clone();
        badIndex[5] ^= 1;
        Assert.Equal(TunnelEvent.UnknownIndex, p.Deliver(p.B, p.A.Endpoint, badIndex).Reason);
        // The genuine one still opens: failures did not advance the window.
        Assert.Equal(TunnelAction.DeliverToTun, p.Deliver(p.B, p.A.Endpoint, fresh).Action);
        Assert.Equal(Ping(p, p.A, 77), p.DeliveredToB[^1]);
    }

    [Fact]
    public void Inner_source_outside_allowed_ips_is_dropped()
    {
        using var p = new EnginePair();
        p.Handshake();
        // B has no route for 10.9.9.9 but A routes 10.0.0.2: spoof a source from A.
        var spoofed = Packets.Icmp4(IpAddress.Parse("10.9.9.9"), p.B.TunnelAddress, 1);
        var r = p.Send(p.A, spoofed);
        Assert.Equal(TunnelAction.SendToNetwork, r.Action);
        Assert.Equal(TunnelEvent.InnerSourceNotAllowed, p.Results[^1].Reason);
        Assert.Empty(p.DeliveredToB);
    }

    [Fact]
    public void Ipv6_inner_packets_route_and_check()
    {
        using var p = new EnginePair();
        p.A.Engine.AddAllowedIp(p.PeerBOnA, IpPrefix.Parse("fd00::2/128"));
        p.B.Engine.AddAllowedIp(p.PeerAOnB, IpPrefix.Parse("fd00::1/128"));
        p.Handshake();
        var pkt = Packets.Ip6(IpAddress.Parse("fd00::1"), IpAddress.Parse("fd00::2"), 100);
        Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.A, pkt).Action);
        Assert.Equal(pkt, p.DeliveredToB[^1]);
    }

    [Fact]
    public void Outbound_without_route_or_non_ip_is_dropped()
    {
        using var p = new EnginePair();
        var buf = new byte[256];
        Assert.Equal(TunnelEvent.NoRoute, p.A.Engine.Encapsulate(Packets.Icmp4(p.A.TunnelAddress, IpAddress.Parse("10.1.1.1"), 1), buf).Reason);
        Assert.Equal(TunnelEvent.NotIpPacket, p.A.Engine.Encapsulate(new byte[] { 0x12, 0, 0 }, buf).Reason);
        Assert.Equal(TunnelEvent.BufferTooSmall, p.A.Engine.Encapsulate(new byte[100], new byte[50]).Reason);
    }

    [Fact]
    public void Endpoint_roams_on_authenticated_packets_only()
    {
        using var p = new EnginePair();
        p.Handshake();
        var newPlace = new IpEndpoint(IpAddress.Parse("198.51.100.7"), 4444);
        var buf = new byte[200];
        var r = p.A.Engine.Encapsulate(Ping(p, p.A, 5), buf);
        var datagram = buf[..r.Length];
        var forged = (byte[])datagram.Clone();
        forged[^1] ^= 1;
        p.B.Engine.Decapsulate(newPlace, forged);
        Assert.Equal(p.A.Endpoint, p.PeerAOnB.Endpoint);
        p.B.Engine.Decapsulate(newPlace, datagram);
        Assert.Equal(newPlace, p.PeerAOnB.Endpoint);
    }

    [Fact]
    public void Endpoint_keeps_the_local_address_packets_arrive_on_and_a_handshake_retry_forgets_it()
    {
        // Source address stickiness: the bind reports the local address a datagram arrived on, the
        // peer's endpoint keeps it (replies leave from it) and roaming replaces it; a handshake that
        // goes unanswered clears it, as the Linux driver and wireguard-go do, in case it is the cause.
        using var p = new EnginePair();
        p.Handshake();
        var second = IpAddress.Parse("198.51.100.20");
        var buf = new byte[200];
        var r = p.A.Engine.Encapsulate(Ping(p, p.A, 5), buf);
        p.B.Engine.Decapsulate(p.A.Endpoint.WithLocal(second, 4), buf[..r.Length]);
        Assert.True(p.PeerAOnB.Endpoint.HasLocal);
        Assert.Equal(second, p.PeerAOnB.Endpoint.LocalAddress);
        Assert.Equal(4, p.PeerAOnB.Endpoint.LocalInterface);

        var reply = p.Send(p.B, Ping(p, p.B, 6));
        Assert.Equal(TunnelAction.SendToNetwork, reply.Action);
        Assert.Equal(second, reply.Endpoint.LocalAddress); // the reply leaves from it

        r = p.A.Engine.Encapsulate(Ping(p, p.A, 7), buf);
        p.B.Engine.Decapsulate(p.A.Endpoint.WithLocal(p.B.Endpoint.Address, 4), buf[..r.Length]);
        Assert.Equal(p.B.Endpoint.Address, p.PeerAOnB.Endpoint.LocalAddress);

        // B starts a handshake that A never answers: the retry goes out without the source.
        p.Clock.Advance(TimeSpan.FromSeconds(6)); // past the one-initiation-per-RekeyTimeout limit
        p.B.Engine.InitiateHandshake(p.PeerAOnB);
        Assert.True(p.PeerAOnB.Endpoint.HasLocal);
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.B.Engine.Tick();
        Assert.False(p.PeerAOnB.Endpoint.HasLocal);
        Assert.Equal(p.A.Endpoint, p.PeerAOnB.Endpoint);
    }

    [Fact]
    public void Responder_without_endpoint_learns_it_from_the_initiation()
    {
        using var p = new EnginePair(endpointOnB: false);
        var buf = new byte[256];
        Assert.Equal(TunnelEvent.PacketStaged, p.B.Engine.Encapsulate(Ping(p, p.B, 1), buf).Reason);
        Assert.Empty(p.B.Output.Sent); // no endpoint: nothing can be sent yet
        p.Handshake();
        Assert.Equal(p.A.Endpoint, p.PeerAOnB.Endpoint);
        Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.B, Ping(p, p.B, 2)).Action);
    }

    [Fact]
    public void Transfer_counters_count_whole_datagrams()
    {
        using var p = new EnginePair();
        p.Handshake();
        var pkt = Ping(p, p.A, 1, 50); // 78 bytes -> padded 80 -> 112-byte datagram
        p.Send(p.A, pkt);
        long expectedA = Messages.InitiationSize + Messages.KeepaliveSize + Messages.TransportSize(pkt.Length);
        Assert.Equal(expectedA, p.PeerBOnA.TxBytes);
        Assert.Equal(expectedA, p.PeerAOnB.RxBytes);
        Assert.Equal(Messages.ResponseSize, p.PeerAOnB.TxBytes);
        Assert.Equal(Messages.ResponseSize, p.PeerBOnA.RxBytes);
        Assert.Equal(112, Messages.TransportSize(pkt.Length));
    }

    [Fact]
    public void Header_fields_are_little_endian_and_in_place()
    {
        using var p = new EnginePair();
        p.Handshake();
        var pkt = Ping(p, p.A, 1);
        var buffer = new byte[16 + pkt.Length + 32];
        pkt.CopyTo(buffer, 16);
        var r = p.A.Engine.EncapsulateInPlace(buffer, pkt.Length);
        Assert.Equal(TunnelAction.SendToNetwork, r.Action);
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(buffer));
        Assert.Equal(p.PeerAOnB.CurrentLocalIndex, BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(4)));
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(8))); // counter 0 was the keepalive
    }
}
