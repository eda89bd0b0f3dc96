namespace Gateway.Tunnel.Tests;

public class HandshakeRaceTests
{
    [Fact]
    public void Both_sides_initiating_at_once_still_converge()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.B.Engine.InitiateHandshake(p.PeerAOnB);
        p.Pump();
        // Each side answered the other's initiation, which replaced its own handshake (and index),
        // so both responses are refused, exactly as in wireguard-go. The retransmit timers, whose
        // jitter differs, break the tie.
        Assert.False(p.PeerBOnA.HasSession && p.PeerAOnB.HasSession);
        double waited = 0;
        while (!(p.PeerBOnA.HasSession && p.PeerAOnB.HasSession) && waited < 30)
        {
            p.Clock.Advance(TimeSpan.FromMilliseconds(50));
            waited += 0.05;
            p.A.Engine.Tick();
            p.B.Engine.Tick();
            p.Pump();
        }
        Assert.True(p.PeerBOnA.HasSession && p.PeerAOnB.HasSession, $"no session after {waited} s");
        Assert.InRange(waited, 5.0, 5.4); // first retransmit: RekeyTimeout + jitter
        var a = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 1);
        var b = Packets.Icmp4(p.B.TunnelAddress, p.A.TunnelAddress, 2);
        p.Send(p.A, a);
        p.Send(p.B, b);
        p.Pump();
        Assert.Contains(p.DeliveredToB, x => x.SequenceEqual(a));
        Assert.Contains(p.DeliveredToA, x => x.SequenceEqual(b));
    }

    [Fact]
    public void Response_to_a_superseded_initiation_is_ignored()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var first = p.A.Output.Drain().Single().Data;
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var second = p.A.Output.Drain().Single().Data;
        p.Deliver(p.B, p.A.Endpoint, first);
        var staleResponse = p.B.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.UnknownIndex, p.Deliver(p.A, p.B.Endpoint, staleResponse).Reason);
        Assert.False(p.PeerBOnA.HasSession);
        p.Clock.Advance(TimeSpan.FromMilliseconds(30));
        p.Deliver(p.B, p.A.Endpoint, second);
        Assert.Equal(TunnelEvent.ResponseProcessed, p.Deliver(p.A, p.B.Endpoint, p.B.Output.Drain().Single().Data).Reason);
        Assert.True(p.PeerBOnA.HasSession);
    }

    [Fact]
    public void Response_replayed_after_completion_is_refused()
    {
        using var p = new EnginePair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Deliver(p.B, p.A.Endpoint, p.A.Output.Drain().Single().Data);
        var response = p.B.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.ResponseProcessed, p.Deliver(p.A, p.B.Endpoint, response).Reason);
        // The index now belongs to a keypair, not a handshake.
        Assert.Equal(TunnelEvent.UnknownIndex, p.Deliver(p.A, p.B.Endpoint, response).Reason);
    }

    [Fact]
    public void Private_key_change_expires_sessions_and_the_next_packet_rehandshakes()
    {
        using var p = new EnginePair();
        p.Handshake();
        var newKey = new byte[32];
        Gateway.Crypto.X25519.GeneratePrivateKey(newKey);
        var newPub = new byte[32];
        Gateway.Crypto.X25519.DerivePublicKey(newKey, newPub);
        p.A.Engine.SetPrivateKey(newKey);
        p.B.Engine.RemovePeer(p.A.Key);
        var peerA2 = p.B.Engine.GetOrAddPeer(new PublicKey(newPub));
        p.B.Engine.AddAllowedIp(peerA2, Gateway.Datapath.IpPrefix.Parse("10.0.0.1/32"));
        p.A.Output.Sent.Clear();
        var ping = Packets.Icmp4(p.A.TunnelAddress, p.B.TunnelAddress, 3);
        Assert.Equal(TunnelEvent.PacketStaged, p.Send(p.A, ping).Reason);
        Assert.Single(p.A.Output.OfType(MessageType.HandshakeInitiation));
        p.Pump();
        Assert.Equal(ping, p.DeliveredToB[^1]);
        Assert.True(peerA2.HasSession);
    }
}
