namespace Gateway.Policy;

/// <summary>
/// Parses a Kubernetes NetworkPolicy (networking.k8s.io/v1) spec into the same rule model, with
/// Kubernetes semantics: policyTypes decide default deny; a rule without from/to matches every
/// peer; a rule without ports matches every port; an empty rule allows everything.
/// </summary>
internal static class KubernetesParser
{
    public static PolicySpec ParseSpec(YNode spec, PolicyLoader.Context ctx)
    {
        if (!spec.IsMapping)
        {
            throw spec.Error("spec is required");
        }
        spec.CheckKeys(["podSelector", "policyTypes", "ingress", "egress"]);
        string ns = ctx.Namespace!;
        var podSel = spec["podSelector"];
        if (!podSel.Exists)
        {
            throw podSel.Error("podSelector is required (use {} for every pod of the namespace)");
        }
        var subject = PolicyLoader.ParseSelector(podSel, LabelSources.Any)
            .With(new SelectorRequirement(LabelSources.K8s, LabelSources.NamespaceKey, SelectorOperator.In, [ns]));

        bool ingressType = true, egressType = spec["egress"].Exists;
        var types = spec["policyTypes"];
        if (types.Exists)
        {
            ingressType = egressType = false;
            foreach (var t in types.Items())
            {
                switch (t.String())
                {
                    case "Ingress": ingressType = true; break;
                    case "Egress": egressType = true; break;
                    default: throw t.Error($"policy type '{t.String()}' is not Ingress or Egress");
                }
            }
        }

        var rules = new List<PolicyRule>();
        if (ingressType)
        {
            var items = spec["ingress"].Items();
            for (int i = 0; i < items.Count; i++)
            {
                rules.Add(ParseRule(items[i], Direction.Ingress, i, ctx));
            }
        }
        if (egressType)
        {
            var items = spec["egress"].Items();
            for (int i = 0; i < items.Count; i++)
            {
                rules.Add(ParseRule(items[i], Direction.Egress, i, ctx));
            }
        }
        return new PolicySpec(subject, ingressType, egressType, rules, spec.Path);
    }

    private static PolicyRule ParseRule(YNode rule, Direction dir, int index, PolicyLoader.Context ctx)
    {
        var origin = ctx.Origin(rule.Path, dir, deny: false, index);
        if (rule.IsNull)
        {
            return new PolicyRule(dir, false, null, null, origin);
        }
        string peerKey = dir == Direction.Ingress ? "from" : "to";
        rule.CheckKeys([peerKey, "ports"]);
        var peers = new List<PeerSelector>();
        foreach (var p in rule[peerKey].Items())
        {
            peers.Add(ParsePeer(p, ctx.Namespace!));
        }
        List<PortMatch>? ports = null;
        foreach (var p in rule["ports"].Items())
        {
            ports ??= [];
            p.CheckKeys(["port", "endPort", "protocol"]);
            var (low, high) = PolicyLoader.ParsePortRange(p["port"], p["endPort"]);
            foreach (var proto in PolicyLoader.ParseProtocol(p["protocol"], kubernetes: true))
            {
                ports.Add(new PortMatch(proto, low, high));
            }
        }
        return new PolicyRule(dir, false, peers.Count == 0 ? null : peers, ports, origin);
    }

    private static PeerSelector ParsePeer(YNode peer, string ns)
    {
        peer.CheckKeys(["podSelector", "namespaceSelector", "ipBlock"]);
        var ipBlock = peer["ipBlock"];
        var pods = peer["podSelector"];
        var nss = peer["namespaceSelector"];
        if (ipBlock.Exists)
        {
            if (pods.Exists || nss.Exists)
            {
                throw ipBlock.Error("ipBlock cannot be combined with podSelector or namespaceSelector");
            }
            ipBlock.CheckKeys(["cidr", "except"]);
            return PolicyLoader.ParseCidrWithExcept(ipBlock["cidr"], ipBlock["except"]);
        }
        if (!pods.Exists && !nss.Exists)
        {
            throw peer.Error("a peer needs podSelector, namespaceSelector or ipBlock");
        }
        var reqs = new List<SelectorRequirement>();
        if (pods.Exists)
        {
            reqs.AddRange(PolicyLoader.ParseSelector(pods, LabelSources.Any).Requirements);
        }
        if (nss.Exists)
        {
            // Namespace labels live on pod identities as k8s:io.cilium.k8s.namespace.labels.KEY.
            foreach (var r in PolicyLoader.ParseSelector(nss, LabelSources.K8s).Requirements)
            {
                reqs.Add(r with { Source = LabelSources.K8s, Key = LabelSources.NamespaceLabelPrefix + r.Key });
            }
            reqs.Add(new SelectorRequirement(LabelSources.K8s, LabelSources.NamespaceKey, SelectorOperator.Exists, []));
        }
        else
        {
            reqs.Add(new SelectorRequirement(LabelSources.K8s, LabelSources.NamespaceKey, SelectorOperator.In, [ns]));
        }
        return new EndpointPeer(new LabelSelector(reqs));
    }
}
