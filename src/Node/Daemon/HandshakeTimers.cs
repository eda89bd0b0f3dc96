using System.Buffers;
using System.Collections.Concurrent;
using Gateway.Datapath;
using Gateway.Datapath.Devices;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// Handshakes and timers: the engine's clock-driven work (retransmitted initiations, keepalives,
/// rekeying, expiring keys) ticks here every 100 ms, and every message the engine sends on its
/// own (handshake initiations, responses, cookie replies, keepalives, packets that waited for a
/// handshake) leaves through this output.
/// <para>The engine calls the output under its locks, so the output never waits for the socket:
/// it sends without blocking, and when the socket has no room it keeps a copy (at most
/// <see cref="DeferredCapacity"/>, beyond that counted as <see cref="DeferredFull"/>) that the
/// handshake worker sends later with no lock held (<see cref="FlushDeferred"/>). While copies
/// wait, new messages queue behind them, so a peer's messages keep their order.</para>
/// </summary>
internal sealed class HandshakeTimers : ITunnelOutput
{
    /// <summary>Messages kept for a later send at most.</summary>
    public const int DeferredCapacity = 256;

    private readonly ConcurrentQueue<(IpEndpoint Destination, byte[] Bytes, int Length)> _deferred = new();
    private IUdpBind? _bind;
    private int _deferredCount;

    /// <summary>Messages dropped because <see cref="DeferredCapacity"/> copies already waited.</summary>
    public long DeferredFull;

    /// <summary>Messages the socket had no room for at once and that were sent later.</summary>
    public long DeferredSent;

    /// <summary>Called when a copy starts waiting (wakes the handshake worker).</summary>
    public Action? DeferredWaiting { get; set; }

    /// <summary>Copies waiting for socket space.</summary>
    public int DeferredCount => Volatile.Read(ref _deferredCount);

    /// <summary>The bind the engine's own messages leave by: the data path's (set once it is bound).</summary>
    public void Attach(IUdpBind bind) => Volatile.Write(ref _bind, bind);

    public void SendDatagram(in IpEndpoint destination, ReadOnlySpan<byte> datagram)
    {
        var bind = Volatile.Read(ref _bind);
        if (bind is null)
        {
            return;
        }
        if (Volatile.Read(ref _deferredCount) == 0 && bind.TrySend(datagram, destination) != SendAttempt.WouldBlock)
        {
            return;
        }
        if (Interlocked.Increment(ref _deferredCount) > DeferredCapacity)
        {
            Interlocked.Decrement(ref _deferredCount);
            Interlocked.Increment(ref DeferredFull);
            return;
        }
        byte[] copy = ArrayPool<byte>.Shared.Rent(datagram.Length);
        datagram.CopyTo(copy);
        _deferred.Enqueue((destination, copy, datagram.Length));
        DeferredWaiting?.Invoke();
    }

    /// <summary>Sends the copies that waited for socket space, waiting for it as needed. Only the
    /// handshake worker calls this, holding no lock.</summary>
    public void FlushDeferred()
    {
        if (Volatile.Read(ref _deferredCount) == 0)
        {
            return;
        }
        var bind = Volatile.Read(ref _bind);
        while (_deferred.TryDequeue(out var item))
        {
            bind?.Send(item.Bytes.AsSpan(0, item.Length), item.Destination);
            ArrayPool<byte>.Shared.Return(item.Bytes);
            Interlocked.Increment(ref DeferredSent);
            Interlocked.Decrement(ref _deferredCount);
        }
    }

    /// <summary>The timer thread's loop; returns when <paramref name="stop"/> is cancelled.</summary>
    public static void Run(WireGuardEngine engine, NodeLog log, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        var failures = new TickFailures(log);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                if (!timer.WaitForNextTickAsync(stop).AsTask().GetAwaiter().GetResult())
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            failures.Run(engine.Tick);
        }
    }
}

/// <summary>
/// Runs a periodic callback (the engine's tick, conntrack collection) so that it never takes
/// its thread down: a failure is caught and logged as one line, the state the callback left
/// stays, and the next period runs it again. The same failure repeating is logged once, until a
/// run succeeds.
/// </summary>
internal sealed class TickFailures(NodeLog? log, string what = "timers")
{
    private string? _last;

    /// <summary>Failures caught so far.</summary>
    public long Count { get; private set; }

    /// <summary>Runs <paramref name="tick"/>; true when it returned normally.</summary>
    public bool Run(Action tick)
    {
        try
        {
            tick();
            _last = null;
            return true;
        }
        catch (Exception e)
        {
            Count++;
            string line = $"{e.GetType().Name}: {e.Message}";
            if (line != _last)
            {
                log?.Error($"{what}: tick failed ({line}); the previous state stays and the next tick runs as usual");
                _last = line;
            }
            return false;
        }
    }
}
