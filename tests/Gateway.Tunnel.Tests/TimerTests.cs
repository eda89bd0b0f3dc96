using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

/// <summary>Whitepaper section 6 with wireguard-go's timers.go event semantics, on a fake clock.</summary>
public class TimerTests
{
    private static EnginePair NewPair(uint jitterMs = 0)
    {
        var p = new EnginePair();
        p.Random.FixedJitter = jitterMs;
        return p;
    }

    private static byte[] Ping(EnginePair p, Node from, ushort seq) =>
        Packets.Icmp4(from.TunnelAddress, (from == p.A ? p.B : p.A).TunnelAddress, seq);

    private static void Step(EnginePair p, double seconds)
    {
        p.Clock.Advance(TimeSpan.FromSeconds(seconds));
        p.A.Engine.Tick();
        p.B.Engine.Tick();
    }

    private static int Initiations(Node n) => n.Output.OfType(MessageType.HandshakeInitiation).Count();

    [Fact]
    public void Retransmits_every_rekey_timeout_then_gives_up_and_later_zeroes()
    {
        using var p = NewPair();
        p.Send(p.A, Ping(p, p.A, 1)); // staged, initiation #1; nobody answers
        Assert.Equal(1, Initiations(p.A));
        Step(p, 4.999);
        Assert.Equal(1, Initiations(p.A));
        Step(p, 0.001);
        Assert.Equal(2, Initiations(p.A));
        // wireguard-go: retries while attempts <= MaxTimerHandshakes (18): 1 + 19 initiations.
        for (int i = 0; i < 30; i++) Step(p, 5);
        Assert.Equal(1 + WireGuardConstants.MaxTimerHandshakes + 1, Initiations(p.A));
        Assert.Equal(0, p.PeerBOnA.StagedCount); // given up: staged packets dropped
        Assert.NotEqual(Peer.Disarmed, p.PeerBOnA.ZeroKeyMaterialAt);
    }

    /// <summary>A clock that counts whole milliseconds, like the daemon's <see cref="CoarseTimeProvider"/>.</summary>
    private sealed class MillisecondClock(FakeClock inner) : TimeProvider
    {
        public override long TimestampFrequency => 1000;
        public override long GetTimestamp() => inner.GetTimestamp() / 1_000_000;
        public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();
    }

    [Fact]
    public void A_millisecond_clock_keeps_the_rekey_timeout()
    {
        var clock = new FakeClock();
        var random = new FakeRandom { FixedJitter = 0 };
        var output = new CapturingOutput();
        using var engine = new WireGuardEngine(output, new WireGuardEngineOptions { Clock = new MillisecondClock(clock), Random = random });
        var key = new byte[32];
        X25519.GeneratePrivateKey(key);
        engine.SetPrivateKey(key);
        var peerKey = new byte[32];
        X25519.GeneratePrivateKey(peerKey);
        X25519.DerivePublicKey(peerKey, peerKey);
        var peer = engine.GetOrAddPeer(new PublicKey(peerKey));
        engine.SetEndpoint(peer, new IpEndpoint(IpAddress.Parse("192.0.2.9"), 51820));
        engine.InitiateHandshake(peer);
        clock.Advance(TimeSpan.FromMilliseconds(4999));
        engine.Tick();
        Assert.Single(output.OfType(MessageType.HandshakeInitiation));
        clock.Advance(TimeSpan.FromMilliseconds(1));
        engine.Tick();
        Assert.Equal(2, output.OfType(MessageType.HandshakeInitiation).Count());
    }

    [Fact]
    public void Retransmit_includes_jitter()
    {
        using var p = NewPair(jitterMs: 200);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        Step(p, 5.1);
        Assert.Equal(1, Initiations(p.A));
        Step(p, 0.1);
        Assert.Equal(2, Initiations(p.A));
    }

    [Fact]
    public void Retransmit_stops_when_the_handshake_completes()
    {
        using var p = NewPair();
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Pump();
        p.A.Output.Sent.Clear();
        Step(p, 6);
        Assert.Equal(0, Initiations(p.A));
    }

