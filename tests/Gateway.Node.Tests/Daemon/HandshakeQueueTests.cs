using Gateway.Crypto;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Node.Daemon;
using Gateway.Tunnel;

namespace Gateway.Node.Tests.Daemon;

/// <summary>
/// The handshake worker's queue on the in-memory network with a stepped clock: its bound, the
/// switch to cookie replies that its backlog drives, the per-source rate limit once a sender
/// proves its address, and the engine's output that never waits for the socket.
/// </summary>
public sealed class HandshakeQueueTests : IDisposable
{
    private static readonly IpEndpoint Responder = new(IpAddress.Parse("192.0.2.1"), 51820);
    private static readonly IpEndpoint Attacker = new(IpAddress.Parse("192.0.2.66"), 40000);
    private static readonly IpEndpoint Initiator = new(IpAddress.Parse("192.0.2.7"), 51820);

    private readonly StepClock _clock = new();
    private readonly MemoryNetwork _network = new();
    private readonly MemoryBind _bind;
    private readonly WireGuardKey _key = WireGuardKey.GeneratePrivate();
    private readonly WireGuardKey _public;
    private readonly HandshakeTimers _timers = new();
    private readonly WireGuardEngine _engine;
    private readonly List<(IpEndpoint To, byte[] Bytes)> _sent = [];

    public HandshakeQueueTests()
    {
        _public = _key.DerivePublic();
        _bind = _network.Bind(Responder);
        _network.Tap = (from, to, datagram) =>
        {
            lock (_sent)
            {
                _sent.Add((to, datagram.ToArray()));
            }
            return true;
        };
        _timers.Attach(_bind);
        // Only the backlog may put this engine under load (not the per-second rate).
        _engine = new WireGuardEngine(_timers, new WireGuardEngineOptions { Clock = _clock, UnderLoadHandshakesPerSecond = 1_000_000 });
        _engine.SetPrivateKey(_key.Bytes);
    }

    private static IpEndpoint Spoofed(int i) => new(IpAddress.FromV4(0x0A420000u + (uint)i), 40000);

    private int CookieRepliesTo(IpEndpoint to)
    {
        lock (_sent)
        {
            return _sent.Count(s => s.To == to && Messages.Classify(s.Bytes) == MessageType.CookieReply);
        }
    }

    [Fact]
    public void The_queue_holds_at_most_its_capacity_and_counts_what_it_drops()
    {
        var queue = new HandshakeQueue(_engine, _timers);
        var flood = ForgedInitiations.Make(_public.Bytes, HandshakeQueue.DefaultCapacity + 100);
        foreach (var message in flood)
        {
            Assert.True(queue.TryDivert(Attacker, message));
        }
        Assert.Equal(HandshakeQueue.DefaultCapacity, queue.Count);
        Assert.Equal(100, Interlocked.Read(ref queue.QueueFull));

        // Transport data and garbage stay with the data path.
        var transport = new byte[64];
        transport[0] = 4;
        Assert.False(queue.TryDivert(Attacker, transport));
        Assert.False(queue.TryDivert(Attacker, new byte[] { 1, 2, 3 }));

        Assert.Equal(HandshakeQueue.DefaultCapacity, queue.ProcessPending());
        Assert.Equal(0, queue.Count);
        Assert.Equal(HandshakeQueue.DefaultCapacity,
            _engine.GetCount(TunnelEvent.CookieReplySent) + _engine.GetCount(TunnelEvent.CookieReplyRateLimited) +
            _engine.GetCount(TunnelEvent.HandshakeFailed));
    }

    [Fact]
    public void A_backlog_of_128_switches_to_cookie_replies_and_a_short_one_does_not()
    {
        var queue = new HandshakeQueue(_engine, _timers);
        foreach (var message in ForgedInitiations.Make(_public.Bytes, 10))
        {
            queue.TryDivert(Attacker, message);
        }
        queue.ProcessPending();
        // Not under load: each forged initiation cost a DH and was refused for its unknown key.
        Assert.Equal(10, _engine.GetCount(TunnelEvent.HandshakeFailed));
        Assert.Equal(0, _engine.GetCount(TunnelEvent.CookieReplySent));
        Assert.False(_engine.IsUnderLoad);

        foreach (var message in ForgedInitiations.Make(_public.Bytes, 200))
        {
            queue.TryDivert(Attacker, message);
        }
        queue.ProcessPending();
        // The first message saw 199 behind it: under load from then on, no DH for any of them. One
        // address gets the cookie replies' burst; the rest of its flood costs no reply.
        Assert.Equal(WireGuardConstants.InitiationBurst, _engine.GetCount(TunnelEvent.CookieReplySent));
        Assert.Equal(200 - WireGuardConstants.InitiationBurst, _engine.GetCount(TunnelEvent.CookieReplyRateLimited));
        Assert.Equal(10, _engine.GetCount(TunnelEvent.HandshakeFailed));
        Assert.Equal(WireGuardConstants.InitiationBurst, CookieRepliesTo(Attacker));
        Assert.True(_engine.IsUnderLoad);

        // Under load lasts UnderLoadAfterTime past the last long backlog.
        _clock.Advance(TimeSpan.FromSeconds(1.5));
        Assert.False(_engine.IsUnderLoad);
        foreach (var message in ForgedInitiations.Make(_public.Bytes, 5))
        {
            queue.TryDivert(Attacker, message);
        }
        queue.ProcessPending();
        Assert.Equal(WireGuardConstants.InitiationBurst, _engine.GetCount(TunnelEvent.CookieReplySent));
        Assert.Equal(15, _engine.GetCount(TunnelEvent.HandshakeFailed));
    }

