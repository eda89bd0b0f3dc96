using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer;

/// <summary>
/// A Service document the user wrote was wrong: the message names the file, the document, the
/// field and the line on one line. Callers keep the previous service table in force.
/// </summary>
public sealed class ServiceLoadException : Exception
{
    public ServiceLoadException(string file, int line, string message)
        : base(message)
    {
        File = file;
        Line = line;
    }

    internal ServiceLoadException(PolicyLoadException located)
        : this(located.File, located.Line, located.Message)
    {
    }

    public string File { get; }
    /// <summary>1-based line of the offending node (0 if unknown, e.g. an unreadable file).</summary>
    public int Line { get; }
}

/// <summary>
/// Loads Kubernetes v1 Services of type ClusterIP from a YAML file or a folder of *.yaml/*.yml
/// files (multi-document files allowed; documents of other kinds are rejected so a typo never
/// silently drops a service). The first mistake aborts the whole load: a set of files is applied
/// whole or not at all, like the policy loader.
/// <code>
/// apiVersion: v1
/// kind: Service
/// metadata: {name: backend, namespace: default}
/// spec:
///   type: ClusterIP                 # the only type supported
///   clusterIP: 10.96.0.20           # required: Gateway does not allocate service addresses
///   clusterIPs: [10.96.0.20, fd00:96::20]
///   selector: {app: backend}
///   ports:
///     - {name: http, port: 80, targetPort: http, protocol: TCP}   # named port: from each backend
///   sessionAffinity: ClientIP       # or None (default)
///   sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
/// </code>
/// </summary>
public static class ServiceLoader
{
    private static readonly string[] TopKeys = ["apiVersion", "kind", "metadata", "spec", "status"];
    private static readonly string[] MetaKeys = ["name", "namespace", "labels", "annotations", "uid", "resourceVersion", "creationTimestamp", "generation"];
    private static readonly string[] SpecKeys =
    [
        "type", "clusterIP", "clusterIPs", "ports", "selector", "sessionAffinity", "sessionAffinityConfig",
        "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "publishNotReadyAddresses",
    ];
    private static readonly Dictionary<string, string> UnsupportedSpecKeys = new(StringComparer.Ordinal)
    {
        ["externalIPs"] = "externalIPs are not supported (only ClusterIP services)",
        ["externalName"] = "ExternalName services are not supported (only ClusterIP services)",
        ["loadBalancerIP"] = "LoadBalancer services are not supported (only ClusterIP services)",
        ["externalTrafficPolicy"] = "externalTrafficPolicy applies to NodePort/LoadBalancer services, which are not supported",
        ["trafficDistribution"] = "trafficDistribution is not supported",
    };
    private static readonly string[] PortKeys = ["name", "port", "targetPort", "protocol", "appProtocol"];

