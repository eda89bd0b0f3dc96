using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>Parses the spec of a CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy.</summary>
internal static class CiliumParser
{
    private static readonly string[] SpecKeys =
        ["endpointSelector", "ingress", "ingressDeny", "egress", "egressDeny", "description", "labels", "enableDefaultDeny"];

    private static readonly Dictionary<string, string> SpecUnsupported = new()
    {
        ["nodeSelector"] = "host policies (nodeSelector) are not supported",
        ["log"] = "policy logging is not supported",
    };

    private static readonly string[] IngressKeys = ["fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "toPorts", "icmps"];
    private static readonly string[] EgressKeys = ["toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toPorts", "icmps"];

    private static readonly Dictionary<string, string> RuleUnsupported = new()
    {
        ["fromRequires"] = "fromRequires is not supported (deprecated in Cilium 1.17)",
        ["toRequires"] = "toRequires is not supported (deprecated in Cilium 1.17)",
        ["toServices"] = "toServices is not supported",
        ["toFQDNs"] = "toFQDNs (DNS-based policy) is not supported",
        ["fromGroups"] = "fromGroups is not supported",
        ["toGroups"] = "toGroups is not supported",
        ["fromNodes"] = "fromNodes is not supported; use fromEntities: [remote-node]",
        ["toNodes"] = "toNodes is not supported; use toEntities: [remote-node]",
        ["authentication"] = "mutual authentication is not supported",
    };

    private static readonly Dictionary<string, string> PortRuleUnsupported = new()
    {
        ["rules"] = "L7 rules (HTTP, DNS, Kafka) are not supported; only L3/L4 policy is enforced",
        ["listener"] = "Envoy listener redirects are not supported",
        ["originatingTLS"] = "TLS interception is not supported",
        ["terminatingTLS"] = "TLS interception is not supported",
        ["serverNames"] = "SNI matching is not supported",
    };

    public static PolicySpec ParseSpec(YNode spec, PolicyLoader.Context ctx)
    {
        if (!spec.IsMapping)
        {
            throw spec.Error("expected a mapping");
        }
        spec.CheckKeys(SpecKeys, SpecUnsupported);
        var selNode = spec["endpointSelector"];
        if (!selNode.Exists)
        {
            throw selNode.Error("endpointSelector is required");
        }
        var subject = PolicyLoader.ParseSelector(selNode, LabelSources.Any);
        if (ctx.Namespace is not null)
        {
            // A namespaced policy only ever selects endpoints of its own namespace.
            subject = subject.With(NamespaceIs(ctx.Namespace));
        }

        var rules = new List<PolicyRule>();
        bool hasIngress = Section(spec, "ingress", Direction.Ingress, deny: false, ctx, rules);
        hasIngress |= Section(spec, "ingressDeny", Direction.Ingress, deny: true, ctx, rules);
        bool hasEgress = Section(spec, "egress", Direction.Egress, deny: false, ctx, rules);
        hasEgress |= Section(spec, "egressDeny", Direction.Egress, deny: true, ctx, rules);

        var dd = spec["enableDefaultDeny"];
        bool ddIngress = hasIngress, ddEgress = hasEgress;
        if (!dd.IsNull)
        {
            dd.CheckKeys(["ingress", "egress"]);
            if (!dd["ingress"].IsNull)
            {
                ddIngress = dd["ingress"].Boolean();
            }
            if (!dd["egress"].IsNull)
            {
                ddEgress = dd["egress"].Boolean();
            }
        }
        return new PolicySpec(subject, ddIngress, ddEgress, rules, spec.Path);
    }

    private static SelectorRequirement NamespaceIs(string ns) =>
        new(LabelSources.K8s, LabelSources.NamespaceKey, SelectorOperator.In, [ns]);

    /// <summary>
    /// Parses one section. Returns true if the section key is present at all: Cilium's docs put an
    /// endpoint into default deny with `egress: [{}]`, `egress: []` (JSON example) and `egress:` alike.
    /// </summary>
    private static bool Section(YNode spec, string key, Direction dir, bool deny, PolicyLoader.Context ctx, List<PolicyRule> rules)
    {
        var node = spec[key];
        if (!node.Exists)
        {
            return false;
        }
        var items = node.Items();
        for (int i = 0; i < items.Count; i++)
        {
            rules.Add(ParseRule(items[i], dir, deny, i, ctx));
        }
        return true;
    }

    private static PolicyRule ParseRule(YNode rule, Direction dir, bool deny, int index, PolicyLoader.Context ctx)
    {
        var origin = ctx.Origin(rule.Path, dir, deny, index);
        if (rule.IsNull)
        {
            return new PolicyRule(dir, deny, [], null, origin);
        }
        bool ingress = dir == Direction.Ingress;
        rule.CheckKeys(ingress ? IngressKeys : EgressKeys, RuleUnsupported);
        string pfx = ingress ? "from" : "to";

        var peers = new List<PeerSelector>();
        foreach (var sel in rule[pfx + "Endpoints"].Items())
        {
            peers.Add(new EndpointPeer(PeerEndpointSelector(sel, ctx)));
        }
        foreach (var e in rule[pfx + "Entities"].Items())
        {
            string name = e.String();
            if (!PolicyText.TryParseEntity(name, out var entity))
            {
                throw e.Error($"unknown entity '{name}' (all, world, cluster, host, remote-node, kube-apiserver, health, init, unmanaged, ingress, none)");
            }
            peers.Add(new EntityPeer(entity));
        }
        foreach (var c in rule[pfx + "CIDR"].Items())
        {
            peers.Add(new CidrPeer(PolicyLoader.ParsePrefix(c), []));
        }
        foreach (var c in rule[pfx + "CIDRSet"].Items())
        {
            c.CheckKeys(["cidr", "except"], new Dictionary<string, string>
            {
                ["cidrGroupRef"] = "CiliumCIDRGroup references are not supported",
                ["cidrGroupSelector"] = "CiliumCIDRGroup selectors are not supported",
            });
            peers.Add(PolicyLoader.ParseCidrWithExcept(c["cidr"], c["except"]));
        }

        List<PortMatch>? ports = null;
        foreach (var tp in rule["toPorts"].Items())
        {
            ports ??= [];
            tp.CheckKeys(["ports"], PortRuleUnsupported);
            var portList = tp["ports"].Items();
            if (portList.Count == 0)
            {
                // A toPorts entry without ports constrains nothing: all ports of all protocols.
                AddAll(ports, [IpProtocol.Tcp, IpProtocol.Udp, IpProtocol.Sctp], 0, ushort.MaxValue);
            }
            foreach (var p in portList)
            {
                p.CheckKeys(["port", "endPort", "protocol"]);
                var (low, high) = PolicyLoader.ParsePortRange(p["port"], p["endPort"]);
                AddAll(ports, PolicyLoader.ParseProtocol(p["protocol"], kubernetes: false), low, high);
            }
        }
        foreach (var icmp in rule["icmps"].Items())
        {
            ports ??= [];
            icmp.CheckKeys(["fields"]);
            foreach (var f in icmp["fields"].Items())
            {
                f.CheckKeys(["family", "type"]);
                string family = f["family"].OptionalString() ?? "IPv4";
                bool v6 = family switch
                {
                    "IPv4" => false,
                    "IPv6" => true,
                    _ => throw f["family"].Error($"family '{family}' is not IPv4 or IPv6"),
                };
                byte type = IcmpTypes.Parse(f["type"], v6);
                ports.Add(new PortMatch(v6 ? IpProtocol.Icmpv6 : IpProtocol.Icmp, type, type));
            }
        }

        // Cilium: a rule with no peer selector but with ports allows those ports from/to any peer;
        // a rule with neither (`- {}`) selects the endpoint but allows nothing.
        // Empty lists (`fromEndpoints: []`) count as absent, as they do for Cilium's Go structs.
        IReadOnlyList<PeerSelector>? peerList = peers.Count > 0 ? peers : (ports is null ? [] : null);
        return new PolicyRule(dir, deny, peerList, ports, origin);
    }

    private static void AddAll(List<PortMatch> ports, byte[] protocols, ushort low, ushort high)
    {
        foreach (var proto in protocols)
        {
            ports.Add(new PortMatch(proto, low, high));
        }
    }

    /// <summary>
    /// Namespace inference for peer selectors (Cilium's rule): a selector that names no namespace
    /// and no reserved label gets the policy's namespace in a CNP, and "some namespace" (any pod)
    /// in a clusterwide policy. Selectors of reserved identities are left alone.
    /// </summary>
    private static LabelSelector PeerEndpointSelector(YNode node, PolicyLoader.Context ctx)
    {
        var sel = PolicyLoader.ParseSelector(node, LabelSources.Any);
        if (sel.HasSource(LabelSources.Reserved) || sel.HasKey(LabelSources.NamespaceKey))
        {
            return sel;
        }
        return ctx.Namespace is not null
            ? sel.With(NamespaceIs(ctx.Namespace))
            : sel.With(new SelectorRequirement(LabelSources.K8s, LabelSources.NamespaceKey, SelectorOperator.Exists, []));
    }
}

/// <summary>ICMP and ICMPv6 type numbers and Cilium's CamelCase names for them.</summary>
internal static class IcmpTypes
{
    private static readonly Dictionary<string, byte> V4 = new(StringComparer.Ordinal)
    {
        ["EchoReply"] = 0, ["DestinationUnreachable"] = 3, ["Redirect"] = 5, ["Echo"] = 8, ["EchoRequest"] = 8,
        ["RouterAdvertisement"] = 9, ["RouterSelection"] = 10, ["TimeExceeded"] = 11, ["ParameterProblem"] = 12,
        ["Timestamp"] = 13, ["TimestampReply"] = 14, ["Photuris"] = 40, ["ExtendedEchoRequest"] = 42, ["ExtendedEchoReply"] = 43,
    };

