namespace Gateway.Datapath.Devices;

/// <summary>
/// A network in memory joining <see cref="MemoryBind"/>s by endpoint, like wireguard-go's
/// bindtest: a datagram sent to an endpoint lands in the queue of the bind holding that
/// endpoint, or is lost when none does (as UDP would be). Tests can watch, drop or rewrite what
/// crosses it (<see cref="Tap"/>), e.g. to audit the underlay or to lose a handshake.
/// A bind may hold further addresses (<see cref="AddAddress"/>); as a kernel socket with
/// IP_PKTINFO, it reports the address each datagram arrived on (<see cref="IpEndpoint.LocalAddress"/>)
/// and sends from the source address an endpoint carries while it holds it.
/// </summary>
public sealed class MemoryNetwork
{
    private readonly Dictionary<IpEndpoint, MemoryBind> _binds = [];
    private readonly object _sync = new();

    /// <summary>Sees every datagram (source, destination, bytes) before delivery; false drops it.</summary>
    public Func<IpEndpoint, IpEndpoint, ReadOnlySpan<byte>, bool>? Tap { get; set; }

    /// <summary>Datagrams delivered to a bind.</summary>
    public long Delivered;

    /// <summary>Datagrams lost (no bind at the destination, or dropped by the tap).</summary>
    public long Lost;

    /// <summary>Creates a bind at <paramref name="local"/> (which must be free).</summary>
    public MemoryBind Bind(IpEndpoint local)
    {
        lock (_sync)
        {
            if (_binds.ContainsKey(local))
            {
                throw new DeviceException($"{local} is in use on the memory network", 98);
            }
            var bind = new MemoryBind(this, local);
            _binds[local] = bind;
            return bind;
        }
    }

    /// <summary>The interface index memory binds report for the addresses datagrams arrive on.</summary>
    public const int InterfaceIndex = 1;

    /// <summary>Gives <paramref name="bind"/> a further address (same port), as a second address on a
    /// host's interface: datagrams sent to it land in that bind.</summary>
    public void AddAddress(MemoryBind bind, IpAddress address)
    {
        lock (_sync)
        {
            var at = new IpEndpoint(address, bind.Local.Port);
            if (_binds.ContainsKey(at))
            {
                throw new DeviceException($"{at} is in use on the memory network", 98);
            }
            _binds[at] = bind;
            bind.Extra.Add(address);
        }
    }

    /// <summary>Takes a further address away from <paramref name="bind"/> (the address vanishes).</summary>
    public void RemoveAddress(MemoryBind bind, IpAddress address)
    {
        lock (_sync)
        {
            if (bind.Extra.Remove(address))
            {
                _binds.Remove(new IpEndpoint(address, bind.Local.Port));
            }
        }
    }

    /// <summary>True while <paramref name="bind"/> holds <paramref name="address"/>.</summary>
    internal bool Holds(MemoryBind bind, IpAddress address)
    {
        lock (_sync)
        {
            return bind.Local.Address == address || bind.Extra.Contains(address);
        }
    }

    /// <summary>Moves a bind to another address (roaming).</summary>
    public void Move(MemoryBind bind, IpEndpoint to)
    {
        lock (_sync)
        {
            _binds.Remove(bind.Local);
            foreach (var extra in bind.Extra)
            {
                _binds.Remove(new IpEndpoint(extra, bind.Local.Port));
                _binds[new IpEndpoint(extra, to.Port)] = bind;
            }
            bind.Local = to;
            _binds[to] = bind;
        }
    }

    /// <summary>Moves a bind to another port of its address (listen_port); 0 picks a free one.</summary>
    internal ushort Rebind(MemoryBind bind, ushort port)
    {
        lock (_sync)
        {
            if (port == 0)
            {
                port = 49152;
                while (_binds.ContainsKey(new IpEndpoint(bind.Local.Address, port)))
                {
                    port++;
                }
            }
            var to = new IpEndpoint(bind.Local.Address, port);
            if (_binds.TryGetValue(to, out var held))
            {
                if (ReferenceEquals(held, bind))
                {
                    return port;
                }
                throw new DeviceException($"cannot bind UDP port {port}: {to} is in use on the memory network", 98);
            }
            foreach (var extra in bind.Extra)
            {
                if (_binds.ContainsKey(new IpEndpoint(extra, port)))
                {
                    throw new DeviceException($"cannot bind UDP port {port}: {extra} is in use on the memory network", 98);
                }
            }
            _binds.Remove(bind.Local);
            foreach (var extra in bind.Extra)
            {
                _binds.Remove(new IpEndpoint(extra, bind.Local.Port));
                _binds[new IpEndpoint(extra, port)] = bind;
            }
            bind.Local = to;
            _binds[to] = bind;
            return port;
        }
    }

