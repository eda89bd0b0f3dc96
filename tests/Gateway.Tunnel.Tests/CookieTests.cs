using Gateway.Datapath;

namespace Gateway.Tunnel.Tests;

public class CookieTests
{
    private static void Step(EnginePair p, double seconds)
    {
        p.Clock.Advance(TimeSpan.FromSeconds(seconds));
        p.A.Engine.Tick();
        p.B.Engine.Tick();
    }

    [Fact]
    public void Under_load_one_address_gets_a_burst_of_cookie_replies_then_twenty_a_second()
    {
        // A flood from one address costs a mac1 check per message, not a reply each: the cookie
        // replies to it are rate limited like the handshakes of senders that proved their address.
        using var p = new EnginePair();
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        var outcomes = Enumerable.Range(0, 40).Select(_ => p.Deliver(p.B, p.A.Endpoint, init).Reason).ToList();
        Assert.Equal(WireGuardConstants.InitiationBurst, outcomes.Count(r => r == TunnelEvent.CookieReplySent));
        Assert.Equal(40 - WireGuardConstants.InitiationBurst, outcomes.Count(r => r == TunnelEvent.CookieReplyRateLimited));
        Assert.Equal(WireGuardConstants.InitiationBurst, p.B.Output.Drain().Count);

        // Another address is not held back by it; the first one earns replies again as time passes.
        var other = new IpEndpoint(IpAddress.Parse("198.51.100.9"), 7777);
        Assert.Equal(TunnelEvent.CookieReplySent, p.Deliver(p.B, other, init).Reason);
        p.Clock.Advance(TimeSpan.FromSeconds(0.1));
        outcomes = Enumerable.Range(0, 40).Select(_ => p.Deliver(p.B, p.A.Endpoint, init).Reason).ToList();
        Assert.Equal(WireGuardConstants.InitiationsPerSecond / 10, outcomes.Count(r => r == TunnelEvent.CookieReplySent));
        Assert.True(p.B.Engine.IsUnderLoad);
    }

