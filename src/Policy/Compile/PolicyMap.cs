using System.Runtime.CompilerServices;
using Gateway.Datapath;

namespace Gateway.Policy;

public enum VerdictKind : byte
{
    /// <summary>No policy enforces this direction for the endpoint: allowed.</summary>
    Unrestricted = 0,
    /// <summary>An allow rule matched (and no deny rule).</summary>
    Allowed = 1,
    /// <summary>An explicit deny rule matched (ingressDeny/egressDeny): wins over every allow.</summary>
    Denied = 2,
    /// <summary>The direction is enforced and no allow rule matched.</summary>
    DefaultDenied = 3,
}

/// <summary>The answer of one map lookup: what to do, and which rule said so (-1: none).</summary>
public readonly struct Verdict : IEquatable<Verdict>
{
    public Verdict(VerdictKind kind, int ruleId)
    {
        Kind = kind;
        RuleId = ruleId;
    }

    public VerdictKind Kind { get; }
    /// <summary>Index into <see cref="PolicySnapshot.Rules"/>, or -1.</summary>
    public int RuleId { get; }
    public bool IsAllowed => Kind <= VerdictKind.Allowed;

    public static readonly Verdict Unrestricted = new(VerdictKind.Unrestricted, -1);
    public static readonly Verdict DefaultDenied = new(VerdictKind.DefaultDenied, -1);

    public bool Equals(Verdict other) => Kind == other.Kind && RuleId == other.RuleId;
    public override bool Equals(object? obj) => obj is Verdict v && Equals(v);
    public override int GetHashCode() => HashCode.Combine(Kind, RuleId);
    public static bool operator ==(Verdict a, Verdict b) => a.Equals(b);
    public static bool operator !=(Verdict a, Verdict b) => !a.Equals(b);
    public override string ToString() => RuleId < 0 ? Kind.ToString() : $"{Kind} (rule {RuleId})";
}

/// <summary>
/// Destination ports 0..65535 of one protocol cut into disjoint ranges, each with its verdict.
/// <code>
///   Starts:  [0]      [80]       [445]     [8080]  [8081]
///   Values:  default  allow r3   default   deny r7 default
/// </code>
/// The "range step" of a lookup is a binary search over Starts (at most 17 probes, usually 1-3).
/// </summary>
internal sealed class PortTable
{
    private readonly ushort[] _starts;
    private readonly Verdict[] _values;

    public PortTable(ushort[] starts, Verdict[] values)
    {
        _starts = starts;
        _values = values;
    }

    public int RangeCount => _starts.Length;

    internal ushort[] Starts => _starts;
    internal Verdict[] Values => _values;

