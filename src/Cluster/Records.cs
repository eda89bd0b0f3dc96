using System.Collections.Immutable;

namespace Gateway.Cluster;

/// <summary>
/// One node as published under <c>cilium/state/nodes/v1/&lt;cluster&gt;/&lt;name&gt;</c>: what every
/// other node needs to make it a WireGuard peer and route its pods. Stored as JSON with Cilium's
/// node field names (see <see cref="RecordCodec"/>). Equality compares every field, lists by content.
/// </summary>
public sealed record NodeRecord
{
    /// <summary>Node name; also the last element of its key. 1-253 of [A-Za-z0-9-._].</summary>
    public required string Name { get; init; }

    /// <summary>The cluster the node belongs to (the key's cluster element).</summary>
    public string Cluster { get; init; } = "default";

    /// <summary>WireGuard public key, base64 of 32 bytes (as <c>wg pubkey</c> prints it).</summary>
    public required string WireGuardPublicKey { get; init; }

    /// <summary>Underlay address peers send WireGuard datagrams to (Cilium's InternalIP).</summary>
    public required string Address { get; init; }

    /// <summary>Underlay UDP port of the node's WireGuard listener.</summary>
    public required int Port { get; init; }

    /// <summary>The node's own overlay (VXLAN) address inside the tunnel (Cilium's CiliumInternalIP).</summary>
    public required string TunnelAddress { get; init; }

    /// <summary>Pod CIDRs routed to this node, e.g. "10.0.1.0/24".</summary>
    public IReadOnlyList<string> PodCidrs { get; init; } = [];

    /// <summary>Changes on every boot: a peer seeing a new boot id knows the node restarted.</summary>
    public string BootId { get; init; } = "";

    public bool Equals(NodeRecord? other) =>
        other is not null && Name == other.Name && Cluster == other.Cluster && WireGuardPublicKey == other.WireGuardPublicKey &&
        Address == other.Address && Port == other.Port && TunnelAddress == other.TunnelAddress && BootId == other.BootId &&
        PodCidrs.SequenceEqual(other.PodCidrs);

    public override int GetHashCode() => HashCode.Combine(Name, WireGuardPublicKey, Address, Port, TunnelAddress, BootId);
}

/// <summary>
/// One ipcache entry under <c>cilium/state/ip/v1/&lt;cluster&gt;/&lt;ip&gt;</c>: a pod address (or
/// prefix), its security identity and the node that hosts it. JSON with Cilium's
/// identity.IPIdentityPair field names plus <c>NodeName</c>.
/// </summary>
public sealed record IpCacheEntry
{
    /// <summary>"10.0.1.5/32" or "fd00::5/128" (host) or a CIDR such as "10.0.9.0/24"; host bits clear.</summary>
    public required string Prefix { get; init; }

    /// <summary>Security identity of the endpoint (256 and up for allocated ones).</summary>
    public required uint Identity { get; init; }

    /// <summary>Underlay or tunnel address of the hosting node (IPIdentityPair.HostIP).</summary>
    public required string HostIp { get; init; }

    /// <summary>Name of the node that published the entry and hosts the endpoint.</summary>
    public required string NodeName { get; init; }

    /// <summary>IPIdentityPair.Key: the encryption key index (0 for WireGuard).</summary>
    public byte EncryptionKey { get; init; }

    /// <summary>Pod namespace, when the entry is a pod.</summary>
    public string? Namespace { get; init; }

    /// <summary>Pod (endpoint) name, when the entry is a pod.</summary>
    public string? PodName { get; init; }
}

/// <summary>
/// One policy document stored cluster-wide under <c>gateway/state/policies/v1/&lt;cluster&gt;/&lt;Name&gt;</c>.
/// <see cref="Name"/> is <c>&lt;kind&gt;/&lt;namespace&gt;/&lt;name&gt;</c> (the YAML kind: CiliumNetworkPolicy,
/// NetworkPolicy) for namespaced kinds and
/// <c>CiliumClusterwideNetworkPolicy/&lt;name&gt;</c> for clusterwide ones (see <see cref="NameOf"/>);
/// <see cref="Yaml"/> is that one YAML document, as the loader accepts it.
/// </summary>
public sealed record PolicyRecord(string Name, string Yaml)
{
    /// <summary>The record name of a loaded policy document.</summary>
    public static string NameOf(Gateway.Policy.PolicyDocument doc)
    {
        ArgumentNullException.ThrowIfNull(doc);
        string kind = doc.Kind == Gateway.Policy.PolicyKind.KubernetesNetworkPolicy ? "NetworkPolicy" : doc.Kind.ToString();
        return doc.Namespace is null ? $"{kind}/{doc.Name}" : $"{kind}/{doc.Namespace}/{doc.Name}";
    }
}

/// <summary>
/// Everything a node knows about the cluster at one etcd revision. Immutable: a new snapshot is
/// published for every change, so readers never lock.
/// </summary>
public sealed class ClusterSnapshot
{
    public static readonly ClusterSnapshot Empty = new(0,
        ImmutableDictionary<string, NodeRecord>.Empty.WithComparers(StringComparer.Ordinal),
        ImmutableDictionary<string, IpCacheEntry>.Empty.WithComparers(StringComparer.Ordinal),
        ImmutableDictionary<uint, string>.Empty,
        ImmutableDictionary<string, PolicyRecord>.Empty.WithComparers(StringComparer.Ordinal));

    internal ClusterSnapshot(long revision, ImmutableDictionary<string, NodeRecord> nodes, ImmutableDictionary<string, IpCacheEntry> ipCache,
        ImmutableDictionary<uint, string> identities, ImmutableDictionary<string, PolicyRecord> policies)
    {
        Revision = revision;
        Nodes = nodes;
        IpCache = ipCache;
        Identities = identities;
        Policies = policies;
    }

    /// <summary>The etcd revision this snapshot reflects.</summary>
    public long Revision { get; }

    /// <summary>Node name -> record.</summary>
    public IReadOnlyDictionary<string, NodeRecord> Nodes { get; }

    /// <summary>Prefix ("10.0.1.5/32") -> entry.</summary>
    public IReadOnlyDictionary<string, IpCacheEntry> IpCache { get; }

    /// <summary>Identity number -> Cilium label string ("k8s:app=web;k8s:io.kubernetes.pod.namespace=default;").</summary>
    public IReadOnlyDictionary<uint, string> Identities { get; }

    /// <summary>Record name -> policy.</summary>
    public IReadOnlyDictionary<string, PolicyRecord> Policies { get; }
}