    internal void Remove(MemoryBind bind)
    {
        lock (_sync)
        {
            if (_binds.TryGetValue(bind.Local, out var held) && ReferenceEquals(held, bind))
            {
                _binds.Remove(bind.Local);
            }
            foreach (var extra in bind.Extra)
            {
                _binds.Remove(new IpEndpoint(extra, bind.Local.Port));
            }
        }
    }

    /// <summary>Delivers a batch; consecutive datagrams to one bind land in its queue together,
    /// as one sendmmsg's datagrams usually meet one recvmmsg on a real host.</summary>
    internal void Deliver(MemoryBind from, ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        int start = 0;
        while (start < packets.Length)
        {
            int end = start + 1;
            while (end < packets.Length && destinations[end] == destinations[start] && destinations[end].SameLocal(destinations[start]))
            {
                end++;
            }
            var source = from.SourceFor(destinations[start]);
            MemoryBind? target;
            lock (_sync)
            {
                _binds.TryGetValue(destinations[start], out target);
            }
            if (target is null)
            {
                for (int i = start; i < end; i++)
                {
                    Deliver(source, destinations[i], packets[i].Data);
                }
            }
            else
            {
                lock (target.Sync)
                {
                    for (int i = start; i < end; i++)
                    {
                        Deliver(source, destinations[i], packets[i].Data);
                    }
                }
            }
            start = end;
        }
    }

    internal bool Deliver(IpEndpoint source, IpEndpoint destination, ReadOnlySpan<byte> datagram)
    {
        if (Tap is { } tap && !tap(source, destination, datagram))
        {
            Interlocked.Increment(ref Lost);
            return true; // the sender cannot tell
        }
        MemoryBind? target;
        lock (_sync)
        {
            _binds.TryGetValue(destination, out target);
        }
        // The receiver learns the address the datagram arrived on, as IP_PKTINFO reports it.
        if (target is null || !target.Enqueue(source.WithLocal(destination.Address, InterfaceIndex), datagram))
        {
            Interlocked.Increment(ref Lost);
            return true;
        }
        Interlocked.Increment(ref Delivered);
        return true;
    }
}

/// <summary>
/// A UDP bind on a <see cref="MemoryNetwork"/>. Datagrams are held in reused
/// arrays, so after warm-up neither sending nor receiving allocates.
/// </summary>
public sealed class MemoryBind : IUdpBind
{
    private readonly MemoryNetwork _network;
    private readonly Queue<(IpEndpoint Source, byte[] Bytes, int Length)> _inbox = new(4096);
    private readonly object _sync = new();
    private bool _closed;
    private long _oversized;
    private readonly FramePool _frames = new();

    internal object Sync => _sync;

    internal MemoryBind(MemoryNetwork network, IpEndpoint local)
    {
        _network = network;
        Local = local;
    }

    /// <summary>The address other binds reach this one at.</summary>
    public IpEndpoint Local { get; internal set; }

    /// <summary>Further addresses (<see cref="MemoryNetwork.AddAddress"/>), guarded by the network.</summary>
    internal List<IpAddress> Extra { get; } = [];

    private long _sourcesCleared;

    /// <summary>Sends whose source address the bind no longer held, sent from <see cref="Local"/>
    /// instead (a kernel socket's EINVAL and retry without the source).</summary>
    public long SourcesCleared => Interlocked.Read(ref _sourcesCleared);