    public IEnumerable<(ushort Low, ushort High, Verdict Verdict)> Ranges()
    {
        for (int i = 0; i < _starts.Length; i++)
        {
            ushort high = i + 1 < _starts.Length ? (ushort)(_starts[i + 1] - 1) : ushort.MaxValue;
            yield return (_starts[i], high, _values[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Verdict Lookup(ushort port)
    {
        var starts = _starts;
        if (starts.Length == 1)
        {
            return _values[0];
        }
        int lo = 0, hi = starts.Length - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (starts[mid] <= port)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return _values[lo];
    }
}

/// <summary>Everything one peer identity may do with the endpoint in one direction.</summary>
internal sealed class PeerEntry
{
    public required PortTable Tcp { get; init; }
    public required PortTable Udp { get; init; }
    public required PortTable Sctp { get; init; }
    public required PortTable Icmp { get; init; }
    public required PortTable Icmpv6 { get; init; }
    /// <summary>Any other IP protocol (GRE, ESP, ...): only rules without L4 constraints apply.</summary>
    public required Verdict Other { get; init; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Verdict Lookup(byte protocol, ushort port) => protocol switch
    {
        IpProtocol.Tcp => Tcp.Lookup(port),
        IpProtocol.Udp => Udp.Lookup(port),
        IpProtocol.Sctp => Sctp.Lookup(port),
        IpProtocol.Icmp => Icmp.Lookup(port),
        IpProtocol.Icmpv6 => Icmpv6.Lookup(port),
        _ => Other,
    };

    public IEnumerable<(byte Protocol, PortTable Table)> Tables()
    {
        yield return (IpProtocol.Tcp, Tcp);
        yield return (IpProtocol.Udp, Udp);
        yield return (IpProtocol.Sctp, Sctp);
        yield return (IpProtocol.Icmp, Icmp);
        yield return (IpProtocol.Icmpv6, Icmpv6);
    }
}

/// <summary>
/// The compiled policy of one endpoint in one direction, keyed by peer identity. Identity 0 is
/// the wildcard entry (rules that select every peer); each specific identity's entry already
/// contains the wildcard rules merged in, so a verdict takes at most two hash lookups (exact
/// identity, then 0) plus the port range step. Deny beats allow inside every entry. Immutable.
/// </summary>
public sealed class PolicyMap
{
    /// <summary>
    /// One packed hash slot per peer identity: the port ranges of all five L4 protocols live in
    /// one <see cref="Segment"/> array ([tcp.. | udp.. | sctp.. | icmp.. | icmpv6..]) with offsets
    /// in the slot, so a verdict touches the slot array and one segment array, nothing else.
    /// </summary>
    private struct Slot
    {
        public uint Key;
        public bool Used;
        public Segment[] Segments;
        public ushort Udp, Sctp, Icmp, Icmpv6, End;
        public Verdict Other;
    }

    private readonly struct Segment(ushort start, Verdict verdict)
    {
        public readonly ushort Start = start;
        public readonly Verdict Verdict = verdict;
    }

    private readonly Dictionary<uint, PeerEntry> _peers;
    private readonly Slot[] _slots;
    private readonly int _shift;
    private readonly int _wildcardSlot;
    private readonly Verdict _default;

    internal PolicyMap(bool enforced, Dictionary<uint, PeerEntry> peers)
    {
        Enforced = enforced;
        _peers = peers;
        _default = enforced ? Verdict.DefaultDenied : Verdict.Unrestricted;
        int size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(2, peers.Count * 2));
        _slots = new Slot[size];
        _shift = 32 - System.Numerics.BitOperations.Log2((uint)size);
        _wildcardSlot = -1;
        foreach (var (id, e) in peers)
        {
            var segs = new List<Segment>();
            var offsets = new ushort[5];
            int t = 0;
            foreach (var (_, table) in e.Tables())
            {
                offsets[t++] = (ushort)segs.Count;
                for (int i = 0; i < table.Starts.Length; i++)
                {
                    segs.Add(new Segment(table.Starts[i], table.Values[i]));
                }
            }
            int slot = Home(id);
            while (_slots[slot].Used)
            {
                slot = (slot + 1) & (size - 1);
            }
            _slots[slot] = new Slot
            {
                Key = id, Used = true, Segments = segs.ToArray(),
                Udp = offsets[1], Sctp = offsets[2], Icmp = offsets[3], Icmpv6 = offsets[4], End = (ushort)segs.Count,
                Other = e.Other,
            };
            if (id == 0)
            {
                _wildcardSlot = slot;
            }
        }
        foreach (var (_, e) in peers)
        {
            foreach (var (_, t) in e.Tables())
            {
                EntryCount += t.Ranges().Count(r => r.Verdict.Kind is VerdictKind.Allowed or VerdictKind.Denied);
            }
            EntryCount += e.Other.Kind is VerdictKind.Allowed or VerdictKind.Denied ? 1 : 0;
        }
    }

    /// <summary>A map for a direction no policy touches: everything is allowed.</summary>
    public static readonly PolicyMap Unrestricted = new(false, []);

    /// <summary>True if this direction is default deny (a selecting policy has a section for it).</summary>
    public bool Enforced { get; }

    /// <summary>Number of (identity, protocol, port range) entries that carry an allow or deny.</summary>
    public int EntryCount { get; }

    /// <summary>Number of peer identities with an entry (0 counts for the wildcard entry).</summary>
    public int IdentityCount => _peers.Count;

    /// <summary>The verdict for a packet from/to <paramref name="peerIdentity"/>. Allocation-free.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Verdict Lookup(uint peerIdentity, byte protocol, ushort port)
    {
        int slot = Find(peerIdentity);          // hash lookup 1: the exact identity
        if (slot < 0 && (slot = _wildcardSlot) < 0) // lookup 2: the wildcard entry (kept by index)
        {
            return _default;
        }
        var v = Decide(ref _slots[slot], protocol, port);
        return v.Kind == VerdictKind.Unrestricted ? _default : v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(uint key) => (int)((key * 0x9E3779B9u) >> _shift);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Find(uint key)
    {
        var slots = _slots;
        int mask = slots.Length - 1;
        for (int i = Home(key); ; i = (i + 1) & mask)
        {
            ref var s = ref slots[i];
            if (!s.Used)
            {
                return -1;
            }
            if (s.Key == key)
            {
                return i;
            }
        }
    }

    /// <summary>The range step: binary search for the last segment starting at or below the port.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Verdict Decide(ref Slot s, byte protocol, ushort port)
    {
        int lo, hi;
        switch (protocol)
        {
            case IpProtocol.Tcp: lo = 0; hi = s.Udp; break;
            case IpProtocol.Udp: lo = s.Udp; hi = s.Sctp; break;
            case IpProtocol.Sctp: lo = s.Sctp; hi = s.Icmp; break;
            case IpProtocol.Icmp: lo = s.Icmp; hi = s.Icmpv6; break;
            case IpProtocol.Icmpv6: lo = s.Icmpv6; hi = s.End; break;
            default: return s.Other;
        }
        var segs = s.Segments;
        hi--; // segs[lo].Start is always 0, so the answer lies in [lo, hi]
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >> 1;
            if (segs[mid].Start <= port)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return segs[lo].Verdict;
    }

    /// <summary>The entries for display: (identity, protocol or 0 for other protocols, low, high, verdict).</summary>
    public IEnumerable<(uint Identity, byte Protocol, ushort Low, ushort High, Verdict Verdict)> Entries()
    {
        foreach (var (id, e) in _peers.OrderBy(p => p.Key))
        {
            foreach (var (proto, t) in e.Tables())
            {
                foreach (var (lo, hi, v) in t.Ranges())
                {
                    if (v.Kind is VerdictKind.Allowed or VerdictKind.Denied)
                    {
                        yield return (id, proto, lo, hi, v);
                    }
                }
            }
            if (e.Other.Kind is VerdictKind.Allowed or VerdictKind.Denied)
            {
                yield return (id, 0, 0, ushort.MaxValue, e.Other);
            }
        }
    }
}

/// <summary>The ingress and egress maps of one endpoint identity.</summary>
public sealed class EndpointPolicy
{
    public EndpointPolicy(PolicyMap ingress, PolicyMap egress)
    {
        Ingress = ingress;
        Egress = egress;
    }

    public PolicyMap Ingress { get; }
    public PolicyMap Egress { get; }

    public PolicyMap this[Direction d] => d == Direction.Ingress ? Ingress : Egress;
}
