using Gateway.Datapath;
using Gateway.Tunnel;

namespace Gateway.Node.Daemon;

/// <summary>
/// Handshake messages (initiations, responses, cookie replies) on their own bounded queue and
/// worker thread, as wireguard-go's device/receive.go keeps them off the transport goroutines:
/// the receive path only copies a handshake message into a fixed slot here (no allocation, no
/// engine lock), so a flood of initiations costs the transport that copy and nothing more. The
/// worker reports the backlog to the engine before each message; a backlog of
/// <see cref="WireGuardEngine.HandshakeBacklogUnderLoad"/> or more puts the engine under load
/// (cookie replies first, then the per-source rate limit). A full queue drops the new message,
/// counted as <see cref="QueueFull"/>. The worker is also the only thread that waits for socket
/// space for the engine's own messages (<see cref="HandshakeTimers.FlushDeferred"/>), after the
/// engine call returned and with no lock held.
/// </summary>
internal sealed class HandshakeQueue
{
    /// <summary>wireguard-go's QueueHandshakeSize.</summary>
    public const int DefaultCapacity = 1024;

    private const int SlotSize = Messages.InitiationSize; // the largest handshake message

    /// <summary>How long the worker lets handshake messages gather between drains while the engine
    /// is under load (the queue holds <see cref="DefaultCapacity"/>: a million messages a second
    /// would fill it in this time).</summary>
    internal static readonly TimeSpan UnderLoadGather = TimeSpan.FromMilliseconds(1);

    private readonly WireGuardEngine _engine;
    private readonly HandshakeTimers _timers;
    private readonly byte[] _slots;
    private readonly int[] _lengths;
    private readonly IpEndpoint[] _sources;
    private readonly Lock _gate = new();
    private readonly object _signal = new();
    private bool _wake;
    private int _head;
    private int _count;

    /// <summary>Handshake messages dropped because the queue was full.</summary>
    public long QueueFull;

    /// <summary>Handshake messages handed to the engine.</summary>
    public long Processed;

    /// <summary>Times the worker woke to drain the queue; <see cref="Processed"/> over this is the
    /// mean batch one wake-up handles.</summary>
    public long Wakeups;

    public HandshakeQueue(WireGuardEngine engine, HandshakeTimers timers, int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _engine = engine;
        _timers = timers;
        _slots = GC.AllocateUninitializedArray<byte>(capacity * SlotSize, pinned: true);
        _lengths = new int[capacity];
        _sources = new IpEndpoint[capacity];
        timers.DeferredWaiting = Wake;
    }

    public int Capacity => _lengths.Length;

    /// <summary>Messages waiting for the worker.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Takes <paramref name="datagram"/> when it is a handshake message (true): queued for the
    /// worker, or dropped and counted when the queue is full. False for anything else, which the
    /// caller handles itself. Any thread; copies the bytes and allocates nothing.
    /// </summary>
    public bool TryDivert(in IpEndpoint source, ReadOnlySpan<byte> datagram)
    {
        if (!WireGuardEngine.IsHandshake(datagram))
        {
            return false;
        }
        bool first;
        lock (_gate)
        {
            if (_count == _lengths.Length)
            {
                QueueFull++;
                return true;
            }
            int slot = (_head + _count) % _lengths.Length;
            datagram.CopyTo(_slots.AsSpan(slot * SlotSize, SlotSize));
            _lengths[slot] = datagram.Length;
            _sources[slot] = source;
            first = _count == 0;
            Volatile.Write(ref _count, _count + 1);
        }
        // Only the message that finds the queue empty wakes the worker: one that finds others
        // waiting is seen by the drain already due (the worker takes the count under the same lock
        // and leaves only on an empty queue), so a flood costs one wake-up per drain, not per message.
        if (first)
        {
            Wake();
        }
        return true;
    }

    /// <summary>
    /// Hands every queued message to the engine, oldest first, each after reporting how many still
    /// wait behind it, and sends what the engine could not send at once. Returns how many were
    /// processed. The worker's loop; tests call it directly to step the queue.
    /// </summary>
    public int ProcessPending()
    {
        Span<byte> message = stackalloc byte[SlotSize];
        int processed = 0;
        while (true)
        {
            int length;
            IpEndpoint source;
            int backlog;
            lock (_gate)
            {
                if (_count == 0)
                {
                    break;
                }
                int slot = _head;
                length = _lengths[slot];
                source = _sources[slot];
                _slots.AsSpan(slot * SlotSize, length).CopyTo(message);
                _head = (_head + 1) % _lengths.Length;
                Volatile.Write(ref _count, _count - 1);
                backlog = _count;
            }
            // What still waits behind this message, as wireguard-go measures its channel.
            _engine.ReportHandshakeBacklog(backlog);
            _engine.ReceiveHandshake(source, message[..length]);
            processed++;
            _timers.FlushDeferred();
        }
        _engine.ReportHandshakeBacklog(0);
        Interlocked.Add(ref Processed, processed);
        _timers.FlushDeferred();
        return processed;
    }

    /// <summary>The worker thread's loop; returns when <paramref name="stop"/> is cancelled. Nothing
    /// here needs disposing, so the node may stop it in any order.</summary>
    public void Run(CancellationToken stop)
    {
        using var registration = stop.Register(Wake);
        while (!stop.IsCancellationRequested)
        {
            lock (_signal)
            {
                while (!_wake)
                {
                    Monitor.Wait(_signal);
                }
                _wake = false;
            }
            if (stop.IsCancellationRequested)
            {
                return;
            }
            Interlocked.Increment(ref Wakeups);
            ProcessPending();
            if (_engine.IsUnderLoad && !stop.IsCancellationRequested)
            {
                // Under load, let messages gather before the next drain: a flood then wakes this
                // thread about a thousand times a second in batches, instead of once per message
                // (a futex wake and two context switches each, on cores the transport needs). A
                // real initiator waits at most this long more for its cookie reply or response.
                Thread.Sleep(UnderLoadGather);
            }
        }
    }

    private void Wake()
    {
        lock (_signal)
        {
            _wake = true;
            Monitor.Pulse(_signal);
        }
    }
}
