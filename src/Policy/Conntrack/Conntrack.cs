using System.Numerics;
using System.Runtime.CompilerServices;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>What conntrack knows about a packet.</summary>
public enum CtResult : byte
{
    /// <summary>No live entry: the packet must pass policy.</summary>
    New = 0,
    /// <summary>Same direction as the packet that created the entry.</summary>
    Established = 1,
    /// <summary>Opposite direction: a reply, which skips policy.</summary>
    Reply = 2,
    /// <summary>An ICMP error about a tracked flow (its quoted packet matched an entry).</summary>
    Related = 3,
}

/// <summary>Entry lifetimes. Defaults follow Cilium's (bpf/lib/conntrack.h, agent defaults).</summary>
public sealed record ConntrackTimeouts
{
    public TimeSpan TcpEstablished { get; init; } = TimeSpan.FromHours(6);
    /// <summary>Until the handshake completes (a SYN was seen, no reply yet).</summary>
    public TimeSpan TcpSyn { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>After FIN or RST.</summary>
    public TimeSpan TcpClose { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan Udp { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan Icmp { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Any other protocol (SCTP, GRE, ...).</summary>
    public TimeSpan Other { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// A bounded connection-tracking table. Entries are created only for packets policy allowed
/// (<see cref="Create(in FlowKey, long)"/>); later packets of the flow and its replies find them with
/// <see cref="Lookup(in FlowKey, long)"/> and skip policy. Both directions of a flow share one entry: the key is
/// stored in canonical order (lower address:port first) with a flag saying which side opened it.
///
/// The table is split into shards, each an open-addressed array guarded by its own short lock;
/// a key may live in one of <see cref="ProbeLength"/> slots after its hash. When those are all
/// live, the entry closest to expiry is evicted (counted in <see cref="Evictions"/>).
/// <see cref="Collect"/> frees expired entries a bounded slice at a time, so garbage collection
/// never holds a shard for long and never stalls lookups. Time is a nanosecond count supplied
/// by the caller (an injected clock); lookups and creates allocate nothing.
/// </summary>
public sealed class Conntrack
{
    public const int ProbeLength = 8;
    private const int GcChunk = 64;

    private readonly Shard[] _shards;
    private readonly CtKey.Seed _seed = CtKey.Seed.Random();
    private readonly int _shardMask;
    private readonly int _slotMask;
    private readonly long _tcpEstablished, _tcpSyn, _tcpClose, _udp, _icmp, _other;
    private long _evictions, _created;
    private int _gcShard, _gcSlot;
    private readonly object _gcGate = new();

    public Conntrack(int capacity, ConntrackTimeouts? timeouts = null)
    {
        if (capacity < 64)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Conntrack needs room for at least 64 entries.");
        }
        timeouts ??= new ConntrackTimeouts();
        int shards = Math.Clamp((int)BitOperations.RoundUpToPowerOf2((uint)Environment.ProcessorCount * 4), 1, 64);
        int perShard = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(ProbeLength, capacity / shards));
        _shards = new Shard[shards];
        for (int i = 0; i < shards; i++)
        {
            _shards[i] = new Shard(perShard);
        }
        _shardMask = shards - 1;
        _slotMask = perShard - 1;
        Capacity = shards * perShard;
        _tcpEstablished = Ns(timeouts.TcpEstablished);
        _tcpSyn = Ns(timeouts.TcpSyn);
        _tcpClose = Ns(timeouts.TcpClose);
        _udp = Ns(timeouts.Udp);
        _icmp = Ns(timeouts.Icmp);
        _other = Ns(timeouts.Other);
    }

    private static long Ns(TimeSpan t) => t.Ticks * 100;

    /// <summary>Slots in the table (capacity rounded up to powers of two).</summary>
    public int Capacity { get; }
    public long Evictions => Interlocked.Read(ref _evictions);
    public long Created => Interlocked.Read(ref _created);

    /// <summary>Live (possibly expired but not yet collected) entries.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            foreach (var s in _shards)
            {
                n += Volatile.Read(ref s.Count);
            }
            return n;
        }
    }

    /// <summary>
    /// Finds the flow of <paramref name="key"/>: Established (same direction as its first packet),
    /// Reply, or New if no live entry exists. A hit refreshes the entry and advances TCP state.
    /// </summary>
    public CtResult Lookup(in FlowKey key, long nowNs) => Lookup(key, nowNs, out _);

    /// <summary>
    /// <see cref="Lookup(in FlowKey, long)"/> that also returns the flow's service translation
    /// (<see cref="CtNat.IsTranslated"/> false for flows that were not sent to a service): a
    /// <see cref="CtResult.Reply"/> of a translated flow must have its source rewritten to
    /// <see cref="CtNat.ServiceAddress"/>:<see cref="CtNat.ServicePort"/>.
    /// </summary>
    public CtResult Lookup(in FlowKey key, long nowNs, out CtNat nat)
    {
        nat = default;
        var ck = CtKey.From(key, out bool forward);
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        int baseSlot = (hash >>> 6) & _slotMask;
        using (shard.Enter())
        {
            int slot = Find(shard, in ck, baseSlot, nowNs);
            if (slot < 0)
            {
                return CtResult.New;
            }
            ref var e = ref shard.Entries[slot];
            bool isReply = forward != e.OpenedForward;
            Update(ref e, key, isReply, nowNs);
            if (e.Translated)
            {
                nat = NatOf(in e);
            }
            return isReply ? CtResult.Reply : CtResult.Established;
        }
    }

    /// <summary>
    /// The service translation of a client's packet to a VIP (its original, untranslated key):
    /// Established with the backend chosen when the flow began, or New if there is none (then
    /// the caller selects a backend and calls <see cref="CreateService"/>). Refreshes the entry.
    /// Service entries live beside flow entries and never match a <see cref="Lookup(in FlowKey, long)"/>.
    /// </summary>
    public CtResult LookupService(in FlowKey original, long nowNs, out CtNat nat) => LookupService(original, nowNs, out nat, 0);

    /// <summary>
    /// <see cref="LookupService(in FlowKey, long, out CtNat)"/> that also records the client's TCP
    /// acknowledgment number (<paramref name="tcpAck"/>, used when the packet carries ACK): the
    /// sequence number a RST must carry for the client to accept it if the backend goes away.
    /// </summary>
    public CtResult LookupService(in FlowKey original, long nowNs, out CtNat nat, uint tcpAck)
    {
        nat = default;
        var ck = CtKey.Service(original, out _);
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        using (shard.Enter())
        {
            int slot = Find(shard, in ck, (hash >>> 6) & _slotMask, nowNs);
            if (slot < 0)
            {
                return CtResult.New;
            }
            ref var e = ref shard.Entries[slot];
            Update(ref e, original, isReply: false, nowNs);
            NoteAck(ref e, original, tcpAck);
            nat = NatOf(in e);
            return CtResult.Established;
        }
    }

    /// <summary>
    /// Records the backend chosen for a client's flow to a VIP (Cilium's CT_SERVICE entry), keyed
    /// by the original tuple, so later packets of the flow go to the same backend whatever the
    /// service table says meanwhile. Returns false if it existed (then it is refreshed and keeps
    /// its backend).
    /// </summary>
    public bool CreateService(in FlowKey original, long nowNs, IpAddress backend, ushort backendPort, uint tcpAck = 0)
    {
        var ck = CtKey.Service(original, out bool forward);
        return CreateCore(ck, forward, original, nowNs, translated: true, backend, backendPort, tcpAck);
    }

    private static void NoteAck(ref Entry e, in FlowKey key, uint tcpAck)
    {
        if (key.Protocol == IpProtocol.Tcp && (key.TcpFlags & TcpFlag.Ack) != 0)
        {
            e.ClientAck = tcpAck;
            e.HasClientAck = true;
        }
    }

    /// <summary>
    /// Records a translated flow (its key is the client -> backend tuple after DNAT) with the VIP:port
    /// the client addressed, so replies are reverse-translated to come from the VIP.
    /// </summary>
    public bool Create(in FlowKey translated, long nowNs, IpAddress serviceAddress, ushort servicePort)
    {
        var ck = CtKey.From(translated, out bool forward);
        return CreateCore(ck, forward, translated, nowNs, translated: true, serviceAddress, servicePort);
    }

    /// <summary>
    /// For an ICMP error (destination unreachable, time exceeded, packet too big, parameter
    /// problem): <paramref name="quoted"/> is the flow key of the packet quoted inside it.
    /// Related if that packet belongs to a live flow (either direction); the entry is not refreshed.
    /// </summary>
    public CtResult LookupRelated(in FlowKey quoted, long nowNs)
    {
        var ck = CtKey.From(quoted, out _);
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        using (shard.Enter())
        {
            return Find(shard, in ck, (hash >>> 6) & _slotMask, nowNs) >= 0 ? CtResult.Related : CtResult.New;
        }
    }

    /// <summary>
    /// Records a flow policy allowed. Returns false if the entry already existed (it is refreshed).
    /// May evict the entry nearest to expiry among the key's probe slots.
    /// </summary>
    public bool Create(in FlowKey key, long nowNs)
    {
        var ck = CtKey.From(key, out bool forward);
        return CreateCore(ck, forward, key, nowNs, translated: false, default, 0);
    }

    private bool CreateCore(CtKey ck, bool forward, in FlowKey key, long nowNs, bool translated, IpAddress natAddress, ushort natPort, uint tcpAck = 0)
    {
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        int baseSlot = (hash >>> 6) & _slotMask;
        using (shard.Enter())
        {
            int existing = Find(shard, in ck, baseSlot, nowNs);
            if (existing >= 0)
            {
                ref var found = ref shard.Entries[existing];
                Update(ref found, key, forward != found.OpenedForward, nowNs);
                if (translated && !found.Translated)
                {
                    // Policy created the flow entry; the service step attaches the VIP it came through.
                    found.Translated = true;
                    found.NatAddress = natAddress;
                    found.NatPort = natPort;
                }
                if (ck.IsService)
                {
                    NoteAck(ref found, key, tcpAck);
                }
                return false;
            }
            int victim = -1;
            long victimExpiry = long.MaxValue;
            for (int i = 0; i < ProbeLength; i++)
            {
                int s = (baseSlot + i) & _slotMask;
                ref var e = ref shard.Entries[s];
                if (!e.Used)
                {
                    victim = s;
                    break;
                }
                if (e.Expires <= nowNs)
                {
                    // An expired entry is free to reuse; it was never evicted, just not collected yet.
                    e.Used = false;
                    shard.Count--;
                    victim = s;
                    break;
                }
                if (e.Expires < victimExpiry)
                {
                    victimExpiry = e.Expires;
                    victim = s;
                }
            }
            ref var slot = ref shard.Entries[victim];
            if (slot.Used)
            {
                Interlocked.Increment(ref _evictions);
                shard.Count--;
            }
            slot = default;
            slot.Key = ck;
            slot.Used = true;
            slot.OpenedForward = forward;
            slot.Translated = translated;
            slot.NatAddress = natAddress;
            slot.NatPort = natPort;
            slot.State = TcpState.None;
            if (key.Protocol == IpProtocol.Tcp)
            {
                bool syn = (key.TcpFlags & TcpFlag.Syn) != 0 && (key.TcpFlags & TcpFlag.Ack) == 0;
                slot.State = syn ? TcpState.SynSent : TcpState.Established;
            }
            Update(ref slot, key, isReply: false, nowNs);
            if (ck.IsService)
            {
                NoteAck(ref slot, key, tcpAck);
            }
            shard.Count++;
            Interlocked.Increment(ref _created);
            return true;
        }
    }

    /// <summary>Removes a flow's entry (either direction's key). Returns whether it existed.</summary>
    public bool Remove(in FlowKey key)
    {
        var ck = CtKey.From(key, out _);
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        using (shard.Enter())
        {
            int slot = Find(shard, in ck, (hash >>> 6) & _slotMask, long.MinValue);
            if (slot < 0)
            {
                return false;
            }
            shard.Entries[slot].Used = false;
            shard.Count--;
            return true;
        }
    }

    /// <summary>
    /// Frees expired entries, visiting at most <paramref name="maxSlots"/> slots from where the
    /// previous call stopped. Each shard lock is held for at most 64 slots at a time. Returns the
    /// number of entries freed. Call it periodically (e.g. every second with a few thousand slots).
    /// </summary>
    public int Collect(long nowNs, int maxSlots)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSlots);
        int freed = 0;
        lock (_gcGate)
        {
            while (maxSlots > 0)
            {
                var shard = _shards[_gcShard];
                int n = Math.Min(Math.Min(GcChunk, maxSlots), shard.Entries.Length - _gcSlot);
                using (shard.Enter())
                {
                    for (int i = _gcSlot; i < _gcSlot + n; i++)
                    {
                        ref var e = ref shard.Entries[i];
                        if (e.Used && e.Expires <= nowNs)
                        {
                            e.Used = false;
                            shard.Count--;
                            freed++;
                        }
                    }
                }
                maxSlots -= n;
                _gcSlot += n;
                if (_gcSlot >= shard.Entries.Length)
                {
                    _gcSlot = 0;
                    _gcShard = (_gcShard + 1) & _shardMask;
                }
            }
        }
        return freed;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Find(Shard shard, in CtKey key, int baseSlot, long nowNs)
    {
        var entries = shard.Entries;
        for (int i = 0; i < ProbeLength; i++)
        {
            int s = (baseSlot + i) & _slotMask;
            ref var e = ref entries[s];
            if (e.Used && e.Key.Equals(in key))
            {
                if (e.Expires <= nowNs)
                {
                    e.Used = false; // expired: the flow is over, the packet is new again
                    shard.Count--;
                    return -1;
                }
                return s;
            }
        }
        return -1;
    }

    private void Update(ref Entry e, in FlowKey key, bool isReply, long nowNs)
    {
        long lifetime;
        switch (key.Protocol)
        {
            case IpProtocol.Tcp:
                byte f = key.TcpFlags;
                if ((f & TcpFlag.Rst) != 0)
                {
                    e.State = TcpState.Closing;
                }
                else if ((f & TcpFlag.Fin) != 0)
                {
                    e.FinSeen |= isReply ? (byte)2 : (byte)1;
                    e.State = TcpState.Closing;
                }
                else if (e.State == TcpState.SynSent && isReply)
                {
                    // SYN-ACK (or anything) back from the responder completes the handshake.
                    e.State = TcpState.Established;
                }
                else if ((f & TcpFlag.Syn) != 0 && e.State == TcpState.Closing && !isReply && (f & TcpFlag.Ack) == 0)
                {
                    e.State = TcpState.SynSent; // port reuse: a fresh SYN reopens the flow
                    e.FinSeen = 0;
                }
                lifetime = e.State switch
                {
                    TcpState.SynSent => _tcpSyn,
                    TcpState.Closing => _tcpClose,
                    _ => _tcpEstablished,
                };
                break;
            case IpProtocol.Udp:
                lifetime = _udp;
                break;
            case IpProtocol.Icmp:
            case IpProtocol.Icmpv6:
                lifetime = _icmp;
                break;
            default:
                lifetime = _other;
                break;
        }
        // A closing entry never gets its lifetime extended by late packets.
        long expires = nowNs + lifetime;
        expires = e.State == TcpState.Closing && e.Expires != 0 ? Math.Min(e.Expires, expires) : expires;
        // Stores only when something changes: the data path reads its clock once per batch, so most
        // packets of a flow would store the same values again, and both directions of a flow are
        // handled on different cores (send and receive path) that would pass the entry's cache
        // line back and forth for each of those stores.
        if (e.Expires != expires)
        {
            e.Expires = expires;
        }
        if (isReply && !e.SeenReply)
        {
            e.SeenReply = true;
        }
    }

    private static CtNat NatOf(in Entry e)
    {
        var opener = e.Key.Opener(e.OpenedForward);
        return e.Key.IsService
            ? new CtNat(opener.Source, opener.SourcePort, opener.Destination, opener.DestinationPort, e.NatAddress, e.NatPort, opener.Protocol)
            : new CtNat(opener.Source, opener.SourcePort, e.NatAddress, e.NatPort, opener.Destination, opener.DestinationPort, opener.Protocol);
    }

    /// <summary>
    /// Ends the translated flows whose backend is gone: removes every service entry and
    /// translated flow entry for which <paramref name="isGone"/> says so, and reports each once
    /// (by its client, VIP and backend) in <paramref name="ended"/> so the caller can tell the
    /// client (TCP RST or ICMP unreachable) instead of leaving the connection hanging.
    /// Flows to backends that still exist are untouched. Visits every shard (control plane only).
    /// </summary>
    public int EndTranslatedFlows(Func<CtNat, bool> isGone, ICollection<CtNat> ended) => EndTranslatedFlows(isGone, ended, null);

    /// <summary>
    /// <see cref="EndTranslatedFlows(Func{CtNat, bool}, ICollection{CtNat})"/> that also fills
    /// <paramref name="clientAcks"/> with the last TCP acknowledgment number each ended TCP flow's
    /// client sent (the sequence number of a RST it accepts); flows without one are left out.
    /// </summary>
    public int EndTranslatedFlows(Func<CtNat, bool> isGone, ICollection<CtNat> ended, IDictionary<CtNat, uint>? clientAcks)
    {
        ArgumentNullException.ThrowIfNull(isGone);
        ArgumentNullException.ThrowIfNull(ended);
        int removed = 0;
        var reported = new HashSet<CtNat>();
        foreach (var shard in _shards)
        {
            using (shard.Enter())
            {
                for (int i = 0; i < shard.Entries.Length; i++)
                {
                    ref var e = ref shard.Entries[i];
                    if (!e.Used || !e.Translated)
                    {
                        continue;
                    }
                    var nat = NatOf(in e);
                    if (!isGone(nat))
                    {
                        continue;
                    }
                    e.Used = false;
                    shard.Count--;
                    removed++;
                    if (e.HasClientAck && clientAcks is not null)
                    {
                        clientAcks[nat] = e.ClientAck;
                    }
                    if (reported.Add(nat))
                    {
                        ended.Add(nat);
                    }
                }
            }
        }
        return removed;
    }

    /// <summary>The state of a flow, for tests and diagnostics: (found, TCP state, expiry ns, reply seen).</summary>
    public (bool Found, TcpState State, long ExpiresNs, bool SeenReply) Inspect(in FlowKey key)
    {
        var ck = CtKey.From(key, out _);
        int hash = ck.Hash(in _seed);
        var shard = _shards[hash & _shardMask];
        using (shard.Enter())
        {
            int slot = Find(shard, in ck, (hash >>> 6) & _slotMask, long.MinValue);
            if (slot < 0)
            {
                return default;
            }
            ref var e = ref shard.Entries[slot];
            return (true, e.State, e.Expires, e.SeenReply);
        }
    }

    /// <summary>
    /// One slice of the table and its lock. The lock is a test-and-set spin lock rather than a
    /// Monitor or <see cref="Lock"/>: it is held for a probe of at most eight slots (tens of
    /// nanoseconds, nothing inside can block or throw), and taking it is one compare-exchange,
    /// where those locks also fetch the current thread's id from thread-local storage on every
    /// packet. A waiter spins, then yields (SpinWait), so a preempted holder is not starved.
    /// </summary>
    private sealed class Shard(int size)
    {
        public readonly Entry[] Entries = new Entry[size];
        public int Count;
        private int _held;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Scope Enter()
        {
            if (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
            {
                EnterContended();
            }
            return new Scope(this);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private void EnterContended()
        {
            var spin = new SpinWait();
            do
            {
                spin.SpinOnce();
            }
            while (Volatile.Read(ref _held) != 0 || Interlocked.CompareExchange(ref _held, 1, 0) != 0);
        }

        /// <summary>Held until disposed: <c>using (shard.Enter()) { ... }</c>.</summary>
        public readonly ref struct Scope(Shard shard)
        {
            public void Dispose() => Volatile.Write(ref shard._held, 0);
        }
    }

    private struct Entry
    {
        public CtKey Key;
        public long Expires;
        public bool Used;
        public bool OpenedForward;
        public bool SeenReply;
        public TcpState State;
        public byte FinSeen;
        /// <summary>Service scope: the backend chosen; flow scope with <see cref="Translated"/>: the VIP.</summary>
        public IpAddress NatAddress;
        public ushort NatPort;
        public bool Translated;
        /// <summary>Service scope, TCP: the client's last acknowledgment number (for a RST it accepts).</summary>
        public bool HasClientAck;
        public uint ClientAck;
    }

    /// <summary>A flow key in canonical order: (A, PortA) is the smaller endpoint.</summary>
    private readonly struct CtKey
    {
        private readonly IpAddress _a, _b;
        private readonly ushort _portA, _portB;
        private readonly byte _protocol;
        private readonly byte _scope;

        private CtKey(IpAddress a, IpAddress b, ushort portA, ushort portB, byte protocol, byte scope)
        {
            _a = a;
            _b = b;
            _portA = portA;
            _portB = portB;
            _protocol = protocol;
            _scope = scope;
        }

        /// <summary>The key of the packet that opened the flow (ICMP ids come back as both ports).</summary>
        public FlowKey Opener(bool forward) => new()
        {
            Source = forward ? _a : _b,
            Destination = forward ? _b : _a,
            SourcePort = forward ? _portA : _portB,
            DestinationPort = forward ? _portB : _portA,
            Protocol = _protocol,
        };

        public bool IsService => _scope == ServiceScope;

        public static CtKey From(in FlowKey key, out bool forward) => From(key, out forward, 0);

        /// <summary>A key in the service scope: the client's original tuple to a VIP (never a flow entry).</summary>
        public static CtKey Service(in FlowKey key, out bool forward) => From(key, out forward, ServiceScope);

        public const byte ServiceScope = 1;

        private static CtKey From(in FlowKey key, out bool forward, byte scope)
        {
            ushort sp = key.SourcePort, dp = key.DestinationPort;
            if (key.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6)
            {
                // Echo request and reply share the identifier; the type differs, so it is left out.
                sp = dp = key.IcmpId;
            }
            int c = key.Source.CompareTo(key.Destination);
            forward = c < 0 || (c == 0 && sp <= dp);
            return forward
                ? new CtKey(key.Source, key.Destination, sp, dp, key.Protocol, scope)
                : new CtKey(key.Destination, key.Source, dp, sp, key.Protocol, scope);
        }

        /// <summary>
        /// A keyed hash of the canonical tuple (wyhash's multiply-fold over the address halves,
        /// ports, protocol and scope, each mixed with a per-table secret): a few multiplications
        /// instead of HashCode's per-field rounds, and still not predictable from outside, so
        /// crafted flows cannot be aimed at one shard's probe window.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public int Hash(in Seed seed)
        {
            ulong rest = ((ulong)_portA << 48) | ((ulong)_portB << 32) | ((ulong)_protocol << 24) | ((ulong)_scope << 16) |
                         (_a.IsV6 ? 1UL : 0UL);
            ulong h = Fold(_a.Low ^ seed.K0, _b.Low ^ seed.K1) ^ Fold(_a.High ^ seed.K2, _b.High ^ seed.K3);
            h = Fold(h ^ seed.K4, rest ^ seed.K5);
            // A final avalanche (MurmurHash3's fmix64). Without it, flows that differ only in a
            // port (a client's sequential ephemeral ports) moved the fold's high half by a fixed
            // step per port: an arithmetic progression of slots, which for some seeds packed them
            // into runs that filled a key's eight probe slots at a few percent load.
            h ^= h >> 33;
            h *= 0xff51afd7ed558ccdUL;
            h ^= h >> 33;
            h *= 0xc4ceb9fe1a85ec53UL;
            h ^= h >> 33;
            // The low bits pick the shard, higher bits the slot.
            return (int)h;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static ulong Fold(ulong x, ulong y)
        {
            ulong high = Math.BigMul(x, y, out ulong low);
            return high ^ low;
        }

        /// <summary>The per-table hash secret.</summary>
        public readonly struct Seed
        {
            public readonly ulong K0, K1, K2, K3, K4, K5;

            private Seed(ReadOnlySpan<ulong> k)
            {
                // Odd keys: a zero or even multiplier would throw information away.
                K0 = k[0] | 1;
                K1 = k[1] | 1;
                K2 = k[2] | 1;
                K3 = k[3] | 1;
                K4 = k[4] | 1;
                K5 = k[5] | 1;
            }

            public static Seed Random()
            {
                Span<ulong> k = stackalloc ulong[6];
                System.Security.Cryptography.RandomNumberGenerator.Fill(System.Runtime.InteropServices.MemoryMarshal.AsBytes(k));
                return new Seed(k);
            }
        }

        public bool Equals(in CtKey o) =>
            _portA == o._portA && _portB == o._portB && _protocol == o._protocol && _scope == o._scope && _a == o._a && _b == o._b;
    }
}

/// <summary>
/// A service translation recorded in conntrack: the client's flow to ServiceAddress:ServicePort
/// (the VIP it addressed) went to BackendAddress:BackendPort.
/// </summary>
public readonly record struct CtNat(IpAddress ClientAddress, ushort ClientPort, IpAddress ServiceAddress, ushort ServicePort,
    IpAddress BackendAddress, ushort BackendPort, byte Protocol)
{
    /// <summary>False for the default value (a flow that was not sent to a service).</summary>
    public bool IsTranslated => Protocol != 0;

    /// <summary>The client's packets to the VIP, as they left the client.</summary>
    public FlowKey Original => new()
    {
        Source = ClientAddress, SourcePort = ClientPort, Destination = ServiceAddress, DestinationPort = ServicePort, Protocol = Protocol,
    };

    /// <summary>The same packets after DNAT.</summary>
    public FlowKey Translated => new()
    {
        Source = ClientAddress, SourcePort = ClientPort, Destination = BackendAddress, DestinationPort = BackendPort, Protocol = Protocol,
    };
}

public enum TcpState : byte
{
    None = 0,
    SynSent = 1,
    Established = 2,
    Closing = 3,
}

/// <summary>TCP flag bits as in <see cref="FlowKey.TcpFlags"/>.</summary>
public static class TcpFlag
{
    public const byte Fin = 1, Syn = 2, Rst = 4, Psh = 8, Ack = 16, Urg = 32;
}
