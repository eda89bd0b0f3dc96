using Gateway.Datapath;
using Gateway.Policy;

namespace Gateway.LoadBalancer;

/// <summary>
/// One Kubernetes v1 Service of type ClusterIP as the user wrote it: where it came from (so the
/// compiled table and `gateway service list` can point back to the file), its virtual IPs, ports,
/// pod selector and session affinity. Backends are not part of it: they are the endpoints the
/// selector matches, resolved when the table is compiled against an endpoint table.
/// </summary>
public sealed class ServiceDefinition
{
    /// <summary>Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).</summary>
    public static readonly TimeSpan DefaultAffinityTimeout = TimeSpan.FromSeconds(10800);

    public ServiceDefinition(string file, int line, string ns, string name, IReadOnlyList<IpAddress> clusterIps,
        IReadOnlyList<ServicePortDefinition> ports, IReadOnlyDictionary<string, string>? selector,
        bool clientIpAffinity, TimeSpan affinityTimeout)
    {
        File = file ?? throw new ArgumentNullException(nameof(file));
        Line = line;
        Namespace = ns ?? throw new ArgumentNullException(nameof(ns));
        Name = name ?? throw new ArgumentNullException(nameof(name));
        ClusterIps = clusterIps ?? throw new ArgumentNullException(nameof(clusterIps));
        Ports = ports ?? throw new ArgumentNullException(nameof(ports));
        Selector = selector;
        ClientIpAffinity = clientIpAffinity;
        AffinityTimeout = affinityTimeout;
        QualifiedName = $"{Namespace}/{Name}";
    }

    public string File { get; }
    /// <summary>Line of the document's first key (1-based).</summary>
    public int Line { get; }
    public string Namespace { get; }
    public string Name { get; }
    /// <summary>"namespace/name", the service's name in flow events, metrics and listings.</summary>
    public string QualifiedName { get; }
    /// <summary>The virtual IPs (clusterIPs; at most one per family). Empty for a headless service.</summary>
    public IReadOnlyList<IpAddress> ClusterIps { get; }
    public IReadOnlyList<ServicePortDefinition> Ports { get; }
    /// <summary>Pod labels (bare keys, source k8s) a backend must carry; null: no selector, no backends.</summary>
    public IReadOnlyDictionary<string, string>? Selector { get; }
    /// <summary>sessionAffinity: ClientIP.</summary>
    public bool ClientIpAffinity { get; }
    public TimeSpan AffinityTimeout { get; }

    public override string ToString() => QualifiedName;
}

/// <summary>
/// One entry of spec.ports: the service port clients use and the backend port it maps to, either
/// a number or the name of a port each backend declares (resolved per backend, as Kubernetes does).
/// </summary>
public sealed record ServicePortDefinition(string? Name, ushort Port, byte Protocol, ushort TargetPort, string? TargetPortName)
{
    public string ProtocolName => Protocol == IpProtocol.Udp ? "UDP" : "TCP";

    public override string ToString() =>
        $"{(Name is null ? "" : Name + " ")}{Port}/{ProtocolName} -> {(TargetPortName ?? TargetPort.ToString(System.Globalization.CultureInfo.InvariantCulture))}";
}
