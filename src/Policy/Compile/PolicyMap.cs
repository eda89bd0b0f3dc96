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
    private readonly Dictionary<uint, PeerEntry> _peers;
    private readonly PeerEntry? _wildcard;
    private readonly Verdict _default;

    internal PolicyMap(bool enforced, Dictionary<uint, PeerEntry> peers)
    {
        Enforced = enforced;
        _peers = peers;
        peers.TryGetValue(0, out _wildcard);
        _default = enforced ? Verdict.DefaultDenied : Verdict.Unrestricted;
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
    public static readonly PolicyMap Unrestricted = new(false, new Dictionary<uint, PeerEntry>());

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
        if (_peers.TryGetValue(peerIdentity, out var entry) || (entry = _wildcard) is not null)
        {
            var v = entry.Lookup(protocol, port);
            return v.Kind == VerdictKind.Unrestricted ? _default : v;
        }
        return _default;
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
