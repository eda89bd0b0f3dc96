using System.Runtime.CompilerServices;
using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// One compiled, immutable state of the policy engine: identities, ipcache, endpoints, rules and
/// the per-endpoint maps. The engine swaps whole snapshots with one reference write, so a
/// lookup sees either the old state or the new one, never a mix.
/// </summary>
public sealed class PolicySnapshot
{
    private readonly Dictionary<uint, EndpointPolicy> _byIdentity;
    private readonly Dictionary<uint, SecurityIdentity> _identities;

    internal PolicySnapshot(
        long version, PolicySet policies, EndpointTable endpoints, IpCache ipCache,
        IReadOnlyList<RuleOrigin> rules, Dictionary<uint, SecurityIdentity> identities,
        Dictionary<uint, EndpointPolicy> byIdentity)
    {
        Version = version;
        Policies = policies;
        Endpoints = endpoints;
        IpCache = ipCache;
        Rules = rules;
        _identities = identities;
        _byIdentity = byIdentity;
    }

    /// <summary>Increases with every compile.</summary>
    public long Version { get; }
    public PolicySet Policies { get; }
    public EndpointTable Endpoints { get; }
    public IpCache IpCache { get; }
    /// <summary>Every rule, indexed by <see cref="Verdict.RuleId"/>.</summary>
    public IReadOnlyList<RuleOrigin> Rules { get; }

    public IEnumerable<SecurityIdentity> Identities => _identities.Values.OrderBy(i => i.Id);

    public bool TryGetIdentity(uint id, out SecurityIdentity identity) => _identities.TryGetValue(id, out identity!);

    /// <summary>The compiled maps of an endpoint identity; null if this node enforces nothing for it.</summary>
    public EndpointPolicy? GetPolicy(uint endpointIdentity) => _byIdentity.GetValueOrDefault(endpointIdentity);

    public IReadOnlyDictionary<uint, EndpointPolicy> Policy => _byIdentity;

    /// <summary>
    /// The verdict for traffic of <paramref name="endpointIdentity"/> with <paramref name="peerIdentity"/>
    /// in <paramref name="direction"/>. Endpoints without compiled policy are unrestricted. Allocation-free.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Verdict Lookup(uint endpointIdentity, Direction direction, uint peerIdentity, byte protocol, ushort port)
    {
        if (!_byIdentity.TryGetValue(endpointIdentity, out var policy))
        {
            return Verdict.Unrestricted;
        }
        return (direction == Direction.Ingress ? policy.Ingress : policy.Egress).Lookup(peerIdentity, protocol, port);
    }

    /// <summary>The rule behind a verdict, or null for default deny / unrestricted.</summary>
    public RuleOrigin? RuleOf(Verdict verdict) => verdict.RuleId >= 0 ? Rules[verdict.RuleId] : null;

    /// <summary>The port a policy lookup uses: the destination port, or the ICMP type for ICMP.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort PolicyPort(in FlowKey key) =>
        key.Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6 ? key.IcmpType : key.DestinationPort;
}