    [Fact]
    public void At_most_one_initiation_per_rekey_timeout()
    {
        using var p = NewPair();
        for (int i = 0; i < 10; i++)
        {
            p.A.Engine.InitiateHandshake(p.PeerBOnA);
            p.Clock.Advance(TimeSpan.FromMilliseconds(400));
        }
        Assert.Equal(1, Initiations(p.A));
        p.Clock.Advance(TimeSpan.FromSeconds(1));
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        Assert.Equal(2, Initiations(p.A));
    }

    [Fact]
    public void Passive_keepalive_after_receiving_data_and_sending_nothing()
    {
        using var p = NewPair();
        p.Handshake();
        p.Send(p.A, Ping(p, p.A, 1));
        p.B.Output.Sent.Clear();
        Step(p, 9.9);
        Assert.Empty(p.B.Output.Sent);
        Step(p, 0.1);
        var keepalive = Assert.Single(p.B.Output.Sent);
        Assert.Equal(Messages.KeepaliveSize, keepalive.Data.Length);
    }

    [Fact]
    public void No_passive_keepalive_when_data_went_back()
    {
        using var p = NewPair();
        p.Handshake();
        p.Send(p.A, Ping(p, p.A, 1));
        Step(p, 3);
        p.Send(p.B, Ping(p, p.B, 1)); // any authenticated send cancels the keepalive
        p.B.Output.Sent.Clear();
        Step(p, 8);
        Assert.Empty(p.B.Output.Sent);
    }

    [Fact]
    public void Another_keepalive_when_data_kept_arriving()
    {
        using var p = NewPair();
        p.Handshake();
        p.Send(p.A, Ping(p, p.A, 1));
        Step(p, 5);
        p.Send(p.A, Ping(p, p.A, 2)); // keepalive already pending: need another
        p.B.Output.Sent.Clear();
        Step(p, 5);
        Assert.Single(p.B.Output.Sent);
        Step(p, 9.9);
        Assert.Single(p.B.Output.Sent);
        Step(p, 0.1);
        Assert.Equal(2, p.B.Output.Sent.Count);
    }

    [Fact]
    public void New_handshake_when_sent_data_gets_no_answer()
    {
        using var p = NewPair(jitterMs: 100);
        p.Handshake();
        p.A.Output.Sent.Clear();
        var buf = new byte[200];
        p.A.Engine.Encapsulate(Ping(p, p.A, 1), buf); // sent into the void
        Step(p, 15.0);
        Assert.Equal(0, Initiations(p.A));
        Step(p, 0.1);
        Assert.Equal(1, Initiations(p.A));
    }

    [Fact]
    public void Any_authenticated_receive_cancels_the_new_handshake_timer()
    {
        using var p = NewPair();
        p.Handshake();
        p.Send(p.A, Ping(p, p.A, 1));
        Step(p, 10); // B's passive keepalive
        p.Pump();
        p.A.Output.Sent.Clear();
        Step(p, 10);
        Assert.Equal(0, Initiations(p.A));
    }