    private static readonly Dictionary<string, byte> V6 = new(StringComparer.Ordinal)
    {
        ["DestinationUnreachable"] = 1, ["PacketTooBig"] = 2, ["TimeExceeded"] = 3, ["ParameterProblem"] = 4,
        ["EchoRequest"] = 128, ["EchoReply"] = 129, ["MulticastListenerQuery"] = 130, ["MulticastListenerReport"] = 131,
        ["MulticastListenerDone"] = 132, ["RouterSolicitation"] = 133, ["RouterAdvertisement"] = 134,
        ["NeighborSolicitation"] = 135, ["NeighborAdvertisement"] = 136, ["RedirectMessage"] = 137,
        ["RouterRenumbering"] = 138, ["ICMPNodeInformationQuery"] = 139, ["ICMPNodeInformationResponse"] = 140,
        ["InverseNeighborDiscoverySolicitation"] = 141, ["InverseNeighborDiscoveryAdvertisement"] = 142,
        ["HomeAgentAddressDiscoveryRequest"] = 144, ["HomeAgentAddressDiscoveryReply"] = 145,
        ["MobilePrefixSolicitation"] = 146, ["MobilePrefixAdvertisement"] = 147,
        ["ExtendedEchoRequest"] = 160, ["ExtendedEchoReply"] = 161,
    };

    public static byte Parse(YNode node, bool v6)
    {
        string text = node.String().Trim();
        if (text.Length > 0 && char.IsAsciiDigit(text[0]))
        {
            return (byte)node.Integer(0, 255);
        }
        return (v6 ? V6 : V4).TryGetValue(text, out byte t)
            ? t
            : throw node.Error($"unknown {(v6 ? "ICMPv6" : "ICMP")} type '{text}'");
    }
}