    [Fact]
    public void Under_load_initiations_get_a_cookie_reply_then_succeed_with_mac2()
    {
        using var p = new EnginePair();
        p.Random.FixedJitter = 0;
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        Assert.True(init.AsSpan(132, 16).IndexOfAnyExcept((byte)0) < 0); // no cookie yet: mac2 zero
        Assert.Equal(TunnelEvent.CookieReplySent, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        var reply = p.B.Output.Drain().Single();
        Assert.Equal(p.A.Endpoint, reply.To);
        Assert.Equal(MessageType.CookieReply, Messages.Classify(reply.Data));
        Assert.Equal(TunnelEvent.CookieReplyProcessed, p.Deliver(p.A, p.B.Endpoint, reply.Data).Reason);
        Assert.False(p.PeerBOnA.HasSession);

        Step(p, 5); // retransmit, now with mac2
        var retry = p.A.Output.Drain().Single().Data;
        Assert.True(retry.AsSpan(132, 16).IndexOfAnyExcept((byte)0) >= 0);
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, retry).Reason);
        p.Pump();
        Assert.True(p.PeerBOnA.HasSession);
        Assert.True(p.PeerAOnB.HasSession);
    }

    [Fact]
    public void Cookie_is_bound_to_the_source_address_and_port()
    {
        using var p = new EnginePair();
        p.Random.FixedJitter = 0;
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Deliver(p.B, p.A.Endpoint, p.A.Output.Drain().Single().Data);
        p.Deliver(p.A, p.B.Endpoint, p.B.Output.Drain().Single().Data);
        Step(p, 5);
        var retry = p.A.Output.Drain().Single().Data;
        var elsewhere = new IpEndpoint(p.A.Endpoint.Address, (ushort)(p.A.Endpoint.Port + 1));
        Assert.Equal(TunnelEvent.CookieReplySent, p.Deliver(p.B, elsewhere, retry).Reason);
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, retry).Reason);
    }

    [Fact]
    public void Tampered_or_unsolicited_cookie_replies_are_refused()
    {
        using var p = new EnginePair();
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Deliver(p.B, p.A.Endpoint, p.A.Output.Drain().Single().Data);
        var reply = p.B.Output.Drain().Single().Data;
        for (int i = 8; i < reply.Length; i++)
        {
            var copy = (byte[])reply.Clone();
            copy[i] ^= 4;
            Assert.Equal(TunnelEvent.CookieReplyInvalid, p.Deliver(p.A, p.B.Endpoint, copy).Reason);
        }
        var unknown = (byte[])reply.Clone();
        unknown[4] ^= 0xff;
        Assert.Equal(TunnelEvent.UnknownIndex, p.Deliver(p.A, p.B.Endpoint, unknown).Reason);
        Assert.Equal(TunnelEvent.CookieReplyProcessed, p.Deliver(p.A, p.B.Endpoint, reply).Reason);
    }

    [Fact]
    public void Held_cookie_expires_after_cookie_refresh_time()
    {
        using var p = new EnginePair();
        p.Random.FixedJitter = 0;
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Deliver(p.B, p.A.Endpoint, p.A.Output.Drain().Single().Data);
        p.Deliver(p.A, p.B.Endpoint, p.B.Output.Drain().Single().Data);
        p.Clock.Advance(TimeSpan.FromSeconds(121));
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var late = p.A.Output.Drain().Single().Data;
        Assert.True(late.AsSpan(132, 16).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Under_load_initiations_are_rate_limited_per_source()
    {
        using var p = new EnginePair();
        p.Random.FixedJitter = 0;
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        p.Deliver(p.B, p.A.Endpoint, p.A.Output.Drain().Single().Data);
        p.Deliver(p.A, p.B.Endpoint, p.B.Output.Drain().Single().Data);
        Step(p, 5);
        var withMac2 = p.A.Output.Drain().Single().Data;
        // Burst of 5 passes the limiter (later copies fail the timestamp check), the 6th is limited.
        var reasons = Enumerable.Range(0, 7).Select(_ => p.Deliver(p.B, p.A.Endpoint, withMac2).Reason).ToList();
        Assert.Equal(TunnelEvent.InitiationProcessed, reasons[0]);
        Assert.All(reasons.Skip(1).Take(4), r => Assert.Equal(TunnelEvent.StaleOrReplayedInitiation, r));
        Assert.Equal(TunnelEvent.RateLimited, reasons[5]);
        Assert.Equal(TunnelEvent.RateLimited, reasons[6]);
        p.Clock.Advance(TimeSpan.FromMilliseconds(50)); // one token per 1/20 s
        Assert.Equal(TunnelEvent.StaleOrReplayedInitiation, p.Deliver(p.B, p.A.Endpoint, withMac2).Reason);
        Assert.Equal(TunnelEvent.RateLimited, p.Deliver(p.B, p.A.Endpoint, withMac2).Reason);
    }

    [Fact]
    public void Rate_limiter_is_per_address_with_burst_five_at_twenty_per_second()
    {
        var limiter = new Noise.InitiationRateLimiter();
        var a = IpAddress.Parse("192.0.2.1");
        var b = IpAddress.Parse("2001:db8::1");
        long now = 5 * WireGuardConstants.Second;
        for (int i = 0; i < 5; i++) Assert.True(limiter.Allow(a, now));
        Assert.False(limiter.Allow(a, now));
        Assert.True(limiter.Allow(b, now));
        now += WireGuardConstants.Second / 20;
        Assert.True(limiter.Allow(a, now));
        Assert.False(limiter.Allow(a, now));
        // A full second refills the burst (capped at 5).
        now += 10 * WireGuardConstants.Second;
        for (int i = 0; i < 5; i++) Assert.True(limiter.Allow(a, now));
        Assert.False(limiter.Allow(a, now));
        Assert.Equal(1, limiter.Count); // b was idle > 1 s and swept
    }

    [Fact]
    public void High_handshake_rate_puts_the_engine_under_load_for_a_second()
    {
        using var p = new EnginePair(underLoad: 3);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        p.B.Output.Sent.Clear();
        p.Deliver(p.B, p.A.Endpoint, init);
        p.Deliver(p.B, p.A.Endpoint, init);
        Assert.False(p.B.Engine.IsUnderLoad);
        Assert.Equal(TunnelEvent.CookieReplySent, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        Assert.True(p.B.Engine.IsUnderLoad);
        p.Clock.Advance(TimeSpan.FromMilliseconds(1001));
        Assert.False(p.B.Engine.IsUnderLoad);
    }

    [Fact]
    public void Bad_mac1_is_dropped_even_under_load_without_a_reply()
    {
        using var p = new EnginePair();
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        var init = p.A.Output.Drain().Single().Data;
        init[120] ^= 1;
        Assert.Equal(TunnelEvent.BadMac1, p.Deliver(p.B, p.A.Endpoint, init).Reason);
        Assert.Empty(p.B.Output.Sent);
    }

    [Fact]
    public void Cookie_path_works_for_ipv6_sources()
    {
        using var p = new EnginePair();
        p.Random.FixedJitter = 0;
        var a6 = new IpEndpoint(IpAddress.Parse("2001:db8::1"), 40000);
        p.B.Engine.ReportHandshakeBacklog(500);
        p.A.Engine.InitiateHandshake(p.PeerBOnA);
        Assert.Equal(TunnelEvent.CookieReplySent, p.Deliver(p.B, a6, p.A.Output.Drain().Single().Data).Reason);
        var reply = p.B.Output.Drain().Single();
        Assert.Equal(a6, reply.To);
        Assert.Equal(TunnelEvent.CookieReplyProcessed, p.Deliver(p.A, p.B.Endpoint, reply.Data).Reason);
        Step(p, 5);
        var retry = p.A.Output.Drain().Single().Data;
        Assert.Equal(TunnelEvent.InitiationProcessed, p.Deliver(p.B, a6, retry).Reason);
        Assert.Equal(a6, p.PeerAOnB.Endpoint); // roamed to the v6 source
    }
}
