using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>
/// The endpoints known to this node, by name and by address. Immutable once built: a new table
/// is built and swapped in with the next policy snapshot.
/// </summary>
public sealed class EndpointTable
{
    private readonly Dictionary<string, Endpoint> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<IpAddress, Endpoint> _byIp = new();
    private readonly List<Endpoint> _all = new();

    public EndpointTable(IdentityAllocator identities)
    {
        Identities = identities ?? throw new ArgumentNullException(nameof(identities));
    }

    public IdentityAllocator Identities { get; }

    /// <summary>Labels of each namespace (from the endpoints file), used by namespaceSelector.</summary>
    public Dictionary<string, IReadOnlyDictionary<string, string>> NamespaceLabels { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<Endpoint> All => _all;

    /// <summary>Makes room for <paramref name="endpoints"/> endpoints in all (one address each), so
    /// that adding a cluster's tens of thousands of remote pods does not grow the tables step by step.</summary>
    public void EnsureCapacity(int endpoints)
    {
        _byName.EnsureCapacity(endpoints);
        _byIp.EnsureCapacity(endpoints);
        _all.EnsureCapacity(endpoints);
    }

    /// <summary>Problems that did not stop the file from loading (a malformed bandwidth annotation
    /// is reported with file, line and reason and ignored), for the caller to log.</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>Adds an endpoint; its identity comes from its full label set.</summary>
    public Endpoint Add(string name, string? ns, IEnumerable<IpAddress> ips, IEnumerable<Label> labels,
        IReadOnlyList<NamedPort>? ports = null, bool ready = true, IReadOnlyDictionary<string, string>? annotations = null, BandwidthLimits bandwidth = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        var labelList = labels.ToList();
        if (labelList.Count(l => l.Source == LabelSources.Reserved) > 1)
        {
            throw new ArgumentException($"endpoint {name} has more than one reserved: label; a reserved peer is exactly one of host, remote-node, ...", nameof(labels));
        }
        var labelSet = Endpoint.BuildLabels(labelList, ns, NamespaceLabels.GetValueOrDefault(ns ?? "default"));
        bool reserved = labelSet.Any(l => l.Source == LabelSources.Reserved);
        if (!reserved)
        {
            ns ??= "default";
        }
        else
        {
            ns = null;
        }
        var identity = Identities.Allocate(labelSet);
        return Insert(new Endpoint(name, ns, ips.ToArray(), labelSet, identity, ports, ready)
        {
            Annotations = annotations ?? new Dictionary<string, string>(),
            Bandwidth = bandwidth,
        });
    }

    /// <summary>Adds a workload endpoint of an identity already allocated here, with its complete
    /// label set (namespace labels included): cluster mode's ipcache brings tens of thousands of
    /// remote pods that share a few identities, whose label sets are built once, not per pod.</summary>
    public Endpoint Add(string name, IpAddress ip, SecurityIdentity identity)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(identity);
        if (identity.Kind != IdentityKind.Endpoint)
        {
            throw new ArgumentException($"endpoint {name}: identity {identity.Id} is not a workload identity", nameof(identity));
        }
        return Insert(new Endpoint(name, identity.Labels.Namespace ?? "default", [ip], identity.Labels, identity));
    }

    private Endpoint Insert(Endpoint ep)
    {
        if (!_byName.TryAdd(ep.QualifiedName, ep))
        {
            throw new ArgumentException($"endpoint {ep.QualifiedName} is defined twice", "name");
        }
        foreach (var ip in ep.Ips)
        {
            if (!_byIp.TryAdd(ip, ep))
            {
                throw new ArgumentException($"address {ip} of {ep.QualifiedName} already belongs to {_byIp[ip].QualifiedName}", "ips");
            }
        }
        _all.Add(ep);
        return ep;
    }

    public bool TryGetByIp(IpAddress ip, out Endpoint endpoint) => _byIp.TryGetValue(ip, out endpoint!);

    /// <summary>Finds "name" (any namespace, if unique) or "namespace/name".</summary>
    public Endpoint? FindByName(string name)
    {
        if (_byName.TryGetValue(name, out var ep))
        {
            return ep;
        }
        var matches = _all.Where(e => e.Name == name).ToArray();
        return matches.Length == 1 ? matches[0] : null;
    }
}
