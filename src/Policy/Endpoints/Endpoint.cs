using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>A workload (pod) or a reserved peer such as a node, with its addresses and identity.</summary>
public sealed class Endpoint
{
    public Endpoint(string name, string? ns, IReadOnlyList<IpAddress> ips, LabelSet labels, SecurityIdentity identity,
        IReadOnlyList<NamedPort>? ports = null, bool ready = true)
    {
        Ports = ports ?? [];
        Ready = ready;
        Name = name ?? throw new ArgumentNullException(nameof(name));
        Namespace = ns;
        Ips = ips ?? throw new ArgumentNullException(nameof(ips));
        Labels = labels ?? throw new ArgumentNullException(nameof(labels));
        Identity = identity ?? throw new ArgumentNullException(nameof(identity));
    }

    public string Name { get; }
    /// <summary>The pod namespace; null for reserved peers (host, remote-node, ...).</summary>
    public string? Namespace { get; }
    public IReadOnlyList<IpAddress> Ips { get; }
    /// <summary>The identity labels, including k8s:io.kubernetes.pod.namespace and namespace labels.</summary>
    public LabelSet Labels { get; }
    public SecurityIdentity Identity { get; }

    /// <summary>
    /// The ports the workload names (a pod's containerPorts with a name), so a Service's named
    /// targetPort resolves per backend as Kubernetes resolves it.
    /// </summary>
    public IReadOnlyList<NamedPort> Ports { get; }

    /// <summary>
    /// Whether the workload takes new service connections (an EndpointSlice endpoint's
    /// conditions.ready; <c>ready: false</c> in the endpoints file). A not-ready endpoint keeps its
    /// identity and policy but is no service backend; flows already on it are not ended.
    /// </summary>
    public bool Ready { get; }

    /// <summary>The number of the port named <paramref name="name"/> for this protocol, if declared.</summary>
    public bool TryGetPort(string name, byte protocol, out ushort port)
    {
        foreach (var p in Ports)
        {
            if (p.Protocol == protocol && string.Equals(p.Name, name, StringComparison.Ordinal))
            {
                port = p.Port;
                return true;
            }
        }
        port = 0;
        return false;
    }

    /// <summary>True for endpoints whose policy this node enforces (not reserved peers).</summary>
    public bool IsWorkload => Identity.Kind == IdentityKind.Endpoint;

    public string QualifiedName => Namespace is null ? Name : $"{Namespace}/{Name}";

    public override string ToString() => $"{QualifiedName} ({Identity.Id})";

    /// <summary>
    /// The identity label set of a pod: its labels (bare keys get source k8s), its namespace label and
    /// the labels of its namespace as k8s:io.cilium.k8s.namespace.labels.KEY, the way Cilium builds it.
    /// A label set with a reserved label (e.g. reserved:remote-node) is a reserved peer instead.
    /// </summary>
    public static LabelSet BuildLabels(IEnumerable<Label> labels, string? ns, IReadOnlyDictionary<string, string>? namespaceLabels)
    {
        var list = labels.ToList();
        if (list.Any(l => l.Source == LabelSources.Reserved))
        {
            return LabelSet.From(list.Where(l => l.Source == LabelSources.Reserved));
        }
        ns ??= "default";
        list.Add(new Label(LabelSources.K8s, LabelSources.NamespaceKey, ns));
        list.Add(new Label(LabelSources.K8s, LabelSources.NamespaceLabelPrefix + LabelSources.NamespaceNameLabel, ns));
        if (namespaceLabels is not null)
        {
            foreach (var (k, v) in namespaceLabels)
            {
                list.Add(new Label(LabelSources.K8s, LabelSources.NamespaceLabelPrefix + k, v));
            }
        }
        return LabelSet.From(list);
    }
}

/// <summary>A named port of a workload (Kubernetes containerPort with a name).</summary>
public readonly record struct NamedPort(string Name, ushort Port, byte Protocol);
