using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Node.Cluster;

/// <summary>Another node as the store describes it: the fields of its record, as published.</summary>
public sealed record NodeClaim(string Name, string? PublicKey, string? Address, int Port, string? TunnelAddress, IReadOnlyList<string> PodCidrs)
{
    /// <summary>The record's BootID (a new UUID every time the node's daemon starts).</summary>
    public string? BootId { get; init; }
}

/// <summary>What a node record may not claim because this node or its file's [Peer]s have it.</summary>
public sealed record ReservedClaims(IReadOnlySet<string> Keys, IReadOnlyList<IpAddress> Tunnels, IReadOnlyList<IpPrefix> PodCidrs);

/// <summary>A node record that passed every check and becomes a WireGuard and overlay peer.</summary>
public sealed record ClusterPeer(string Name, string PublicKey, IpEndpoint Endpoint, IpAddress TunnelAddress, IReadOnlyList<IpPrefix> PodCidrs)
{
    /// <summary>The node's boot id as published (lower-case UUID when <see cref="ClusterPeerSelector.RequireBootId"/>
    /// checked it, else as found or empty): IPsec mode derives the node-pair keys from it.</summary>
    public string BootId { get; init; } = "";
}

/// <summary>
/// Decides which node records become peers. A record is refused when a field does not parse, when
/// its key, tunnel address or pod CIDRs collide with this node, a peer of the file, or a node
/// accepted before it, or when a pod CIDR lies outside ClusterCIDR (strict mode would not cover
/// it). Acceptance is sticky: a node already accepted keeps its claim, so a newcomer claiming its
/// pod CIDR is the one refused, whatever the names. Not thread-safe (the agent serialises calls).
/// </summary>
public sealed class ClusterPeerSelector
{
    private readonly string _self;
    private readonly IReadOnlyList<IpPrefix> _ownPods;
    private readonly IpAddress _ownTunnel;
    private readonly IReadOnlyList<IpPrefix> _clusterCidrs;
    private HashSet<string> _accepted = new(StringComparer.Ordinal);

    public ClusterPeerSelector(string self, IReadOnlyList<IpPrefix> ownPodCidrs, IpAddress ownTunnelAddress, IReadOnlyList<IpPrefix> clusterCidrs)
    {
        _self = self;
        _ownPods = ownPodCidrs;
        _ownTunnel = ownTunnelAddress;
        _clusterCidrs = clusterCidrs;
    }

    /// <summary>IPsec mode: a record must carry a UUID boot id (Cilium's per node-pair keys are
    /// derived from both nodes' boot ids); a record without one is refused.</summary>
    public bool RequireBootId { get; init; }

