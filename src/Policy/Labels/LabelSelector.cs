namespace Gateway.Policy;

public enum SelectorOperator
{
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// <summary>One requirement of a selector: key (with source), operator and values.</summary>
public sealed record SelectorRequirement(string Source, string Key, SelectorOperator Operator, IReadOnlyList<string> Values)
{
    public bool Matches(LabelSet labels)
    {
        switch (Operator)
        {
            case SelectorOperator.Exists:
                return labels.HasKey(Source, Key);
            case SelectorOperator.DoesNotExist:
                return !labels.HasKey(Source, Key);
            case SelectorOperator.In:
                foreach (var v in labels.ValuesOf(Source, Key))
                {
                    if (Values.Contains(v))
                    {
                        return true;
                    }
                }
                return false;
            default: // NotIn: like Kubernetes, a missing key also satisfies NotIn.
                foreach (var v in labels.ValuesOf(Source, Key))
                {
                    if (Values.Contains(v))
                    {
                        return false;
                    }
                }
                return true;
        }
    }

    public override string ToString()
    {
        string k = $"{Source}:{Key}";
        return Operator switch
        {
            SelectorOperator.Exists => k,
            SelectorOperator.DoesNotExist => "!" + k,
            SelectorOperator.In when Values.Count == 1 => $"{k}={Values[0]}",
            SelectorOperator.In => $"{k} in ({string.Join(",", Values)})",
            _ => $"{k} notin ({string.Join(",", Values)})",
        };
    }
}

/// <summary>
/// A Kubernetes-style label selector (matchLabels are In-requirements with one value). All
/// requirements must hold; an empty selector matches every label set.
/// </summary>
public sealed class LabelSelector
{
    public static readonly LabelSelector All = new([]);

    public LabelSelector(IReadOnlyList<SelectorRequirement> requirements)
    {
        Requirements = requirements ?? throw new ArgumentNullException(nameof(requirements));
    }

    public IReadOnlyList<SelectorRequirement> Requirements { get; }

    public bool IsEmpty => Requirements.Count == 0;

    public bool Matches(LabelSet labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        foreach (var r in Requirements)
        {
            if (!r.Matches(labels))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>True if some requirement constrains this key (any source counts).</summary>
    public bool HasKey(string key) => Requirements.Any(r => r.Key == key);

    /// <summary>True if some requirement uses a key of this source.</summary>
    public bool HasSource(string source) => Requirements.Any(r => r.Source == source);

    public LabelSelector With(SelectorRequirement extra) => new([.. Requirements, extra]);

    /// <summary>Builds a selector from "k=v,k2=v2" style labels (each an In requirement).</summary>
    public static LabelSelector FromLabels(IEnumerable<Label> labels) =>
        new(labels.Select(l => new SelectorRequirement(l.Source, l.Key, SelectorOperator.In, [l.Value])).ToArray());

    public override string ToString() => IsEmpty ? "{}" : "{" + string.Join(", ", Requirements) + "}";
}
