namespace Gateway.Policy;

/// <summary>Well-known label sources and keys (Cilium's `source:key=value` form).</summary>
public static class LabelSources
{
    /// <summary>Kubernetes pod and namespace labels.</summary>
    public const string K8s = "k8s";
    /// <summary>Labels of the reserved identities (host, world, ...).</summary>
    public const string Reserved = "reserved";
    /// <summary>Labels of CIDR-derived identities, one per enclosing prefix.</summary>
    public const string Cidr = "cidr";
    /// <summary>In a selector: the key matches a label of any source.</summary>
    public const string Any = "any";
    public const string Unspec = "unspec";
    public const string Container = "container";

    /// <summary>The namespace of a pod, as Cilium labels every pod identity.</summary>
    public const string NamespaceKey = "io.kubernetes.pod.namespace";
    /// <summary>Namespace labels are copied onto pods with this key prefix (used by namespaceSelector).</summary>
    public const string NamespaceLabelPrefix = "io.cilium.k8s.namespace.labels.";
    /// <summary>Kubernetes (1.21+) labels every namespace with its own name under this key.</summary>
    public const string NamespaceNameLabel = "kubernetes.io/metadata.name";

    internal static bool IsKnown(ReadOnlySpan<char> source) =>
        source is K8s or Reserved or Cidr or Any or Unspec or Container;
}

/// <summary>
/// One label: source, key and value, written `k8s:app=frontend` or `reserved:host`.
/// Ordering is by key, then source, then value so a sorted set is canonical.
/// </summary>
public readonly record struct Label(string Source, string Key, string Value) : IComparable<Label>
{
    public int CompareTo(Label other)
    {
        int c = string.CompareOrdinal(Key, other.Key);
        if (c != 0)
        {
            return c;
        }
        c = string.CompareOrdinal(Source, other.Source);
        return c != 0 ? c : string.CompareOrdinal(Value, other.Value);
    }

    public override string ToString() => Value.Length == 0 ? $"{Source}:{Key}" : $"{Source}:{Key}={Value}";

    /// <summary>
    /// Parses `source:key=value`, `source:key` or `key=value`. Text before the first ':' is the source
    /// (CIDR keys such as "fd00::/64" keep their own colons); without one the default source applies.
    /// </summary>
    public static Label Parse(string text, string defaultSource)
    {
        ArgumentNullException.ThrowIfNull(text);
        int eq = text.IndexOf('=');
        string keyPart = eq < 0 ? text : text[..eq];
        string value = eq < 0 ? "" : text[(eq + 1)..];
        var (source, key) = SplitSource(keyPart, defaultSource);
        return new Label(source, key, value);
    }

    /// <summary>
    /// Splits "k8s:app" into ("k8s", "app"). Cilium's selectors also accept the '.' form
    /// ("k8s.io.kubernetes.pod.namespace", used in its matchExpressions docs example) when the
    /// prefix is a known source; a bare key gets <paramref name="defaultSource"/>.
    /// </summary>
    public static (string Source, string Key) SplitSource(string key, string defaultSource)
    {
        int colon = key.IndexOf(':');
        if (colon > 0)
        {
            return (key[..colon], key[(colon + 1)..]);
        }
        int dot = key.IndexOf('.');
        if (dot > 0 && dot < key.Length - 1 && LabelSources.IsKnown(key.AsSpan(0, dot)) &&
            key.AsSpan(0, dot) is not LabelSources.Unspec)
        {
            // Cilium stores selector keys as "source.key" internally, so its docs use that form too.
            return (key[..dot], key[(dot + 1)..]);
        }
        return (defaultSource, key);
    }
}
