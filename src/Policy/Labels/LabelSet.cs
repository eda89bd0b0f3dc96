using System.Collections;

namespace Gateway.Policy;

/// <summary>
/// An immutable, sorted set of labels with at most one value per (source, key). Two sets with the
/// same labels are equal and share one security identity.
/// </summary>
public sealed class LabelSet : IEquatable<LabelSet>, IReadOnlyList<Label>
{
    private readonly Label[] _labels;
    private readonly int _hash;

    public static readonly LabelSet Empty = new([]);

    private LabelSet(Label[] sorted)
    {
        _labels = sorted;
        var h = new HashCode();
        foreach (var l in sorted)
        {
            h.Add(l);
        }
        _hash = h.ToHashCode();
        Canonical = string.Join(';', sorted.Select(l => l.ToString()));
        Namespace = ValuesOf(LabelSources.K8s, LabelSources.NamespaceKey).FirstOrDefault();
    }

    /// <summary>Builds a set; a later label with the same source and key replaces an earlier one.</summary>
    public static LabelSet From(IEnumerable<Label> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var map = new Dictionary<(string, string), Label>();
        foreach (var l in labels)
        {
            map[(l.Source, l.Key)] = l;
        }
        var arr = map.Values.ToArray();
        Array.Sort(arr);
        return new LabelSet(arr);
    }

    public static LabelSet Of(params Label[] labels) => From(labels);

    /// <summary>Reads the <see cref="Canonical"/> form back ("k8s:a=b;k8s:c=d", a trailing ';' as
    /// Cilium writes label strings allowed), as other nodes publish label sets in the cluster
    /// store. False for text that is not in that form.</summary>
    public static bool TryParseCanonical(string text, out LabelSet labels)
    {
        labels = Empty;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }
        var list = new List<Label>();
        foreach (var part in text.EndsWith(';') ? text[..^1].Split(';') : text.Split(';'))
        {
            int colon = part.IndexOf(':');
            if (colon <= 0 || colon == part.Length - 1)
            {
                return false;
            }
            list.Add(Label.Parse(part, LabelSources.Unspec));
        }
        labels = From(list);
        return labels.Count == list.Count;
    }

    /// <summary>"k8s:a=b;k8s:c=d": stable text used as the allocation-store key.</summary>
    public string Canonical { get; }

    public int Count => _labels.Length;

    public Label this[int index] => _labels[index];

    public bool Contains(Label label) => Array.BinarySearch(_labels, label) >= 0;

    /// <summary>True if a label with this key exists; source "any" matches every source.</summary>
    public bool HasKey(string source, string key)
    {
        foreach (var l in _labels)
        {
            if (l.Key == key && (source == LabelSources.Any || l.Source == source))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The values of labels with this key (source "any" matches every source).</summary>
    public IEnumerable<string> ValuesOf(string source, string key)
    {
        foreach (var l in _labels)
        {
            if (l.Key == key && (source == LabelSources.Any || l.Source == source))
            {
                yield return l.Value;
            }
        }
    }

    /// <summary>The pod namespace (k8s:io.kubernetes.pod.namespace), or null.</summary>
    public string? Namespace { get; }

    public bool Equals(LabelSet? other) =>
        other is not null && _hash == other._hash && _labels.AsSpan().SequenceEqual(other._labels);

    public override bool Equals(object? obj) => Equals(obj as LabelSet);

    public override int GetHashCode() => _hash;

    public override string ToString() => Canonical;

    public IEnumerator<Label> GetEnumerator() => ((IEnumerable<Label>)_labels).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => _labels.GetEnumerator();
}
