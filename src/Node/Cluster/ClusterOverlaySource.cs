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

    // The store's ipcache, identities and policies the last load used (snapshots never mutate, so
    // a reference that did not change means content that did not change).
    private (object? IpCache, object? Identities, object? Policies) _loaded;

    /// <summary>True when the store's ipcache (other nodes' entries), identities or policies moved
    /// since the last load. This node's own entries coming back from the store (it published them
    /// while loading) are not a reason to reload tens of thousands of endpoints.</summary>
    public bool IsStale(ClusterSnapshot snapshot)
    {
        if (!ReferenceEquals(_loaded.Policies, snapshot.Policies))
        {
            return true;
        }
        if (!ReferenceEquals(_loaded.Identities, snapshot.Identities) &&
            (_loaded.Identities is not IReadOnlyDictionary<uint, string> ids || !OnlyOwnIdentitiesDiffer(ids, snapshot.Identities)))
        {
            return true;
        }
        if (ReferenceEquals(_loaded.IpCache, snapshot.IpCache))
        {
            return false;
        }
        if (_loaded.IpCache is not IReadOnlyDictionary<string, IpCacheEntry> before)
        {
            return true;
        }
        return !SameForeignEntries(before, snapshot.IpCache) || !SameForeignEntries(snapshot.IpCache, before);
    }

    /// <summary>The identities differ only by numbers this node allocated for its own pods (the load
    /// itself allocated them, after reading the snapshot).</summary>
    private bool OnlyOwnIdentitiesDiffer(IReadOnlyDictionary<uint, string> before, IReadOnlyDictionary<uint, string> now)
    {
        foreach (var (id, labels) in now)
        {
            if ((!before.TryGetValue(id, out var old) || old != labels) && !(_held.TryGetValue(labels, out uint mine) && mine == id))
            {
                return false;
            }
        }
        foreach (var (id, labels) in before)
        {
            if (!now.TryGetValue(id, out var other) || other != labels)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Every other node's entry of <paramref name="a"/> is also in <paramref name="b"/>, unchanged.</summary>
    private bool SameForeignEntries(IReadOnlyDictionary<string, IpCacheEntry> a, IReadOnlyDictionary<string, IpCacheEntry> b)
    {
        foreach (var (prefix, entry) in a)
        {
            if (entry.NodeName != agent.NodeName && (!b.TryGetValue(prefix, out var other) || other != entry))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>This node's entries as last loaded (what should be in etcd).</summary>
    public IReadOnlyList<IpCacheEntry> OwnEntries { get; private set; } = [];

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public (PolicySet Policies, EndpointTable Endpoints) Load(OverlaySection settings, IdentityAllocator identities)
    {
        var snapshot = agent.Client.Current;
        _warnedThisLoad = 0;
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
        // 3. Other nodes' pods. Whether an identity may label a pod here is decided once per
        // identity (thousands of pods share a few), not once per entry.
        var peers = agent.PeerPods;
        var verdicts = new Dictionary<uint, (SecurityIdentity? Identity, string? Problem)>();
        int ignored = 0;
        table.EnsureCapacity(table.All.Count + snapshot.IpCache.Count);
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
            else if (!peers.TryGetValue(entry.NodeName, out var pods) || !InAny(pods, prefix.Address))
            {
                problem = $"{prefix} is not in a pod CIDR of node '{entry.NodeName}'";
            }
            else
            {
                if (!verdicts.TryGetValue(entry.Identity, out var verdict))
                {
                    verdict = Judge(entry.Identity, identities, table);
                    verdicts[entry.Identity] = verdict;
                }
                if (verdict.Problem is not null)
                {
                    problem = verdict.Problem;
                }
                else
                {
                    try
                    {
                        table.Add(entry.PodName is { Length: > 0 } pod ? pod : prefix.Address.ToString(), prefix.Address, verdict.Identity!);
                    }
                    catch (ArgumentException e)
                    {
                        problem = e.Message.Split(" (Parameter")[0];
                    }
                }
            }
            if (problem is not null)
            {
                ignored++;
                WarnOnce($"ip {entry.Prefix} {entry.NodeName} {entry.Identity}", $"ipcache entry of node '{entry.NodeName}' ignored: {problem}");
            }
        }
        IgnoredIpCacheEntries = ignored;
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
        if (_warnedThisLoad > WarningsPerLoad)
        {
            agent.Log.Warn($"cluster: {_warnedThisLoad - WarningsPerLoad} more record(s) in the store ignored (not logged one by one)");
        }
        _loaded = (snapshot.IpCache, snapshot.Identities, snapshot.Policies);
        return (new PolicySet(documents, files), table);
    }

    /// <summary>Other nodes' ipcache entries the last load did not use (each logged once).</summary>
    public int IgnoredIpCacheEntries { get; private set; }

    private static bool InAny(IReadOnlyList<IpPrefix> prefixes, IpAddress address)
    {
        foreach (var prefix in prefixes)
        {
            if (prefix.Contains(address))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Whether identity <paramref name="id"/> may label another node's pod here: it must be
    /// in the store and its labels must be a pod's label set under this node's namespace labels.</summary>
    private static (SecurityIdentity? Identity, string? Problem) Judge(uint id, IdentityAllocator identities, EndpointTable table)
    {
        if (!identities.TryGet(id, out var identity) || identity.Kind != IdentityKind.Endpoint)
        {
            return (null, $"identity {id} is not in the store");
        }
        string ns = identity.Labels.Namespace ?? "default";
        if (!Endpoint.BuildLabels(identity.Labels, ns, table.NamespaceLabels.GetValueOrDefault(ns)).Equals(identity.Labels))
        {
            return (null, $"the labels of identity {id} are not a pod's label set here (namespace labels differ)");
        }
        return (identity, null);
    }

    /// <summary>A label set as the store keeps it: Cilium's label string, each label followed by ';'.</summary>
    internal static string StoreLabels(LabelSet labels) => labels.Canonical + ";";

    /// <summary>Warnings logged per load at most; the rest are counted (a node publishing thousands
    /// of bad entries must not flood the log or slow the load).</summary>
    private const int WarningsPerLoad = 16;
    private int _warnedThisLoad;

    private void WarnOnce(string key, string message)
    {
        if (_warned.Count < 100_000 && _warned.Add(key) && _warnedThisLoad++ < WarningsPerLoad)
        {
            agent.Log.Warn($"cluster: {message}");
        }
    }
}