    /// <summary>Where a datagram to <paramref name="destination"/> comes from: the source address the
    /// endpoint carries while this bind holds it, else <see cref="Local"/>.</summary>
    internal IpEndpoint SourceFor(in IpEndpoint destination)
    {
        var local = Local;
        if (!destination.HasLocal || destination.LocalAddress == local.Address)
        {
            return local;
        }
        if (_network.Holds(this, destination.LocalAddress))
        {
            return new IpEndpoint(destination.LocalAddress, local.Port);
        }
        Interlocked.Increment(ref _sourcesCleared);
        return local;
    }

    public ushort LocalPort => Local.Port;

    public long OversizedDatagrams => Interlocked.Read(ref _oversized);

    /// <summary>The mark the daemon set; the memory network does not route by it.</summary>
    public uint Mark { get; private set; }

    public void SetMark(uint mark) => Mark = mark;

    public ushort Rebind(ushort port) => _network.Rebind(this, port);

    /// <summary>Datagrams queued and not yet received.</summary>
    public int Pending
    {
        get { lock (_sync) return _inbox.Count; }
    }

    internal bool Enqueue(IpEndpoint source, ReadOnlySpan<byte> datagram)
    {
        var bytes = _frames.Rent(datagram.Length);
        datagram.CopyTo(bytes);
        lock (_sync)
        {
            if (_closed)
            {
                _frames.Return(bytes);
                return false;
            }
            _inbox.Enqueue((source, bytes, datagram.Length));
            Monitor.PulseAll(_sync);
        }
        return true;
    }

    public int Receive(ReadOnlySpan<PacketBuffer> buffers, Span<IpEndpoint> sources)
    {
        int count = Math.Min(buffers.Length, sources.Length);
        if (count == 0)
        {
            return 0;
        }
        lock (_sync)
        {
            int n = 0;
            while (n == 0)
            {
                while (_inbox.Count == 0 && !_closed)
                {
                    Monitor.Wait(_sync);
                }
                if (_closed)
                {
                    return -1;
                }
                while (n < count && _inbox.TryDequeue(out var item))
                {
                    var tail = buffers[n].WritableTail;
                    if (item.Length > tail.Length)
                    {
                        _oversized++;
                    }
                    else
                    {
                        item.Bytes.AsSpan(0, item.Length).CopyTo(tail);
                        buffers[n].SetLength(item.Length);
                        sources[n] = item.Source;
                        n++;
                    }
                    _frames.Return(item.Bytes);
                }
            }
            return n;
        }
    }

    /// <summary>Receives one datagram for a test, waiting up to <paramref name="timeout"/>.</summary>
    public bool TryReceive(out byte[] datagram, out IpEndpoint source, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_sync)
        {
            while (_inbox.Count == 0)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || _closed)
                {
                    datagram = [];
                    source = default;
                    return false;
                }
                Monitor.Wait(_sync, left);
            }
            var item = _inbox.Dequeue();
            datagram = item.Bytes.AsSpan(0, item.Length).ToArray();
            source = item.Source;
            _frames.Return(item.Bytes);
            return true;
        }
    }

    public int Send(ReadOnlySpan<PacketBuffer> packets, ReadOnlySpan<IpEndpoint> destinations)
    {
        int n = Math.Min(packets.Length, destinations.Length);
        _network.Deliver(this, packets[..n], destinations[..n]);
        return n;
    }

    public bool Send(ReadOnlySpan<byte> datagram, in IpEndpoint destination) => _network.Deliver(SourceFor(destination), destination, datagram);

    /// <summary>While true, <see cref="TrySend"/> answers WouldBlock, as a kernel socket with a
    /// full send buffer does (tests of what waits for socket space).</summary>
    public bool SendBufferFull { get; set; }

    public SendAttempt TrySend(ReadOnlySpan<byte> datagram, in IpEndpoint destination)
    {
        if (SendBufferFull)
        {
            return SendAttempt.WouldBlock;
        }
        return _network.Deliver(SourceFor(destination), destination, datagram) ? SendAttempt.Sent : SendAttempt.Refused;
    }

    public void Dispose()
    {
        lock (_sync)
        {
            if (_closed)
            {
                return;
            }
            _closed = true;
            while (_inbox.TryDequeue(out var item))
            {
                _frames.Return(item.Bytes);
            }
            Monitor.PulseAll(_sync);
        }
        _network.Remove(this);
    }
}