    /// <summary>Picks the peers out of <paramref name="records"/>; <paramref name="reserved"/> is what
    /// is already taken (this node's key, the file's [Peer] keys, tunnel addresses and pod CIDRs).
    /// Returns the refused ones with why.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public (List<ClusterPeer> Peers, List<(string Node, string Reason)> Refused) Select(IEnumerable<NodeClaim> records, ReservedClaims reserved)
    {
        var peers = new List<ClusterPeer>();
        var refused = new List<(string, string)>();
        var keys = new HashSet<string>(reserved.Keys, StringComparer.Ordinal);
        var tunnels = new HashSet<IpAddress>(reserved.Tunnels) { _ownTunnel };
        var claimed = new PodCidrClaims();
        foreach (var prefix in _ownPods)
        {
            claimed.Reserve(prefix, "this node");
        }
        foreach (var prefix in reserved.PodCidrs)
        {
            claimed.Reserve(prefix, "a [Peer] of the file");
        }
        // Earlier acceptance first, then by name: a deterministic order on every node.
        var ordered = records.Where(r => r.Name != _self)
            .OrderBy(r => _accepted.Contains(r.Name) ? 0 : 1)
            .ThenBy(r => r.Name, StringComparer.Ordinal);
        foreach (var record in ordered)
        {
            string? reason = Check(record, keys, tunnels, claimed, out var peer);
            if (reason is not null)
            {
                refused.Add((record.Name, reason));
                continue;
            }
            keys.Add(peer!.PublicKey);
            tunnels.Add(peer.TunnelAddress);
            foreach (var prefix in peer.PodCidrs)
            {
                claimed.Claim(prefix, peer.Name);
            }
            peers.Add(peer);
        }
        _accepted = peers.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        return (peers, refused);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private string? Check(NodeClaim record, HashSet<string> keys, HashSet<IpAddress> tunnels, PodCidrClaims claimed, out ClusterPeer? peer)
    {
        peer = null;
        // A key that decodes is in wg's one canonical text form, so the text itself is comparable.
        if (!WireGuardKey.TryDecodeBase64(record.PublicKey, stackalloc byte[WireGuardKey.Size]))
        {
            return "its WireGuard public key is not a base64 key";
        }
        string publicKey = record.PublicKey!;
        if (keys.Contains(publicKey))
        {
            return "its public key is already used by this node, a [Peer] of the file or another node";
        }
        if (record.Address is null || !IpAddress.TryParse(record.Address, out var address))
        {
            return $"its address '{record.Address}' is not an IP address";
        }
        if (record.Port is < 1 or > 65535)
        {
            return $"its port {record.Port} is not 1-65535";
        }
        if (record.TunnelAddress is null || !IpAddress.TryParse(record.TunnelAddress, out var tunnel) || !tunnel.IsV4)
        {
            return $"its tunnel address '{record.TunnelAddress}' is not an IPv4 address";
        }
        if (tunnels.Contains(tunnel))
        {
            return $"its tunnel address {tunnel} is already used";
        }
        var pods = new List<IpPrefix>();
        foreach (var text in record.PodCidrs)
        {
            if (!IpPrefix.TryParse(text, out var prefix))
            {
                return $"its pod CIDR '{text}' is not a prefix";
            }
            if (!_clusterCidrs.Any(c => c.Contains(prefix)))
            {
                return $"its pod CIDR {prefix} is outside ClusterCIDR (strict mode would not cover it)";
            }
            if (claimed.FindOverlap(prefix) is { } taken)
            {
                return $"its pod CIDR {prefix} overlaps {taken.Prefix} of {taken.Owner}";
            }
            foreach (var earlier in pods)
            {
                if (earlier.Contains(prefix.Address) || prefix.Contains(earlier.Address))
                {
                    return $"its pod CIDR {prefix} overlaps its own {earlier}";
                }
            }
            pods.Add(prefix);
        }
        string bootId = record.BootId ?? "";
        if (RequireBootId)
        {
            if (!Guid.TryParseExact(bootId, "D", out _))
            {
                return $"its boot id '{bootId}' is not a UUID (IPsec mode derives the node-pair keys from it)";
            }
            bootId = bootId.ToLowerInvariant();
        }
        peer = new ClusterPeer(record.Name, publicKey, new IpEndpoint(address, (ushort)record.Port), tunnel, pods) { BootId = bootId };
        return null;
    }
}

/// <summary>
/// The pod CIDRs claimed so far while selecting peers, with their owners. Accepted nodes' CIDRs
/// never overlap each other, so they are kept as disjoint address ranges sorted by start, and an
/// overlap check is one ordered lookup (a cluster of 5,000 nodes is checked in milliseconds, not
/// in 25 million comparisons); this node's and the file's CIDRs, few and possibly nested, are
/// scanned.
/// </summary>
internal sealed class PodCidrClaims
{
    private readonly List<(IpPrefix Prefix, string Owner)> _reserved = [];
    private readonly SortedSet<Range> _accepted = new(Comparer<Range>.Create(static (a, b) =>
        a.IsV6 != b.IsV6 ? a.IsV6.CompareTo(b.IsV6) : a.Start.CompareTo(b.Start)));

    private readonly record struct Range(bool IsV6, UInt128 Start, UInt128 End, IpPrefix Prefix, string Owner);

    public void Reserve(IpPrefix prefix, string owner) => _reserved.Add((prefix, owner));

    /// <summary>Records an accepted node's CIDR; the caller checked it with <see cref="FindOverlap"/> first.</summary>
    public void Claim(IpPrefix prefix, string owner) => _accepted.Add(ToRange(prefix, owner));

    /// <summary>A claimed CIDR that overlaps <paramref name="prefix"/> (either contains the other), or null.</summary>
    public (IpPrefix Prefix, string Owner)? FindOverlap(IpPrefix prefix)
    {
        foreach (var (other, owner) in _reserved)
        {
            if (other.Contains(prefix.Address) || prefix.Contains(other.Address))
            {
                return (other, owner);
            }
        }
        var probe = ToRange(prefix, "");
        if (_accepted.Count == 0 || _accepted.Comparer.Compare(_accepted.Min, probe with { Start = probe.End }) > 0)
        {
            return null;
        }
        // Disjoint ranges: only the last one starting at or before this range's end can overlap it.
        var before = _accepted.GetViewBetween(_accepted.Min, probe with { Start = probe.End }).Max;
        return before.IsV6 == probe.IsV6 && before.End >= probe.Start ? (before.Prefix, before.Owner) : null;
    }

    private static Range ToRange(IpPrefix prefix, string owner)
    {
        var address = prefix.Address;
        int hostBits = address.BitLength - prefix.Length;
        UInt128 start = address.IsV6 ? address.V6 : address.V4;
        UInt128 span = hostBits == 128 ? UInt128.MaxValue : (UInt128.One << hostBits) - 1;
        return new Range(address.IsV6, start, start + span, prefix, owner);
    }
}
