using Gateway.Policy;
using YamlDotNet.RepresentationModel;

namespace Gateway.Cluster;

/// <summary>
/// Turns policy files into <see cref="PolicyRecord"/>s, one per YAML document, for storing in
/// etcd. A file is accepted only if Gateway.Policy's loader accepts all of it and the result
/// compiles (against an empty endpoint set, the state of a node before any pod): what a node
/// would refuse is refused here, before anything is stored.
/// </summary>
public static class PolicyRecords
{
    /// <summary>Loads files or folders (as <see cref="PolicyLoader.Load"/> does). Throws
    /// <see cref="PolicyLoadException"/> with the loader's message, <see cref="FileNotFoundException"/>
    /// for a missing path, and <see cref="ArgumentException"/> if two documents name the same policy.</summary>
    public static IReadOnlyList<PolicyRecord> Load(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var records = new List<PolicyRecord>();
        var docs = new List<PolicyDocument>();
        var files = new List<string>();
        foreach (string path in paths)
        {
            var set = PolicyLoader.Load(path);
            docs.AddRange(set.Documents);
            files.AddRange(set.Files);
            foreach (string file in set.Files)
            {
                records.AddRange(Split(File.ReadAllText(file), file));
            }
        }
        try
        {
            PolicyCompiler.Compile(new PolicySet(docs, files), new EndpointTable(new IdentityAllocator()));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new PolicyLoadException(string.Join(", ", files), 0, "", 0, $"does not compile: {e.Message}");
        }
        var duplicate = records.GroupBy(r => r.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"policy {duplicate.Key} is defined more than once");
        }
        return records;
    }

    /// <summary>Each policy document of one YAML text as its own record (empty documents skipped).</summary>
    public static IReadOnlyList<PolicyRecord> Split(string text, string file)
    {
        var parsed = PolicyLoader.Parse(text, file);
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        var result = new List<PolicyRecord>(parsed.Count);
        foreach (var doc in parsed)
        {
            var writer = new StringWriter();
            new YamlStream(stream.Documents[doc.Document - 1]).Save(writer, assignAnchors: false);
            string yaml = writer.ToString();
            if (yaml.EndsWith("...\n", StringComparison.Ordinal))
            {
                yaml = yaml[..^4];
            }
            var record = new PolicyRecord(PolicyRecord.NameOf(doc), yaml);
            try
            {
                RecordCodec.CheckPolicy(record);
            }
            catch (FormatException e)
            {
                throw new PolicyLoadException(file, doc.Document, "", 0, $"cannot be stored on its own: {e.Message}");
            }
            result.Add(record);
        }
        return result;
    }
}
