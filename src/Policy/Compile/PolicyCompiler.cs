using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Turns a policy set and the endpoint table into a <see cref="PolicySnapshot"/>:
/// 1. CIDR identities: every prefix a policy names (and every except prefix) gets a node-local
///    identity labelled with all its enclosing prefixes (cidr:10.0.0.0/8, cidr:10.0.0.0/7, ...)
///    plus reserved:world, and goes into the ipcache next to the endpoint host prefixes.
/// 2. Peer sets: each rule's selectors are resolved to the identities they select (or to the
///    wildcard, identity 0, for rules that select any peer).
/// 3. Maps: per endpoint identity and direction, the rules of every policy that selects it are
///    painted onto per-protocol port ranges, deny rules first, then allow rules.
/// </summary>
public static class PolicyCompiler
{
    private static long s_version;

    private static readonly byte[] L4Protocols = [IpProtocol.Tcp, IpProtocol.Udp, IpProtocol.Sctp, IpProtocol.Icmp, IpProtocol.Icmpv6];

    public static PolicySnapshot Compile(PolicySet policies, EndpointTable endpoints)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(endpoints);

        // --- identities and ipcache ---
        var identities = new Dictionary<uint, SecurityIdentity>();
        foreach (var id in endpoints.Identities.Identities)
        {
            identities[id.Id] = id;
        }
        var ipcache = new IpCache();
        foreach (var ep in endpoints.All)
        {
            foreach (var ip in ep.Ips)
            {
                ipcache.Set(new IpPrefix(ip, ip.BitLength), ep.Identity.Id);
            }
        }
        var prefixes = new SortedSet<IpPrefix>(Comparer<IpPrefix>.Create((a, b) =>
        {
            int c = a.Address.CompareTo(b.Address);
            return c != 0 ? c : a.Length.CompareTo(b.Length);
        }));
        foreach (var rule in policies.Rules)
        {
            foreach (var p in rule.Peers ?? [])
            {
                if (p is CidrPeer c)
                {
                    prefixes.Add(c.Cidr);
                    foreach (var e in c.Except)
                    {
                        prefixes.Add(e);
                    }
                }
            }
        }
        var cidrIdentities = new List<SecurityIdentity>();
        uint nextLocal = ReservedIdentity.LocalScope + 1;
        foreach (var prefix in prefixes)
        {
            var labels = new List<Label> { new(LabelSources.Reserved, "world", "") };
            for (int len = 0; len <= prefix.Length; len++)
            {
                labels.Add(new Label(LabelSources.Cidr, new IpPrefix(prefix.Address, len).ToString(), ""));
            }
            var identity = new SecurityIdentity(nextLocal++, LabelSet.From(labels), IdentityKind.Cidr, prefix);
            identities[identity.Id] = identity;
            cidrIdentities.Add(identity);
            // Endpoint host prefixes stay more specific than (or equal to, and then win over) any CIDR.
            if (!ipcache.TryLookup(prefix.Address, out var matched, out _) || matched != prefix)
            {
                ipcache.Set(prefix, identity.Id);
            }
        }

        // --- rule ids and peer sets ---
        var rules = new List<RuleOrigin>();
        var ruleIds = new Dictionary<PolicyRule, int>(ReferenceEqualityComparer.Instance);
        foreach (var rule in policies.Rules)
        {
            ruleIds[rule] = rules.Count;
            rules.Add(rule.Origin);
        }
        var resolver = new PeerResolver(identities.Values, cidrIdentities);
        var peerSets = new Dictionary<PolicyRule, uint[]?>(ReferenceEqualityComparer.Instance);
        foreach (var rule in policies.Rules)
        {
            peerSets[rule] = resolver.Resolve(rule.Peers);
        }