    [Fact]
    public void Initiator_rekeys_after_time_when_sending_responder_does_not()
    {
        using var p = NewPair();
        p.Handshake();
        p.Clock.Advance(TimeSpan.FromSeconds(121));
        p.A.Output.Sent.Clear();
        p.B.Output.Sent.Clear();
        Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.B, Ping(p, p.B, 1)).Action);
        Assert.Equal(0, Initiations(p.B));
        Assert.Equal(TunnelAction.SendToNetwork, p.Send(p.A, Ping(p, p.A, 1)).Action);
        Assert.Equal(1, Initiations(p.A));
    }

    [Fact]
    public void Rekey_after_messages_on_either_side()
    {
        using var p = NewPair();
        p.Handshake();
        p.Send(p.B, Ping(p, p.B, 1));
        p.Clock.Advance(TimeSpan.FromSeconds(6)); // past B's own one-initiation-per-RekeyTimeout limit
        lock (p.PeerAOnB.Sync) p.PeerAOnB.Current!.SendCounter = WireGuardConstants.RekeyAfterMessages;
        p.B.Output.Sent.Clear();
        Assert.Equal(TunnelAction.SendToNetwork, p.B.Engine.Encapsulate(Ping(p, p.B, 2), new byte[200]).Action);
        Assert.Equal(1, Initiations(p.B));
    }

    [Fact]
    public void Reject_after_messages_stages_and_rehandshakes()
    {
        using var p = NewPair();
        p.Handshake();
        lock (p.PeerBOnA.Sync) p.PeerBOnA.Current!.SendCounter = WireGuardConstants.RejectAfterMessages;
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.A.Output.Sent.Clear();
        Assert.Equal(TunnelEvent.PacketStaged, p.A.Engine.Encapsulate(Ping(p, p.A, 1), new byte[200]).Reason);
        Assert.Equal(1, Initiations(p.A));
        p.Pump();
        Assert.Equal(Ping(p, p.A, 1), p.DeliveredToB[^1]);
    }

    [Fact]
    public void Reject_after_time_on_send_and_receive()
    {
        using var p = NewPair();
        p.Handshake();
        var buf = new byte[200];
        var r = p.B.Engine.Encapsulate(Ping(p, p.B, 1), buf);
        var late = buf[..r.Length];
        p.Clock.Advance(TimeSpan.FromSeconds(180));
        Assert.Equal(TunnelEvent.KeypairExpired, p.Deliver(p.A, p.B.Endpoint, late).Reason);
        p.A.Output.Sent.Clear();
        Assert.Equal(TunnelEvent.PacketStaged, p.A.Engine.Encapsulate(Ping(p, p.A, 1), buf).Reason);
        Assert.Equal(1, Initiations(p.A));
    }

    [Fact]
    public void Initiator_rehandshakes_once_when_receiving_near_reject_after_time()
    {
        using var p = NewPair();
        p.Handshake();
        p.Clock.Advance(TimeSpan.FromSeconds(180 - 10 - 5 + 1));
        p.A.Output.Sent.Clear();
        p.Send(p.B, Ping(p, p.B, 1));
        Assert.Equal(1, Initiations(p.A));
        p.A.Output.Sent.Clear();
        p.Clock.Advance(TimeSpan.FromSeconds(6));
        p.Send(p.B, Ping(p, p.B, 2));
        Assert.Equal(0, Initiations(p.A)); // sent "last minute" handshake only once
    }

    [Fact]
    public void All_key_material_zeroed_after_three_reject_after_times()
    {
        using var p = NewPair();
        p.Handshake();
        Keypair kp;
        lock (p.PeerBOnA.Sync) kp = p.PeerBOnA.Current!;
        Step(p, 3 * 180 - 1);
        Assert.NotEqual(0u, p.PeerBOnA.CurrentLocalIndex);
        Step(p, 1);
        Assert.Equal(0u, p.PeerBOnA.CurrentLocalIndex);
        Assert.Equal(0u, p.PeerAOnB.CurrentLocalIndex);
        Assert.True(kp.Disposed);
        Assert.Equal(Noise.HandshakeState.Zeroed, p.PeerBOnA.Handshake.State);
        Assert.All(p.PeerBOnA.Handshake.ChainKey, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Persistent_keepalive_sends_on_enable_and_when_idle()
    {
        using var p = NewPair();
        p.Handshake();
        p.A.Output.Sent.Clear();
        p.A.Engine.SetPersistentKeepalive(p.PeerBOnA, 25);
        Assert.Equal(Messages.KeepaliveSize, Assert.Single(p.A.Output.Drain()).Data.Length);
        Step(p, 24.9);
        Assert.Empty(p.A.Output.Sent);
        Step(p, 0.1);
        Assert.Equal(Messages.KeepaliveSize, Assert.Single(p.A.Output.Drain()).Data.Length);
        // Traffic pushes it back: B's data at +20 s makes A send a passive keepalive 10 s later,
        // and that authenticated send re-arms the persistent timer for another 25 s.
        Step(p, 20);
        p.Send(p.B, Ping(p, p.B, 1));
        Step(p, 10);
        Assert.Single(p.A.Output.Drain());
        Step(p, 24.9);
        Assert.Empty(p.A.Output.Sent);
        Step(p, 0.1);
        Assert.Equal(Messages.KeepaliveSize, Assert.Single(p.A.Output.Drain()).Data.Length);
    }

    [Fact]
    public void Persistent_keepalive_without_session_starts_a_handshake()
    {
        using var p = NewPair();
        p.B.Engine.SetPersistentKeepalive(p.PeerAOnB, 5);
        Assert.Equal(1, Initiations(p.B));
        p.Pump();
        Assert.True(p.PeerAOnB.HasSession);
        Assert.True(p.PeerBOnA.HasSession);
    }
}