    /// <summary>Loads every Service in a file or, recursively, a folder.</summary>
    public static IReadOnlyList<ServiceDefinition> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        List<string> files;
        try
        {
            files = PolicyLoader.YamlFiles(path);
        }
        catch (FileNotFoundException e)
        {
            throw new ServiceLoadException(path, 0, e.Message);
        }
        var all = new List<ServiceDefinition>();
        foreach (var f in files)
        {
            string text;
            try
            {
                text = YNode.ReadFile(f);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ServiceLoadException(f, 0, $"{f}: {e.Message}");
            }
            catch (PolicyLoadException e)
            {
                throw new ServiceLoadException(f, 0, e.Message);
            }
            all.AddRange(Parse(text, f));
        }
        CheckUnique(all);
        return all;
    }

    /// <summary>Parses every document of one YAML text (empty documents are skipped).</summary>
    public static IReadOnlyList<ServiceDefinition> Parse(string text, string file)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(file);
        try
        {
            var result = new List<ServiceDefinition>();
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
                    throw root.Error("a Service document must be a mapping");
                }
                result.Add(ParseService(root));
            }
            CheckUnique(result);
            return result;
        }
        catch (PolicyLoadException e)
        {
            throw new ServiceLoadException(e);
        }
    }

    private static ServiceDefinition ParseService(YNode root)
    {
        root.CheckKeys(TopKeys);
        string kind = root["kind"].String();
        if (kind != "Service")
        {
            throw root["kind"].Error($"unsupported kind '{kind}' (expected Service)");
        }
        string apiVersion = root["apiVersion"].String();
        if (apiVersion != "v1")
        {
            throw root["apiVersion"].Error($"Service needs apiVersion v1, found '{apiVersion}'");
        }
        var meta = root["metadata"];
        if (!meta.IsMapping)
        {
            throw meta.Error("metadata with a name is required");
        }
        meta.CheckKeys(MetaKeys);
        string name = meta["name"].String();
        string ns = meta["namespace"].OptionalString() ?? "default";
        var spec = root["spec"];
        if (!spec.IsMapping)
        {
            throw spec.Error("spec is required");
        }
        spec.CheckKeys(SpecKeys, UnsupportedSpecKeys);

        string type = spec["type"].OptionalString() ?? "ClusterIP";
        if (type != "ClusterIP")
        {
            throw spec["type"].Error($"type '{type}' is not supported (only ClusterIP)");
        }

        var vips = ParseClusterIps(spec);

        var ports = new List<ServicePortDefinition>();
        var portItems = spec["ports"].Items();
        if (portItems.Count == 0)
        {
            throw spec["ports"].Error("a Service needs at least one port");
        }
        foreach (var p in portItems)
        {
            p.CheckKeys(PortKeys);
            string? portName = p["name"].OptionalString();
            if (portItems.Count > 1 && string.IsNullOrEmpty(portName))
            {
                throw p.Error("a Service with several ports must name each of them");
            }
            if (portName is not null && ports.Any(x => x.Name == portName))
            {
                throw p["name"].Error($"port name '{portName}' is used twice");
            }
            ushort port = (ushort)p["port"].Integer(1, 65535);
            byte proto = ParseProtocol(p["protocol"]);
            if (ports.Any(x => x.Port == port && x.Protocol == proto))
            {
                throw p["port"].Error($"port {port}/{(proto == IpProtocol.Udp ? "UDP" : "TCP")} is listed twice");
            }
            ushort target = port;
            string? targetName = null;
            var t = p["targetPort"];
            if (!t.IsNull)
            {
                string text = t.String().Trim();
                if (text.Length > 0 && char.IsAsciiDigit(text[0]))
                {
                    target = (ushort)t.Integer(1, 65535);
                }
                else if (IsPortName(text))
                {
                    targetName = text;
                    target = 0;
                }
                else
                {
                    throw t.Error($"targetPort '{text}' is neither a port number nor a port name (at most 15 lowercase letters, digits and '-', with a letter)");
                }
            }
            ports.Add(new ServicePortDefinition(portName, port, proto, target, targetName));
        }

        Dictionary<string, string>? selector = null;
        var sel = spec["selector"];
        if (!sel.IsNull)
        {
            selector = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (k, v) in sel.Entries())
            {
                if (k.Length == 0)
                {
                    throw v.Error("empty selector key");
                }
                selector[k] = v.IsNull ? "" : v.String();
            }
        }

        string affinity = spec["sessionAffinity"].OptionalString() ?? "None";
        bool clientIp = affinity switch
        {
            "None" => false,
            "ClientIP" => true,
            _ => throw spec["sessionAffinity"].Error($"sessionAffinity '{affinity}' is not None or ClientIP"),
        };
        var timeout = ServiceDefinition.DefaultAffinityTimeout;
        var cfg = spec["sessionAffinityConfig"];
        if (!cfg.IsNull)
        {
            cfg.CheckKeys(["clientIP"]);
            var cip = cfg["clientIP"];
            if (!cip.IsNull)
            {
                cip.CheckKeys(["timeoutSeconds"]);
                var ts = cip["timeoutSeconds"];
                if (!ts.IsNull)
                {
                    if (!clientIp)
                    {
                        throw ts.Error("timeoutSeconds needs sessionAffinity: ClientIP");
                    }
                    // Kubernetes validation: 0 < timeoutSeconds <= 86400.
                    timeout = TimeSpan.FromSeconds(ts.Integer(1, 86400));
                }
            }
        }

        int line = root.Line;
        return new ServiceDefinition(root.File, line, ns, name, vips, ports, selector, clientIp, timeout);
    }

    private static List<IpAddress> ParseClusterIps(YNode spec)
    {
        var single = spec["clusterIP"];
        var list = spec["clusterIPs"];
        string? first = single.OptionalString();
        var texts = new List<(string Text, YNode Node)>();
        foreach (var item in list.Items())
        {
            texts.Add((item.String(), item));
        }
        if (first is null && texts.Count == 0)
        {
            throw spec["clusterIP"].Error("clusterIP is required (Gateway does not allocate service addresses)");
        }
        if (first is not null && texts.Count > 0 && texts[0].Text != first)
        {
            throw list.Error($"clusterIPs[0] '{texts[0].Text}' must equal clusterIP '{first}'");
        }
        if (texts.Count == 0)
        {
            texts.Add((first!, single));
        }
        if (texts.Count > 2)
        {
            throw list.Error("at most two clusterIPs (one IPv4, one IPv6)");
        }
        if (texts[0].Text == "None")
        {
            if (texts.Count > 1)
            {
                throw list.Error("a headless service (clusterIP: None) has no other clusterIPs");
            }
            return [];   // headless: no virtual IP, nothing to translate
        }
        var vips = new List<IpAddress>();
        foreach (var (text, node) in texts)
        {
            if (!IpAddress.TryParse(text, out var ip))
            {
                throw node.Error($"'{text}' is not an IP address");
            }
            if (vips.Any(v => v.IsV6 == ip.IsV6))
            {
                throw node.Error($"clusterIPs has two IPv{(ip.IsV6 ? 6 : 4)} addresses");
            }
            vips.Add(ip);
        }
        return vips;
    }

    private static byte ParseProtocol(YNode node)
    {
        string p = node.OptionalString() ?? "TCP";
        return p switch
        {
            "TCP" => IpProtocol.Tcp,
            "UDP" => IpProtocol.Udp,
            "SCTP" => throw node.Error("SCTP services are not supported (TCP or UDP)"),
            _ => throw node.Error($"protocol '{p}' is not TCP or UDP"),
        };
    }

    /// <summary>An IANA service name as Kubernetes validates named ports (RFC 6335 5.1).</summary>
    internal static bool IsPortName(string s)
    {
        if (s.Length is 0 or > 15 || s[0] == '-' || s[^1] == '-' || s.Contains("--", StringComparison.Ordinal))
        {
            return false;
        }
        bool letter = false;
        foreach (char c in s)
        {
            if (char.IsAsciiLetterLower(c))
            {
                letter = true;
            }
            else if (!char.IsAsciiDigit(c) && c != '-')
            {
                return false;
            }
        }
        return letter;
    }

    /// <summary>Two services may not share a name, nor a VIP:port/protocol (also across sources:
    /// the Services file and the services stored in etcd). Throws <see cref="ServiceLoadException"/>.</summary>
    public static void CheckUnique(IEnumerable<ServiceDefinition> services)
    {
        var names = new Dictionary<string, ServiceDefinition>(StringComparer.Ordinal);
        var frontends = new Dictionary<(IpAddress, ushort, byte), ServiceDefinition>();
        foreach (var s in services)
        {
            if (names.TryGetValue(s.QualifiedName, out var other))
            {
                throw new ServiceLoadException(s.File, s.Line,
                    $"{s.File} (line {s.Line}): service {s.QualifiedName} is already defined in {other.File} (line {other.Line})");
            }
            names[s.QualifiedName] = s;
            foreach (var vip in s.ClusterIps)
            {
                foreach (var p in s.Ports)
                {
                    if (frontends.TryGetValue((vip, p.Port, p.Protocol), out other))
                    {
                        throw new ServiceLoadException(s.File, s.Line,
                            $"{s.File} (line {s.Line}): {Format(vip, p.Port)}/{p.ProtocolName} of {s.QualifiedName} already belongs to {other.QualifiedName}");
                    }
                    frontends[(vip, p.Port, p.Protocol)] = s;
                }
            }
        }
    }

    internal static string Format(IpAddress address, ushort port) =>
        address.IsV6 ? $"[{address}]:{port}" : $"{address}:{port}";
}