        // --- per endpoint identity maps ---
        var specs = policies.Specs.ToArray();
        var byIdentity = new Dictionary<uint, EndpointPolicy>();
        foreach (var ep in endpoints.All)
        {
            if (!ep.IsWorkload || byIdentity.ContainsKey(ep.Identity.Id))
            {
                continue;
            }
            var selecting = specs.Where(s => s.Subject.Matches(ep.Labels)).ToArray();
            if (selecting.Length == 0)
            {
                continue;
            }
            byIdentity[ep.Identity.Id] = new EndpointPolicy(
                BuildMap(selecting, Direction.Ingress, peerSets, ruleIds),
                BuildMap(selecting, Direction.Egress, peerSets, ruleIds));
        }
        return new PolicySnapshot(Interlocked.Increment(ref s_version), policies, endpoints, ipcache, rules, identities, byIdentity);
    }

    private static PolicyMap BuildMap(PolicySpec[] selecting, Direction dir,
        Dictionary<PolicyRule, uint[]?> peerSets, Dictionary<PolicyRule, int> ruleIds)
    {
        bool enforced = selecting.Any(s => dir == Direction.Ingress ? s.DefaultDenyIngress : s.DefaultDenyEgress);
        var wildcard = new List<PolicyRule>();
        var perPeer = new Dictionary<uint, List<PolicyRule>>();
        foreach (var spec in selecting)
        {
            foreach (var rule in spec.Rules)
            {
                if (rule.Direction != dir)
                {
                    continue;
                }
                var set = peerSets[rule];
                if (set is null)
                {
                    wildcard.Add(rule);
                    continue;
                }
                foreach (var id in set)
                {
                    if (!perPeer.TryGetValue(id, out var list))
                    {
                        perPeer[id] = list = [];
                    }
                    list.Add(rule);
                }
            }
        }
        if (!enforced && wildcard.Count == 0 && perPeer.Count == 0)
        {
            return PolicyMap.Unrestricted;
        }
        var entries = new Dictionary<uint, PeerEntry>(perPeer.Count + 1);
        if (wildcard.Count > 0)
        {
            entries[0] = BuildEntry(wildcard, ruleIds);
        }
        foreach (var (id, list) in perPeer)
        {
            // Merge the wildcard rules into every specific entry: one lookup then decides.
            list.AddRange(wildcard);
            entries[id] = BuildEntry(list, ruleIds);
        }
        return new PolicyMap(enforced, entries);
    }

    private static PeerEntry BuildEntry(List<PolicyRule> rules, Dictionary<PolicyRule, int> ruleIds)
    {
        // Deny rules first, each group in rule order, so the lowest-numbered deciding rule is recorded.
        var ordered = rules.Distinct().OrderBy(r => r.Deny ? 0 : 1).ThenBy(r => ruleIds[r]).ToArray();
        var tables = new PortTable[L4Protocols.Length];
        for (int i = 0; i < L4Protocols.Length; i++)
        {
            tables[i] = BuildTable(L4Protocols[i], ordered, ruleIds);
        }
        var other = Verdict.Unrestricted;
        foreach (var r in ordered)
        {
            if (r.Ports is null)
            {
                other = new Verdict(r.Deny ? VerdictKind.Denied : VerdictKind.Allowed, ruleIds[r]);
                break;
            }
        }
        return new PeerEntry { Tcp = tables[0], Udp = tables[1], Sctp = tables[2], Icmp = tables[3], Icmpv6 = tables[4], Other = other };
    }

    /// <summary>
    /// Paints the port ranges of one protocol. Boundaries of every range cut 0..65535 into
    /// segments; rules (already in precedence order) paint the still-unpainted segments they
    /// cover. A "next unpainted" skip array keeps this near-linear however rules overlap.
    /// </summary>
    private static PortTable BuildTable(byte protocol, PolicyRule[] ordered, Dictionary<PolicyRule, int> ruleIds)
    {
        var ranges = new List<(int Low, int High, Verdict V)>();
        foreach (var r in ordered)
        {
            var v = new Verdict(r.Deny ? VerdictKind.Denied : VerdictKind.Allowed, ruleIds[r]);
            if (r.Ports is null)
            {
                ranges.Add((0, ushort.MaxValue, v));
                continue;
            }
            foreach (var p in r.Ports)
            {
                if (p.Protocol == protocol)
                {
                    ranges.Add((p.Low, p.High, v));
                }
            }
        }
        if (ranges.Count == 0)
        {
            return new PortTable([0], [Verdict.Unrestricted]);
        }
        var cuts = new SortedSet<int> { 0 };
        foreach (var (lo, hi, _) in ranges)
        {
            cuts.Add(lo);
            if (hi < ushort.MaxValue)
            {
                cuts.Add(hi + 1);
            }
        }
        int[] starts = cuts.ToArray();
        var values = new Verdict[starts.Length];
        var painted = new bool[starts.Length];
        var next = new int[starts.Length + 1];
        for (int i = 0; i < next.Length; i++)
        {
            next[i] = i;
        }
        foreach (var (lo, hi, v) in ranges)
        {
            int s = Find(next, Array.BinarySearch(starts, lo));
            while (s < starts.Length && starts[s] <= hi)
            {
                values[s] = v;
                painted[s] = true;
                next[s] = s + 1;
                s = Find(next, s + 1);
            }
        }
        // Merge neighbours with equal verdicts so the binary search stays short.
        var outStarts = new List<ushort>();
        var outValues = new List<Verdict>();
        for (int i = 0; i < starts.Length; i++)
        {
            var v = painted[i] ? values[i] : Verdict.Unrestricted;
            if (outValues.Count > 0 && outValues[^1] == v)
            {
                continue;
            }
            outStarts.Add((ushort)starts[i]);
            outValues.Add(v);
        }
        return new PortTable(outStarts.ToArray(), outValues.ToArray());
    }

    private static int Find(int[] next, int i)
    {
        int root = i;
        while (next[root] != root)
        {
            root = next[root];
        }
        while (next[i] != root)
        {
            (i, next[i]) = (next[i], root);
        }
        return root;
    }

    /// <summary>Resolves peer selectors to identity numbers, with a label index for matchLabels.</summary>
    private sealed class PeerResolver
    {
        private readonly SecurityIdentity[] _all;
        private readonly List<SecurityIdentity> _cidr;
        private readonly Dictionary<(string Key, string Value), List<SecurityIdentity>> _index = new();

        public PeerResolver(IEnumerable<SecurityIdentity> all, List<SecurityIdentity> cidr)
        {
            _all = all.OrderBy(i => i.Id).ToArray();
            _cidr = cidr;
            foreach (var id in _all)
            {
                if (id.Kind == IdentityKind.Cidr)
                {
                    continue; // CIDR identities carry many labels; selectors reach them via CidrPeer or reserved:world.
                }
                foreach (var l in id.Labels)
                {
                    if (!_index.TryGetValue((l.Key, l.Value), out var list))
                    {
                        _index[(l.Key, l.Value)] = list = [];
                    }
                    list.Add(id);
                }
            }
        }

        /// <summary>Null means "every peer" (the wildcard identity 0).</summary>
        public uint[]? Resolve(IReadOnlyList<PeerSelector>? peers)
        {
            if (peers is null)
            {
                return null;
            }
            var set = new HashSet<uint>();
            foreach (var p in peers)
            {
                switch (p)
                {
                    case EntityPeer { Entity: Entity.All }:
                        return null;
                    case EntityPeer e:
                        foreach (var id in _all)
                        {
                            if (EntityMatches(e.Entity, id))
                            {
                                set.Add(id.Id);
                            }
                        }
                        break;
                    case CidrPeer c:
                        foreach (var id in _cidr)
                        {
                            var q = id.Cidr!.Value;
                            if (c.Cidr.Contains(q) && !c.Except.Any(x => x.Contains(q)))
                            {
                                set.Add(id.Id);
                            }
                        }
                        break;
                    case EndpointPeer ep:
                        foreach (var id in Candidates(ep.Selector))
                        {
                            if (ep.Selector.Matches(id.Labels))
                            {
                                set.Add(id.Id);
                            }
                        }
                        break;
                }
            }
            var arr = set.ToArray();
            Array.Sort(arr);
            return arr;
        }

        private IEnumerable<SecurityIdentity> Candidates(LabelSelector selector)
        {
            List<SecurityIdentity>? best = null;
            bool anyIn = false;
            foreach (var r in selector.Requirements)
            {
                if (r.Operator != SelectorOperator.In || r.Values.Count != 1)
                {
                    continue;
                }
                anyIn = true;
                var list = _index.GetValueOrDefault((r.Key, r.Values[0]));
                if (list is null)
                {
                    return [];
                }
                if (best is null || list.Count < best.Count)
                {
                    best = list;
                }
            }
            if (anyIn)
            {
                return best!;
            }
            // No single-value requirement to index on: every identity is a candidate (CIDR ones
            // too, since a selector may name reserved:world or a cidr: label directly).
            return _all;
        }

        internal static bool EntityMatches(Entity entity, SecurityIdentity id) => entity switch
        {
            Entity.All => true,
            Entity.None => false,
            Entity.World => id.Labels.Contains(new Label(LabelSources.Reserved, "world", "")),
            Entity.Cluster => id.Kind == IdentityKind.Endpoint ||
                              (id.Kind == IdentityKind.Reserved && id.Id is not (ReservedIdentity.World or ReservedIdentity.Unknown)),
            Entity.Host => id.Id == ReservedIdentity.Host,
            Entity.RemoteNode => id.Id == ReservedIdentity.RemoteNode,
            Entity.KubeApiServer => id.Id == ReservedIdentity.KubeApiServer,
            Entity.Health => id.Id == ReservedIdentity.Health,
            Entity.Init => id.Id == ReservedIdentity.Init,
            Entity.Unmanaged => id.Id == ReservedIdentity.Unmanaged,
            Entity.Ingress => id.Id == ReservedIdentity.Ingress,
            _ => false,
        };
    }
}
