using Gateway.Cluster;
using Gateway.Datapath;
using Gateway.Node.Configuration;
using Gateway.Node.Overlay;
using Gateway.Policy;

namespace Gateway.Node.Cluster;

/// <summary>
/// Cluster mode's endpoints and policies: this node's own pods from its Endpoints file, with
/// identities allocated in etcd (so that every node gives one label set one number); the other
/// nodes' pods from their ipcache entries and identities in etcd; the policies stored in etcd
/// plus the Policy file, when one is set. Publishes this node's ipcache entries whenever they
/// change. An ipcache entry is used only when it lies in a pod CIDR of the peer node that
/// published it, so a node cannot claim the addresses of another node's pods.
/// </summary>
internal sealed class ClusterOverlaySource(ClusterAgent agent) : IOverlaySource
{
    // Label sets this node holds an identity for in etcd (canonical text -> number); kept across
    // outages so that edits that only move addresses still load while etcd is down.
    private readonly Dictionary<string, uint> _held = new(StringComparer.Ordinal);
    private readonly HashSet<string> _warned = new(StringComparer.Ordinal);

    /// <summary>This node's entries as last loaded (what should be in etcd).</summary>
    public IReadOnlyList<IpCacheEntry> OwnEntries { get; private set; } = [];

    public (PolicySet Policies, EndpointTable Endpoints) Load(OverlaySection settings, IdentityAllocator identities)
    {
        var snapshot = agent.Client.Current;
        // 1. Own pods: the file read once with a scratch allocator only to learn the label sets.
        var own = EndpointFile.Load(settings.EndpointsPath!, new IdentityAllocator());
        var wanted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var endpoint in own.All.Where(e => e.IsWorkload))
        {
            string labels = StoreLabels(endpoint.Labels);
            wanted.Add(labels);
            if (!_held.TryGetValue(labels, out uint id))
            {
                id = agent.Call(ct => agent.Client.AllocateIdentityAsync(labels, ct), $"allocating an identity for {labels}");
                _held[labels] = id;
            }
            identities.Assign(endpoint.Labels, id);
        }
        // 2. Remote identities, so that their numbers and labels are known before any Add.
        foreach (var (id, text) in snapshot.Identities)
        {
            if (id < ReservedIdentity.FirstAllocated || id > ReservedIdentity.MaxAllocated || !LabelSet.TryParseCanonical(text, out var labels))
            {
                WarnOnce($"identity {id}", $"identity {id} in the store has labels that do not parse ('{text}'); ignored");
                continue;
            }
            if (_held.TryGetValue(StoreLabels(labels), out uint mine) && mine != id)
            {
                continue; // an older number of our own labels; ours wins locally
            }
            identities.Assign(labels, id);
        }
        var table = EndpointFile.Load(settings.EndpointsPath!, identities);
        var entries = new List<IpCacheEntry>();
        foreach (var endpoint in table.All.Where(e => e.IsWorkload))
        {
            foreach (var ip in endpoint.Ips)
            {
                entries.Add(new IpCacheEntry
                {
                    Prefix = new IpPrefix(ip, ip.BitLength).ToString(),
                    Identity = endpoint.Identity.Id,
                    HostIp = agent.NodeAddress.ToString(),
                    NodeName = agent.NodeName,
                    Namespace = endpoint.Namespace,
                    PodName = endpoint.Name,
                });
            }
        }
        // 3. Other nodes' pods.
        var peers = agent.PeerPods;
        foreach (var (_, entry) in snapshot.IpCache.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            if (entry.NodeName == agent.NodeName)
            {
                continue;
            }
            string? problem = null;
            if (!IpPrefix.TryParse(entry.Prefix, out var prefix) || prefix.Length != prefix.Address.BitLength)
            {
                problem = $"'{entry.Prefix}' is not a host address";
            }
            else if (!peers.TryGetValue(entry.NodeName, out var pods) || !pods.Any(p => p.Contains(prefix.Address)))
            {
                problem = $"{prefix} is not in a pod CIDR of node '{entry.NodeName}'";
            }
            else if (!identities.TryGet(entry.Identity, out var identity) || identity.Kind != IdentityKind.Endpoint)
            {
                problem = $"identity {entry.Identity} of {prefix} is not in the store";
            }
            else if (!Endpoint.BuildLabels(identity.Labels, identity.Labels.Namespace,
                         table.NamespaceLabels.GetValueOrDefault(identity.Labels.Namespace ?? "default")).Equals(identity.Labels))
            {
                problem = $"the labels of identity {entry.Identity} are not a pod's label set here (namespace labels differ)";
            }
            else
            {
                try
                {
                    table.Add(entry.PodName is { Length: > 0 } pod ? pod : prefix.Address.ToString(), identity.Labels.Namespace, [prefix.Address], identity.Labels);
                }
                catch (ArgumentException e)
                {
                    problem = e.Message.Split(" (Parameter")[0];
                }
            }
            if (problem is not null)
            {
                WarnOnce($"ip {entry.Prefix} {entry.NodeName} {entry.Identity}", $"ipcache entry of node '{entry.NodeName}' ignored: {problem}");
            }
        }
        // 4. Policies: the store's (by name), then the file's.
        var documents = new List<PolicyDocument>();
        var files = new List<string>();
        foreach (var (name, record) in snapshot.Policies.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            try
            {
                documents.AddRange(PolicyLoader.Parse(record.Yaml, $"kvstore:{name}"));
                files.Add($"kvstore:{name}");
            }
            catch (PolicyLoadException e)
            {
                WarnOnce($"policy {name} {record.Yaml.GetHashCode()}", $"policy '{name}' in the store does not load and is ignored: {e.Message}");
            }
        }
        if (settings.PolicyPath is not null)
        {
            var local = PolicyLoader.Load(settings.PolicyPath);
            documents.AddRange(local.Documents);
            files.AddRange(local.Files);
        }
        // 5. Publish what changed; give back identities no pod here uses any more.
        OwnEntries = entries;
        agent.PublishIfChanged(entries);
        foreach (string labels in _held.Keys.Where(l => !wanted.Contains(l)).ToList())
        {
            _held.Remove(labels);
            agent.ReleaseLater(labels);
        }
        return (new PolicySet(documents, files), table);
    }

    /// <summary>A label set as the store keeps it: Cilium's label string, each label followed by ';'.</summary>
    internal static string StoreLabels(LabelSet labels) => labels.Canonical + ";";

    private void WarnOnce(string key, string message)
    {
        if (_warned.Add(key))
        {
            agent.Log.Warn($"cluster: {message}");
        }
    }
}
