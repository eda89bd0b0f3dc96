using System.Text.Json;
using Gateway.Policy;

namespace Gateway.Cluster;

/// <summary>
/// One pod's bandwidth annotations stored cluster-wide under
/// <c>gateway/state/bandwidth/v1/&lt;cluster&gt;/&lt;namespace&gt;/&lt;name&gt;</c> (docs/cluster.md):
/// <see cref="Name"/> is <c>namespace/name</c>; <see cref="Egress"/> and <see cref="Ingress"/> are
/// the values of <c>kubernetes.io/egress-bandwidth</c> and <c>kubernetes.io/ingress-bandwidth</c>
/// as written (Kubernetes quantities), null when the record does not set that annotation.
/// </summary>
public sealed record BandwidthRecord(string Name, string? Egress, string? Ingress);

/// <summary>
/// Endpoints files to bandwidth records (for `gateway bandwidth apply --kvstore`) and records to
/// and from the JSON stored in etcd,
/// <c>{"name":"default/web","annotations":{"kubernetes.io/egress-bandwidth":"10M"}}</c>.
/// Writing is strict (a malformed value refuses the whole apply with file, line and reason);
/// reading is lenient per annotation, as the endpoints file is: a stored value that is not a rate
/// is reported and that annotation ignored.
/// </summary>
public static class BandwidthRecords
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>
    /// Reads endpoints files (the format of <c>Endpoints =</c>, <see cref="EndpointFile"/>): one record
    /// per workload endpoint, with its two bandwidth annotations (both null when it has none, which
    /// `apply` stores as "no stored limit"). Throws <see cref="PolicyLoadException"/> for a file that
    /// does not load and <see cref="FormatException"/> for a malformed bandwidth value (file, line and
    /// reason) or a pod named twice.
    /// </summary>
    public static IReadOnlyList<BandwidthRecord> Load(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var records = new List<BandwidthRecord>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string path in paths)
        {
            var table = EndpointFile.Load(path, new IdentityAllocator());
            if (table.Warnings.Count > 0)
            {
                // The node would ignore such a value; storing it would only spread the mistake.
                string warning = table.Warnings[0];
                const string Ignored = "; the annotation is ignored";
                throw new FormatException((warning.EndsWith(Ignored, StringComparison.Ordinal) ? warning[..^Ignored.Length] : warning) + "; nothing is stored");
            }
            foreach (var e in table.All)
            {
                if (!e.IsWorkload)
                {
                    continue;
                }
                if (!IsValidName(e.QualifiedName))
                {
                    throw new FormatException($"{path}: endpoint '{e.QualifiedName}': namespace and name must be 1 to 253 characters of A-Z a-z 0-9 - . _ to be stored");
                }
                if (!seen.TryAdd(e.QualifiedName, path))
                {
                    throw new FormatException($"{path}: endpoint {e.QualifiedName} is also in {seen[e.QualifiedName]}");
                }
                records.Add(new BandwidthRecord(e.QualifiedName,
                    e.Annotations.GetValueOrDefault(BandwidthAnnotations.Egress), e.Annotations.GetValueOrDefault(BandwidthAnnotations.Ingress)));
            }
        }
        return records;
    }

    /// <summary>The limits a record asks for, checked strictly; <see cref="FormatException"/> naming
    /// the annotation and the reason otherwise.</summary>
    public static BandwidthLimits Check(BandwidthRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var limits = Read(record, out var problems);
        if (problems.Count > 0)
        {
            throw new FormatException(problems[0]);
        }
        if (!IsValidName(record.Name))
        {
            throw new FormatException($"'{record.Name}' is not NAMESPACE/NAME");
        }
        return limits;
    }

    /// <summary>The limits a record asks for; a value that is not a rate is left out (0) and
    /// described in <paramref name="problems"/>.</summary>
    public static BandwidthLimits Read(BandwidthRecord record, out IReadOnlyList<string> problems)
    {
        ArgumentNullException.ThrowIfNull(record);
        var found = new List<string>();
        long egress = Rate(BandwidthAnnotations.Egress, record.Egress, found);
        long ingress = Rate(BandwidthAnnotations.Ingress, record.Ingress, found);
        problems = found;
        return new BandwidthLimits(egress, ingress);
    }

    /// <summary>The limits of <paramref name="records"/> by pod name, judged per annotation as
    /// <see cref="Read"/> does: each value that is not a rate is handed to <paramref name="problem"/>
    /// (the record and the description) and left out; a pod with no valid rate is absent.</summary>
    public static Dictionary<string, BandwidthLimits> Limits(IEnumerable<BandwidthRecord> records, Action<BandwidthRecord, string> problem)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(problem);
        var limits = new Dictionary<string, BandwidthLimits>(StringComparer.Ordinal);
        foreach (var record in records)
        {
            var read = Read(record, out var problems);
            if (problems.Count > 0)
            {
                problem(record, string.Join("; ", problems) + "; the annotation is ignored");
            }
            if (read.Any)
            {
                limits[record.Name] = read;
            }
        }
        return limits;
    }

    private static long Rate(string annotation, string? text, List<string> problems)
    {
        if (text is null)
        {
            return 0;
        }
        if (BandwidthAnnotations.TryParseRate(text, out long rate, out string? problem))
        {
            return rate;
        }
        problems.Add($"{annotation}: {problem}");
        return 0;
    }

    public static string Encode(BandwidthRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
        if (record.Egress is not null)
        {
            annotations[BandwidthAnnotations.Egress] = record.Egress;
        }
        if (record.Ingress is not null)
        {
            annotations[BandwidthAnnotations.Ingress] = record.Ingress;
        }
        return JsonSerializer.Serialize(new BandwidthJson { Name = record.Name, Annotations = annotations }, Json);
    }

    /// <summary>Decodes a stored value (its annotation values are not judged here, see
    /// <see cref="Read"/>); <see cref="FormatException"/> with the reason when it is not a record.
    /// Annotations other than the two bandwidth ones are accepted and ignored, as on a pod.</summary>
    public static BandwidthRecord Decode(ReadOnlySpan<byte> utf8)
    {
        BandwidthJson? dto;
        try
        {
            dto = JsonSerializer.Deserialize<BandwidthJson>(utf8, Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"not a bandwidth record: {e.Message}");
        }
        if (dto?.Name is null || dto.Annotations is null)
        {
            throw new FormatException("not a bandwidth record: name or annotations is missing");
        }
        if (!IsValidName(dto.Name))
        {
            throw new FormatException($"not a bandwidth record: '{dto.Name}' is not NAMESPACE/NAME");
        }
        return new BandwidthRecord(dto.Name, dto.Annotations.GetValueOrDefault(BandwidthAnnotations.Egress), dto.Annotations.GetValueOrDefault(BandwidthAnnotations.Ingress));
    }

    /// <summary>Namespace/name of a pod: both DNS-label-like, so they cannot break a key apart.</summary>
    public static bool IsValidName(string name) => ServiceRecords.IsValidName(name);

    private sealed class BandwidthJson
    {
        public string? Name { get; set; }
        public Dictionary<string, string>? Annotations { get; set; }
    }
}
