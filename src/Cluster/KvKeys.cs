namespace Gateway.Cluster;

/// <summary>
/// The etcd key layout, Cilium's where Cilium has one (pkg/kvstore, pkg/node/store,
/// pkg/allocator): nodes, ipcache and identities; policies under a prefix of this project's own.
/// Every key is documented in docs/cluster.md.
/// </summary>
internal sealed class KvKeys
{
    public const string IdentityRoot = "cilium/state/identities/v1/";
    public const string IdentityIdPrefix = IdentityRoot + "id/";
    public const string IdentityValuePrefix = IdentityRoot + "value/";

    public KvKeys(string cluster)
    {
        Cluster = cluster;
        NodePrefix = $"cilium/state/nodes/v1/{cluster}/";
        IpPrefix = $"cilium/state/ip/v1/{cluster}/";
        PolicyPrefix = $"gateway/state/policies/v1/{cluster}/";
    }

    public string Cluster { get; }

    /// <summary><c>cilium/state/nodes/v1/&lt;cluster&gt;/</c>: one NodeRecord JSON per node, under its lease.</summary>
    public string NodePrefix { get; }

    /// <summary><c>cilium/state/ip/v1/&lt;cluster&gt;/</c>: one IPIdentityPair JSON per pod address, under the owner's lease.</summary>
    public string IpPrefix { get; }

    /// <summary><c>gateway/state/policies/v1/&lt;cluster&gt;/</c>: one policy document per key, no lease.</summary>
    public string PolicyPrefix { get; }

    public string Node(string name) => NodePrefix + name;

    /// <summary>Cilium's IPIdentityPair.PrefixString: the bare address for a host prefix, else the CIDR.</summary>
    public string Ip(string prefixKey) => IpPrefix + prefixKey;

    public string Policy(string name) => PolicyPrefix + name;

    public static string IdentityId(uint id) => IdentityIdPrefix + id.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The prefix of every reference ("slave") key of one label set.</summary>
    public static string IdentityValues(string labels) => IdentityValuePrefix + labels + "/";

    public static string IdentityValue(string labels, string node) => IdentityValues(labels) + node;

    /// <summary>Node and cluster names: DNS-label-like, never '/', so they cannot break a key apart.</summary>
    public static bool IsValidName(string name)
    {
        if (name.Length is 0 or > 253)
        {
            return false;
        }
        foreach (char c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_'))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The exclusive end of the range holding every key that starts with <paramref name="prefix"/>.</summary>
    public static string RangeEnd(string prefix)
    {
        var chars = prefix.ToCharArray();
        chars[^1]++;
        return new string(chars);
    }
}
