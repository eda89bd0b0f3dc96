namespace Gateway.Cluster;

/// <summary>
/// Numbers and label strings of cluster-wide identities, as Cilium's kvstore allocator stores
/// them: the master key <c>cilium/state/identities/v1/id/&lt;n&gt;</c> holds the label string,
/// each node using it holds <c>.../value/&lt;labels&gt;/&lt;node&gt;</c> = n under its lease.
/// The algorithm is in <see cref="ClusterClient.AllocateIdentityAsync"/> and docs/cluster.md.
/// </summary>
public static class IdentityAllocation
{
    /// <summary>Cilium's first allocated (non-reserved) identity.</summary>
    public const uint FirstIdentity = 256;

    /// <summary>Identities travel in the 24-bit VXLAN VNI.</summary>
    public const uint MaxIdentity = (1u << 24) - 1;

    /// <summary>Longest label string accepted (etcd keys stay well below its 1.5 MiB request limit).</summary>
    public const int MaxLabelsLength = 4096;

    /// <summary>
    /// Cilium's label string form: labels separated and terminated by ';'
    /// ("k8s:app=web;k8s:io.kubernetes.pod.namespace=default;"). Accepts the same without the
    /// final ';' (Gateway.Policy's LabelSet.Canonical) and adds it.
    /// </summary>
    public static string ToCiliumKey(string labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        string s = labels.Trim();
        if (s.Length == 0)
        {
            throw new ArgumentException("an identity needs at least one label", nameof(labels));
        }
        if (!s.EndsWith(';'))
        {
            s += ";";
        }
        Check(s, nameof(labels));
        return s;
    }

    /// <summary>The labels of a Cilium label string, ';' removed ("k8s:app=web", ...).</summary>
    public static IReadOnlyList<string> Split(string ciliumKey) =>
        ciliumKey.Split(';', StringSplitOptions.RemoveEmptyEntries);

    internal static string CheckStored(string value)
    {
        try
        {
            Check(value, "value");
            if (!value.EndsWith(';'))
            {
                throw new ArgumentException("label string does not end with ';'");
            }
            return value;
        }
        catch (ArgumentException e)
        {
            throw new FormatException(e.Message.Split(" (Parameter")[0]);
        }
    }

    private static void Check(string s, string param)
    {
        if (s.Length > MaxLabelsLength)
        {
            throw new ArgumentException($"label string is longer than {MaxLabelsLength} characters", param);
        }
        foreach (char c in s)
        {
            if (char.IsControl(c))
            {
                throw new ArgumentException("label string holds a control character", param);
            }
        }
        if (s.Length == 0 || s == ";")
        {
            throw new ArgumentException("label string is empty", param);
        }
    }
}

/// <summary>Limits callers can check before talking to etcd.</summary>
public static class ClusterLimits
{
    /// <summary>Policies per <see cref="ClusterClient.PutPoliciesAsync"/>: one transaction, below etcd's default --max-txn-ops (128).</summary>
    public const int MaxPoliciesPerApply = ClusterClient.MaxTxnOps;
}
