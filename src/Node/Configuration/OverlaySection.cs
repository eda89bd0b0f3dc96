using Gateway.Datapath;

namespace Gateway.Node.Configuration;

/// <summary>
/// The [Overlay] section: turns the interface into a Cilium-style encrypted overlay node.
/// Workload (pod) packets are wrapped in VXLAN whose VNI is the sender's security identity,
/// sent between the nodes' tunnel addresses inside WireGuard, and checked against
/// CiliumNetworkPolicy on both sides.
/// </summary>
public sealed partial class OverlaySection
{
    /// <summary>This node's VXLAN endpoint inside the tunnel (IPv4).</summary>
    public IpAddress TunnelAddress { get; set; }
    /// <summary>Workload prefixes that live on this node, behind the TUN device.</summary>
    public List<IpPrefix> PodCidrs { get; } = [];
    /// <summary>Cluster prefixes; plaintext between them never leaves the node (strict mode).
    /// Defaults to every node's pod CIDRs.</summary>
    public List<IpPrefix> ClusterCidrs { get; } = [];
    /// <summary>UDP port of VXLAN inside the tunnel (Linux default 8472; IANA 4789).</summary>
    public ushort VxlanPort { get; set; } = 8472;
    /// <summary>Endpoints file (YAML, cluster-wide: every node loads the same file so that
    /// identities agree).</summary>
    public string? EndpointsPath { get; set; }
    /// <summary>Policy file or folder; null means no policy (every endpoint unrestricted).</summary>
    public string? PolicyPath { get; set; }
    /// <summary>Kubernetes Service file or folder (ClusterIP); null means no services are translated.</summary>
    public string? ServicesPath { get; set; }
    /// <summary>Identity allocation store shared by the nodes (optional).</summary>
    public string? IdentityStorePath { get; set; }
    /// <summary>Strict mode (default on): cluster plaintext never leaves except through the tunnel.</summary>
    public bool Strict { get; set; } = true;
    /// <summary>Flow log file; null = default path, "off" = none.</summary>
    public string? FlowLogPath { get; set; }
    public string? NodeName { get; set; }
    /// <summary>Line of the [Overlay] header, for messages.</summary>
    public int Line { get; set; }

    /// <summary>Cluster mode (docs/cluster.md): the etcd store the nodes share, when set.</summary>
    public KvStoreSettings? KvStore { get; set; }
}

/// <summary>
/// The cluster-mode keys of [Overlay]: where etcd is and how this node introduces itself there.
/// With them the node needs no [Peer] sections and its Endpoints file lists only its own pods;
/// every other node, pod, identity and policy comes from etcd.
/// </summary>
public sealed class KvStoreSettings
{
    /// <summary>Default lease TTL: how long a crashed node's record lingers.</summary>
    public static readonly TimeSpan DefaultLeaseTtl = TimeSpan.FromSeconds(15);

    /// <summary>The KVStore value as written: comma-separated http:// or https:// URLs.</summary>
    public required string Endpoints { get; init; }
    /// <summary>Line of the KVStore key, for messages.</summary>
    public int Line { get; init; }
    public string? CaPath { get; set; }
    public string? CertPath { get; set; }
    public string? KeyPath { get; set; }
    public TimeSpan LeaseTtl { get; set; } = DefaultLeaseTtl;
    /// <summary>The underlay address other nodes send to; null = the address of the interface
    /// holding the default route, found when the node starts.</summary>
    public IpAddress? NodeAddress { get; set; }
    public string ClusterName { get; set; } = "default";
}

/// <summary>Overlay settings of one [Peer] (only allowed with an [Overlay] section).</summary>
public sealed class PeerOverlay
{
    /// <summary>The peer node's VXLAN endpoint; added to its AllowedIPs automatically.</summary>
    public IpAddress? TunnelAddress { get; set; }
    /// <summary>Workload prefixes on that node.</summary>
    public List<IpPrefix> PodCidrs { get; } = [];
    /// <summary>IPsec mode: the peer node's boot id for the per node-pair keys ([Peer] IPsecBootId).</summary>
    public string? IpsecBootId { get; set; }
}
