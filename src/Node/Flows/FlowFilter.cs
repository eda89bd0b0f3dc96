namespace Gateway.Node.Flows;

/// <summary>
/// The filters of <c>gateway observe</c>, with <c>hubble observe</c>'s logic: different kinds of
/// filter must all match (AND); several values of one kind match if any does (OR). A label
/// filter is a comma-separated list of terms that must all hold for one side's labels.
/// </summary>
public sealed class FlowFilter
{
    public static readonly IReadOnlyList<string> VerdictNames = ["FORWARDED", "DROPPED", "ERROR"];

    private readonly HashSet<string> _verdicts = new(StringComparer.Ordinal);
    private readonly List<LabelTerm[]> _from = [];
    private readonly List<LabelTerm[]> _to = [];
    private readonly HashSet<uint> _fromIdentity = [];
    private readonly HashSet<uint> _toIdentity = [];

    /// <summary>Adds a verdict (case-insensitive); false when it is not one of <see cref="VerdictNames"/>.</summary>
    public bool TryAddVerdict(string verdict)
    {
        ArgumentNullException.ThrowIfNull(verdict);
        string upper = verdict.Trim().ToUpperInvariant();
        if (!VerdictNames.Contains(upper))
        {
            return false;
        }
        _verdicts.Add(upper);
        return true;
    }

    /// <summary>Adds a source label filter such as <c>app=frontend</c> or <c>k8s:app=frontend,tier=web</c>.</summary>
    public bool TryAddFromLabel(string selector, out string? error) => TryAdd(_from, selector, out error);

    /// <summary>Adds a destination label filter.</summary>
    public bool TryAddToLabel(string selector, out string? error) => TryAdd(_to, selector, out error);

    public void AddFromIdentity(uint identity) => _fromIdentity.Add(identity);

    public void AddToIdentity(uint identity) => _toIdentity.Add(identity);

    public bool Matches(FlowRecord flow)
    {
        ArgumentNullException.ThrowIfNull(flow);
        return (_verdicts.Count == 0 || _verdicts.Contains(flow.Verdict)) &&
               (_fromIdentity.Count == 0 || _fromIdentity.Contains(flow.Source.Identity)) &&
               (_toIdentity.Count == 0 || _toIdentity.Contains(flow.Destination.Identity)) &&
               MatchesAny(_from, flow.Source.Labels) &&
               MatchesAny(_to, flow.Destination.Labels);
    }

    private static bool MatchesAny(List<LabelTerm[]> selectors, IReadOnlyList<string> labels)
    {
        if (selectors.Count == 0)
        {
            return true;
        }
        foreach (var selector in selectors)
        {
            if (selector.All(term => labels.Any(term.Matches)))
            {
                return true;
            }
        }
        return false;
    }

    private static bool TryAdd(List<LabelTerm[]> into, string selector, out string? error)
    {
        ArgumentNullException.ThrowIfNull(selector);
        var terms = new List<LabelTerm>();
        foreach (var part in selector.Split(','))
        {
            if (!LabelTerm.TryParse(part.Trim(), out var term))
            {
                error = $"'{selector}' is not a label filter: use key=value, key, or source:key=value (e.g. app=frontend, k8s:app=frontend)";
                return false;
            }
            terms.Add(term);
        }
        into.Add([.. terms]);
        error = null;
        return true;
    }

    /// <summary>
    /// One label term. Labels are logged as <c>source:key=value</c> (<c>k8s:app=frontend</c>,
    /// <c>reserved:world</c>); a term without a source (or with <c>any:</c>) matches every source,
    /// a term without <c>=value</c> only asks for the key.
    /// </summary>
    private readonly record struct LabelTerm(string? Source, string Key, string? Value)
    {
        public static bool TryParse(string text, out LabelTerm term)
        {
            term = default;
            if (text.Length == 0)
            {
                return false;
            }
            int eq = text.IndexOf('=');
            string keyPart = eq < 0 ? text : text[..eq];
            string? value = eq < 0 ? null : text[(eq + 1)..];
            var (source, key) = Split(keyPart);
            if (key.Length == 0 || source is { Length: 0 })
            {
                return false;
            }
            term = new LabelTerm(source is "any" ? null : source, key, value);
            return true;
        }

        public bool Matches(string label)
        {
            int eq = label.IndexOf('=');
            string keyPart = eq < 0 ? label : label[..eq];
            string value = eq < 0 ? "" : label[(eq + 1)..];
            var (source, key) = Split(keyPart);
            return string.Equals(key, Key, StringComparison.Ordinal) &&
                   (Source is null || string.Equals(source, Source, StringComparison.Ordinal)) &&
                   (Value is null || string.Equals(value, Value, StringComparison.Ordinal));
        }

        /// <summary>The source is the text before the first ':' (CIDR keys such as fd00::/64 keep theirs).</summary>
        private static (string? Source, string Key) Split(string keyPart)
        {
            int colon = keyPart.IndexOf(':');
            return colon < 0 ? (null, keyPart) : (keyPart[..colon], keyPart[(colon + 1)..]);
        }
    }
}
