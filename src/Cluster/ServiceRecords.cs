using System.Text.Json;
using Gateway.LoadBalancer;
using YamlDotNet.RepresentationModel;

namespace Gateway.Cluster;

/// <summary>
/// One Kubernetes Service stored cluster-wide under
/// <c>gateway/state/services/v1/&lt;cluster&gt;/&lt;namespace&gt;/&lt;name&gt;</c> (see docs/cluster.md):
/// <see cref="Name"/> is <c>namespace/name</c> and <see cref="Yaml"/> the single Service document.
/// </summary>
public sealed record ServiceRecord(string Name, string Yaml);

/// <summary>
/// Service files to records (one per YAML document, for `gateway service apply --kvstore`) and
/// records to and from the JSON stored in etcd. A record is accepted only if Gateway.LoadBalancer's
/// loader accepts its YAML as exactly one Service of that name: what a node would refuse is
/// refused before anything is stored, and a malformed value found in the store is reported (the
/// node keeps its previous service table).
/// </summary>
public static class ServiceRecords
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Loads files or folders as <see cref="ServiceLoader.Load"/> does (all or nothing; names
    /// and VIP:ports unique). Throws <see cref="ServiceLoadException"/>.</summary>
    public static IReadOnlyList<ServiceRecord> Load(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var records = new List<ServiceRecord>();
        var all = new List<ServiceDefinition>();
        foreach (string path in paths)
        {
            var services = ServiceLoader.Load(path);
            all.AddRange(services);
            foreach (string file in services.Select(s => s.File).Distinct(StringComparer.Ordinal))
            {
                records.AddRange(Split(File.ReadAllText(file), file));
            }
        }
        ServiceLoader.CheckUnique(all);
        return records;
    }

    /// <summary>Each Service document of one YAML text as its own record (empty documents skipped).</summary>
    public static IReadOnlyList<ServiceRecord> Split(string text, string file)
    {
        var parsed = ServiceLoader.Parse(text, file);
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        var documents = stream.Documents.Where(d => d.RootNode is not YamlScalarNode { Value: null or "" }).ToList();
        var result = new List<ServiceRecord>(parsed.Count);
        for (int i = 0; i < parsed.Count && i < documents.Count; i++)
        {
            var writer = new StringWriter();
            new YamlStream(documents[i]).Save(writer, assignAnchors: false);
            string yaml = writer.ToString();
            if (yaml.EndsWith("...\n", StringComparison.Ordinal))
            {
                yaml = yaml[..^4];
            }
            var record = new ServiceRecord(parsed[i].QualifiedName, yaml);
            try
            {
                Check(record);
            }
            catch (FormatException e)
            {
                throw new ServiceLoadException(file, parsed[i].Line, $"{file} (line {parsed[i].Line}): cannot be stored on its own: {e.Message}");
            }
            result.Add(record);
        }
        return result;
    }

    /// <summary>The record's one Service; <see cref="FormatException"/> if the YAML does not load as
    /// exactly one Service named <see cref="ServiceRecord.Name"/>.</summary>
    public static ServiceDefinition Check(ServiceRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        IReadOnlyList<ServiceDefinition> services;
        try
        {
            services = ServiceLoader.Parse(record.Yaml, record.Name);
        }
        catch (ServiceLoadException e)
        {
            throw new FormatException(e.Message);
        }
        if (services.Count != 1)
        {
            throw new FormatException($"service record {record.Name} holds {services.Count} Service documents, expected 1");
        }
        if (services[0].QualifiedName != record.Name)
        {
            throw new FormatException($"service record '{record.Name}' holds service {services[0].QualifiedName}");
        }
        return services[0];
    }

    public static string Encode(ServiceRecord record) => JsonSerializer.Serialize(new ServiceJson { Name = record.Name, Yaml = record.Yaml }, Json);

    /// <summary>Decodes and checks a stored value; <see cref="FormatException"/> with the reason.</summary>
    public static ServiceRecord Decode(ReadOnlySpan<byte> utf8)
    {
        ServiceJson? dto;
        try
        {
            dto = JsonSerializer.Deserialize<ServiceJson>(utf8, Json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"not a service record: {e.Message}");
        }
        if (dto?.Name is null || dto.Yaml is null)
        {
            throw new FormatException("not a service record: name or yaml is missing");
        }
        var record = new ServiceRecord(dto.Name, dto.Yaml);
        Check(record);
        return record;
    }

    /// <summary>Namespace/name of a service: both DNS labels (what Kubernetes allows), so they cannot break a key apart.</summary>
    public static bool IsValidName(string name)
    {
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 && slash < name.Length - 1 && name.IndexOf('/', slash + 1) < 0 &&
               KvKeys.IsValidName(name[..slash]) && KvKeys.IsValidName(name[(slash + 1)..]);
    }

    private sealed class ServiceJson
    {
        public string? Name { get; set; }
        public string? Yaml { get; set; }
    }
}
