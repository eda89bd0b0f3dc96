using Gateway.Datapath;

namespace Gateway.Policy;

/// <summary>Cilium's reserved security identities (numbers fixed by Cilium, carried in the VNI).</summary>
public static class ReservedIdentity
{
    public const uint Unknown = 0;
    public const uint Host = 1;
    public const uint World = 2;
    public const uint Unmanaged = 3;
    public const uint Health = 4;
    public const uint Init = 5;
    public const uint RemoteNode = 6;
    public const uint KubeApiServer = 7;
    public const uint Ingress = 8;

    /// <summary>First identity allocated for endpoint label sets.</summary>
    public const uint FirstAllocated = 256;
    /// <summary>Cluster identities fit in 24 bits (the VXLAN VNI).</summary>
    public const uint MaxAllocated = (1u << 24) - 1;
    /// <summary>Local (node-scoped) identities such as CIDR identities have bit 24 set, as in Cilium; never sent on the wire.</summary>
    public const uint LocalScope = 1u << 24;

    private static readonly (uint Id, string Name)[] Names =
    [
        (Host, "host"), (World, "world"), (Unmanaged, "unmanaged"), (Health, "health"), (Init, "init"),
        (RemoteNode, "remote-node"), (KubeApiServer, "kube-apiserver"), (Ingress, "ingress"),
    ];

    /// <summary>The reserved name ("host", "world", ...) of an id, or null.</summary>
    public static string? NameOf(uint id)
    {
        foreach (var (i, n) in Names)
        {
            if (i == id)
            {
                return n;
            }
        }
        return id == Unknown ? "unknown" : null;
    }

    /// <summary>The id of a reserved name ("remote-node" -> 6).</summary>
    public static bool TryGetId(string name, out uint id)
    {
        foreach (var (i, n) in Names)
        {
            if (n == name)
            {
                id = i;
                return true;
            }
        }
        id = 0;
        return false;
    }

    public static IEnumerable<uint> All => Names.Select(n => n.Id);
}

public enum IdentityKind
{
    /// <summary>One of Cilium's fixed identities (host, world, ...).</summary>
    Reserved,
    /// <summary>Allocated for an endpoint label set (256 and up).</summary>
    Endpoint,
    /// <summary>Node-local identity derived from a CIDR named in a policy.</summary>
    Cidr,
}

/// <summary>A security identity: a number standing for a label set.</summary>
public sealed class SecurityIdentity
{
    public SecurityIdentity(uint id, LabelSet labels, IdentityKind kind, IpPrefix? cidr = null)
    {
        Id = id;
        Labels = labels ?? throw new ArgumentNullException(nameof(labels));
        Kind = kind;
        Cidr = cidr;
    }

    public uint Id { get; }
    public LabelSet Labels { get; }
    public IdentityKind Kind { get; }
    /// <summary>For CIDR identities, the prefix they stand for.</summary>
    public IpPrefix? Cidr { get; }

    /// <summary>Labels of a reserved identity: `reserved:NAME`.</summary>
    public static LabelSet ReservedLabels(uint id) =>
        id == ReservedIdentity.Unknown ? LabelSet.Empty : LabelSet.Of(new Label(LabelSources.Reserved, ReservedIdentity.NameOf(id)!, ""));

    public override string ToString() => $"{Id} [{Labels}]";
}
