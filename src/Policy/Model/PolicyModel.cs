using Gateway.Datapath;

namespace Gateway.Policy;

public enum Direction : byte
{
    Ingress = 0,
    Egress = 1,
}

public enum PolicyKind
{
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    KubernetesNetworkPolicy,
}

/// <summary>Cilium's policy entities (fromEntities / toEntities).</summary>
public enum Entity
{
    All,
    World,
    Cluster,
    Host,
    RemoteNode,
    KubeApiServer,
    Health,
    Init,
    Unmanaged,
    Ingress,
    None,
}

/// <summary>Where a rule came from, for logs, traces and flow events.</summary>
public sealed record RuleOrigin(
    string File, int Document, PolicyKind Kind, string PolicyName, string? Namespace,
    string Path, Direction Direction, bool Deny, int RuleIndex)
{
    public string QualifiedPolicyName => Namespace is null ? PolicyName : $"{Namespace}/{PolicyName}";

    /// <summary>e.g. `policies/web.yaml: policy default/allow-frontend, rule spec.ingress[0]`.</summary>
    public override string ToString() => $"{File}: policy {QualifiedPolicyName}, rule {Path}";
}

/// <summary>A peer selector of a rule: labels, an entity or a CIDR with exceptions.</summary>
public abstract record PeerSelector;

/// <summary>fromEndpoints/toEndpoints (and Kubernetes podSelector/namespaceSelector), namespace already applied.</summary>
public sealed record EndpointPeer(LabelSelector Selector) : PeerSelector
{
    public override string ToString() => "endpoints " + Selector;
}

public sealed record EntityPeer(Entity Entity) : PeerSelector
{
    public override string ToString() => "entity " + PolicyText.EntityName(Entity);
}

/// <summary>fromCIDR/toCIDR/toCIDRSet (and Kubernetes ipBlock): addresses in Cidr but in no Except prefix.</summary>
public sealed record CidrPeer(IpPrefix Cidr, IReadOnlyList<IpPrefix> Except) : PeerSelector
{
    public override string ToString() =>
        Except.Count == 0 ? $"cidr {Cidr}" : $"cidr {Cidr} except {string.Join(",", Except)}";
}

/// <summary>
/// One L4 match: a protocol and an inclusive destination-port range (for ICMP and ICMPv6 the
/// "port" is the ICMP type, as in Cilium's policy key).
/// </summary>
public readonly record struct PortMatch(byte Protocol, ushort Low, ushort High)
{
    public bool Matches(byte protocol, ushort port) => protocol == Protocol && port >= Low && port <= High;

    public override string ToString()
    {
        string p = PolicyText.ProtocolName(Protocol);
        if (Protocol is IpProtocol.Icmp or IpProtocol.Icmpv6)
        {
            return $"{p} type {Low}";
        }
        if (Low == 0 && High == ushort.MaxValue)
        {
            return $"any/{p}";
        }
        return Low == High ? $"{Low}/{p}" : $"{Low}-{High}/{p}";
    }
}

/// <summary>
/// One rule of one section (ingress, egress, ingressDeny, egressDeny) after parsing and
/// namespace inference. <see cref="Peers"/> null means any peer (an L4-only rule); an empty list
/// selects no peer (Cilium's `- {}` rule). <see cref="Ports"/> null means every protocol and port.
/// </summary>
public sealed record PolicyRule(
    Direction Direction, bool Deny, IReadOnlyList<PeerSelector>? Peers, IReadOnlyList<PortMatch>? Ports, RuleOrigin Origin);

/// <summary>One spec of a policy: the endpoints it selects and its rules.</summary>
public sealed record PolicySpec(
    LabelSelector Subject, bool DefaultDenyIngress, bool DefaultDenyEgress, IReadOnlyList<PolicyRule> Rules, string Path);

/// <summary>One policy document (one YAML document) of one file.</summary>
public sealed record PolicyDocument(string File, int Document, PolicyKind Kind, string Name, string? Namespace, IReadOnlyList<PolicySpec> Specs);

/// <summary>Every policy loaded from a set of files, in file then document order.</summary>
public sealed class PolicySet
{
    public PolicySet(IReadOnlyList<PolicyDocument> documents, IReadOnlyList<string> files)
    {
        Documents = documents ?? throw new ArgumentNullException(nameof(documents));
        Files = files ?? throw new ArgumentNullException(nameof(files));
    }

    public static readonly PolicySet Empty = new([], []);

    public IReadOnlyList<PolicyDocument> Documents { get; }
    public IReadOnlyList<string> Files { get; }

    public IEnumerable<PolicySpec> Specs => Documents.SelectMany(d => d.Specs);

    public IEnumerable<PolicyRule> Rules => Specs.SelectMany(s => s.Rules);
}

public static class PolicyText
{
    public static string ProtocolName(byte protocol) => protocol switch
    {
        IpProtocol.Tcp => "TCP",
        IpProtocol.Udp => "UDP",
        IpProtocol.Sctp => "SCTP",
        IpProtocol.Icmp => "ICMP",
        IpProtocol.Icmpv6 => "ICMPv6",
        _ => protocol.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    public static string EntityName(Entity e) => e switch
    {
        Entity.RemoteNode => "remote-node",
        Entity.KubeApiServer => "kube-apiserver",
        _ => e.ToString().ToLowerInvariant(),
    };

    public static bool TryParseEntity(string text, out Entity entity)
    {
        foreach (var e in Enum.GetValues<Entity>())
        {
            if (EntityName(e) == text)
            {
                entity = e;
                return true;
            }
        }
        entity = default;
        return false;
    }

    public static string DirectionName(Direction d) => d == Direction.Ingress ? "INGRESS" : "EGRESS";
}