    [Fact]
    public void Under_load_a_source_with_a_valid_cookie_is_rate_limited_per_address()
    {
        var queue = new HandshakeQueue(_engine, _timers);
        // A real initiator the responder does not know (it still has to pay a DH to find out).
        var initiatorClock = new StepClock();
        var initiatorOut = new RecordingOutput();
        using var initiator = new WireGuardEngine(initiatorOut, new WireGuardEngineOptions { Clock = initiatorClock });
        using var initiatorKey = WireGuardKey.GeneratePrivate();
        initiator.SetPrivateKey(initiatorKey.Bytes);
        var peer = initiator.GetOrAddPeer(new PublicKey(_public.Bytes));
        initiator.SetEndpoint(peer, Responder);

        foreach (var message in ForgedInitiations.Make(_public.Bytes, 150))
        {
            queue.TryDivert(Attacker, message);
        }
        initiator.InitiateHandshake(peer);
        queue.TryDivert(Initiator, initiatorOut.Take());
        queue.ProcessPending();
        Assert.Equal(1, CookieRepliesTo(Initiator));
        byte[] reply;
        lock (_sent)
        {
            reply = _sent.Last(s => s.To == Initiator).Bytes;
        }
        Assert.Equal(TunnelEvent.CookieReplyProcessed, initiator.ReceiveHandshake(Responder, reply).Reason);

        // The retry carries mac2: no more cookie replies for it, but one address gets only the
        // rate limiter's burst through to the DH, however often it repeats itself.
        initiatorClock.Advance(TimeSpan.FromSeconds(6));
        initiator.InitiateHandshake(peer);
        byte[] withCookie = initiatorOut.Take();
        foreach (var message in ForgedInitiations.Make(_public.Bytes, 150))
        {
            queue.TryDivert(Attacker, message);
        }
        for (int i = 0; i < 20; i++)
        {
            queue.TryDivert(Initiator, withCookie);
        }
        queue.ProcessPending();
        Assert.Equal(1, CookieRepliesTo(Initiator));
        Assert.Equal(20 - WireGuardConstants.InitiationBurst, _engine.GetCount(TunnelEvent.RateLimited));
        Assert.Equal(WireGuardConstants.InitiationBurst, _engine.GetCount(TunnelEvent.HandshakeFailed));
        Assert.Equal(WireGuardConstants.InitiationBurst, CookieRepliesTo(Attacker)); // its burst, then silence
    }

    [Fact]
    public void A_full_send_buffer_defers_the_engines_messages_to_the_worker_in_order_and_bounded()
    {
        var queue = new HandshakeQueue(_engine, _timers);
        _bind.SendBufferFull = true;
        _engine.ReportHandshakeBacklog(500);
        var flood = ForgedInitiations.Make(_public.Bytes, 300);
        // The engine answers under its lock: nothing waits for the socket, the replies are kept,
        // up to the bound; the rest is dropped and counted.
        // Each from its own (spoofed) address, so that every one earns a cookie reply.
        for (int i = 0; i < flood.Length; i++)
        {
            Assert.Equal(TunnelEvent.CookieReplySent, _engine.ReceiveHandshake(Spoofed(i), flood[i]).Reason);
        }
        Assert.Equal(0, CookieRepliesTo(Spoofed(0)));
        Assert.Equal(HandshakeTimers.DeferredCapacity, _timers.DeferredCount);
        Assert.Equal(300 - HandshakeTimers.DeferredCapacity, Interlocked.Read(ref _timers.DeferredFull));

        // The worker sends them once the socket has room, in the order the engine made them.
        _bind.SendBufferFull = false;
        Assert.Equal(0, queue.ProcessPending());
        Assert.Equal(0, _timers.DeferredCount);
        Assert.Equal(HandshakeTimers.DeferredCapacity, Interlocked.Read(ref _timers.DeferredSent));
        List<byte[]> replies;
        lock (_sent)
        {
            replies = _sent.Where(s => Messages.Classify(s.Bytes) == MessageType.CookieReply).Select(s => s.Bytes).ToList();
            Assert.True(_sent.Where(s => Messages.Classify(s.Bytes) == MessageType.CookieReply).Select(s => s.To)
                .SequenceEqual(Enumerable.Range(0, HandshakeTimers.DeferredCapacity).Select(Spoofed)), "replies to the wrong addresses");
        }
        Assert.Equal(HandshakeTimers.DeferredCapacity, replies.Count);
        for (int i = 0; i < replies.Count; i++)
        {
            // A cookie reply's receiver index is the initiation's sender index.
            Assert.True(replies[i].AsSpan(4, 4).SequenceEqual(flood[i].AsSpan(4, 4)), $"reply {i} out of order");
        }
    }

    private sealed class RecordingOutput : ITunnelOutput
    {
        private readonly Queue<byte[]> _sent = new();

        public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram) => _sent.Enqueue(datagram.ToArray());

        public byte[] Take() => _sent.Dequeue();
    }

    public void Dispose()
    {
        _engine.Dispose();
        _bind.Dispose();
        _public.Dispose();
        _key.Dispose();
    }
}
