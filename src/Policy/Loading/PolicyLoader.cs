using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// Loads CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (cilium.io/v2) and Kubernetes
/// NetworkPolicy (networking.k8s.io/v1) from a YAML file or a folder of *.yaml/*.yml files
/// (multi-document files allowed). The first mistake aborts the whole load with a
/// <see cref="PolicyLoadException"/>: a set of files is applied whole or not at all.
/// </summary>
public static class PolicyLoader
{
    public static PolicySet Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var files = YamlFiles(path);
        var docs = new List<PolicyDocument>();
        foreach (var f in files)
        {
            docs.AddRange(Parse(YNode.ReadFile(f), f));
        }
        return new PolicySet(docs, files);
    }

    /// <summary>A file, or the *.yaml / *.yml files under a folder (recursively) in name order.</summary>
    internal static List<string> YamlFiles(string path)
    {
        var files = new List<string>();
        if (Directory.Exists(path))
        {
            files.AddRange(Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal));
        }
        else if (File.Exists(path))
        {
            files.Add(path);
        }
        else
        {
            throw new FileNotFoundException($"{path}: no such file or directory", path);
        }
        return files;
    }

    /// <summary>Parses every document of one YAML text (empty documents are skipped).</summary>
    public static IReadOnlyList<PolicyDocument> Parse(string text, string file)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(file);
        var result = new List<PolicyDocument>();
        var docs = YNode.LoadDocuments(text, file);
        for (int d = 0; d < docs.Count; d++)
        {
            var root = new YNode(docs[d].RootNode, "", file, d + 1);
            if (root.IsNull)
            {
                continue;
            }
            if (!root.IsMapping)
            {
                throw root.Error("a policy document must be a mapping");
            }
            result.Add(ParseDocument(root));
        }
        return result;
    }

    private static PolicyDocument ParseDocument(YNode root)
    {
        root.CheckKeys(["apiVersion", "kind", "metadata", "spec", "specs", "status", "description"]);
        string apiVersion = root["apiVersion"].String();
        string kind = root["kind"].String();
        var meta = root["metadata"];
        if (!meta.IsMapping)
        {
            throw meta.Error("metadata with a name is required");
        }
        string name = meta["name"].String();
        string? ns = meta["namespace"].OptionalString();
        switch (kind)
        {
            case "CiliumNetworkPolicy":
            case "CiliumClusterwideNetworkPolicy":
                if (apiVersion != "cilium.io/v2")
                {
                    throw root["apiVersion"].Error($"{kind} needs apiVersion cilium.io/v2, found '{apiVersion}'");
                }
                bool clusterwide = kind == "CiliumClusterwideNetworkPolicy";
                if (clusterwide && ns is not null)
                {
                    throw meta["namespace"].Error("a CiliumClusterwideNetworkPolicy has no namespace");
                }
                var policyKind = clusterwide ? PolicyKind.CiliumClusterwideNetworkPolicy : PolicyKind.CiliumNetworkPolicy;
                string? policyNs = clusterwide ? null : ns ?? "default";
                var ctx = new Context(root.File, root.Document, policyKind, name, policyNs);
                var specs = new List<PolicySpec>();
                var spec = root["spec"];
                var specList = root["specs"];
                if (spec.IsNull && specList.IsNull)
                {
                    throw spec.Error("spec (or specs) is required");
                }
                if (!spec.IsNull)
                {
                    specs.Add(CiliumParser.ParseSpec(spec, ctx));
                }
                foreach (var s in specList.Items())
                {
                    specs.Add(CiliumParser.ParseSpec(s, ctx));
                }
                return new PolicyDocument(root.File, root.Document, policyKind, name, policyNs, specs);
            case "NetworkPolicy":
                if (apiVersion != "networking.k8s.io/v1")
                {
                    throw root["apiVersion"].Error($"NetworkPolicy needs apiVersion networking.k8s.io/v1, found '{apiVersion}'");
                }
                var kctx = new Context(root.File, root.Document, PolicyKind.KubernetesNetworkPolicy, name, ns ?? "default");
                return new PolicyDocument(root.File, root.Document, PolicyKind.KubernetesNetworkPolicy, name, kctx.Namespace,
                    [KubernetesParser.ParseSpec(root["spec"], kctx)]);
            default:
                throw root["kind"].Error($"unsupported kind '{kind}' (expected CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or NetworkPolicy)");
        }
    }

    internal sealed record Context(string File, int Document, PolicyKind Kind, string Name, string? Namespace)
    {
        public RuleOrigin Origin(string path, Direction d, bool deny, int index) => new(File, Document, Kind, Name, Namespace, path, d, deny, index);
    }

    // ---- shared pieces ----

    internal static LabelSelector ParseSelector(YNode node, string defaultSource)
    {
        if (node.IsNull)
        {
            return LabelSelector.All;
        }
        node.CheckKeys(["matchLabels", "matchExpressions"]);
        var reqs = new List<SelectorRequirement>();
        if (!node["matchLabels"].IsNull)
        {
            foreach (var (k, v) in node["matchLabels"].Entries())
            {
                var (src, key) = SplitKey(k, defaultSource, v);
                reqs.Add(new SelectorRequirement(src, key, SelectorOperator.In, [v.IsNull ? "" : v.String()]));
            }
        }
        foreach (var e in node["matchExpressions"].Items())
        {
            e.CheckKeys(["key", "operator", "values"]);
            var keyNode = e["key"];
            var (src, key) = SplitKey(keyNode.String(), defaultSource, keyNode);
            string opText = e["operator"].String();
            SelectorOperator op = opText.ToLowerInvariant() switch
            {
                "in" => SelectorOperator.In,
                "notin" => SelectorOperator.NotIn,
                "exists" => SelectorOperator.Exists,
                "doesnotexist" => SelectorOperator.DoesNotExist,
                _ => throw e["operator"].Error($"unknown operator '{opText}' (In, NotIn, Exists, DoesNotExist)"),
            };
            var values = e["values"].Items().Select(v => v.String()).ToArray();
            if (op is SelectorOperator.In or SelectorOperator.NotIn && values.Length == 0)
            {
                throw e["values"].Error($"operator {opText} needs at least one value");
            }
            if (op is SelectorOperator.Exists or SelectorOperator.DoesNotExist && values.Length != 0)
            {
                throw e["values"].Error($"operator {opText} takes no values");
            }
            reqs.Add(new SelectorRequirement(src, key, op, values));
        }
        return new LabelSelector(reqs);
    }

    private static (string, string) SplitKey(string text, string defaultSource, YNode at)
    {
        var (src, key) = Label.SplitSource(text, defaultSource);
        if (key.Length == 0)
        {
            throw at.Error($"empty label key in '{text}'");
        }
        if (src == LabelSources.Reserved && !ReservedIdentity.TryGetId(key, out _))
        {
            throw at.Error($"'{key}' is not a reserved identity");
        }
        return (src, key);
    }

    internal static IpPrefix ParsePrefix(YNode node)
    {
        string text = node.String();
        // Cilium accepts a bare address in toCIDR as a host prefix; so do we.
        if (!IpPrefix.TryParse(text, out var p))
        {
            throw node.Error($"'{text}' is not a CIDR (e.g. 10.0.0.0/8)");
        }
        var written = text.Contains('/') ? IpAddress.Parse(text[..text.IndexOf('/')]) : p.Address;
        if (written != p.Address)
        {
            throw node.Error($"'{text}' has host bits set (did you mean {p}?)");
        }
        return p;
    }

    internal static CidrPeer ParseCidrWithExcept(YNode cidrNode, YNode exceptNode)
    {
        var cidr = ParsePrefix(cidrNode);
        var except = new List<IpPrefix>();
        foreach (var e in exceptNode.Items())
        {
            var p = ParsePrefix(e);
            if (!cidr.Contains(p))
            {
                throw e.Error($"except {p} is not inside {cidr}");
            }
            except.Add(p);
        }
        return new CidrPeer(cidr, except);
    }

    /// <summary>Parses a port ("80" or 80; 0 or missing = all ports) and optional endPort.</summary>
    internal static (ushort Low, ushort High) ParsePortRange(YNode port, YNode endPort)
    {
        ushort low = 0;
        if (!port.IsNull)
        {
            string text = port.String().Trim();
            if (text.Length > 0 && !char.IsAsciiDigit(text[0]))
            {
                throw port.Error($"named port '{text}' is not supported; use a port number");
            }
            low = (ushort)port.Integer(0, 65535);
        }
        if (endPort.IsNull)
        {
            return low == 0 ? ((ushort)0, ushort.MaxValue) : (low, low);
        }
        ushort high = (ushort)endPort.Integer(0, 65535);
        if (low == 0)
        {
            throw endPort.Error("endPort needs a non-zero port");
        }
        if (high < low)
        {
            throw endPort.Error($"endPort {high} is below port {low}");
        }
        return (low, high);
    }

    internal static byte[] ParseProtocol(YNode node, bool kubernetes)
    {
        if (node.IsNull)
        {
            // Kubernetes defaults to TCP; Cilium's empty protocol means any (TCP, UDP, SCTP).
            return kubernetes ? [IpProtocol.Tcp] : [IpProtocol.Tcp, IpProtocol.Udp, IpProtocol.Sctp];
        }
        string p = node.String();
        return p.ToUpperInvariant() switch
        {
            "TCP" => [IpProtocol.Tcp],
            "UDP" => [IpProtocol.Udp],
            "SCTP" => [IpProtocol.Sctp],
            "ANY" or "" when !kubernetes => [IpProtocol.Tcp, IpProtocol.Udp, IpProtocol.Sctp],
            _ => throw node.Error(kubernetes ? $"protocol '{p}' is not TCP, UDP or SCTP" : $"protocol '{p}' is not TCP, UDP, SCTP or ANY (ICMP uses icmps)"),
        };
    }
}
