using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Gateway.Policy;

/// <summary>
/// A document the user wrote was wrong. The message names the file, the 1-based document index,
/// the field path (e.g. spec.ingress[0].toPorts[0].ports[0].port) and the line, on one line.
/// </summary>
public sealed class PolicyLoadException : Exception
{
    public PolicyLoadException(string file, int document, string field, int line, string problem)
        : base(Format(file, document, field, line, problem))
    {
        File = file;
        Document = document;
        Field = field;
        Line = line;
        Problem = problem;
    }

    public string File { get; }
    /// <summary>1-based index of the YAML document in its file (0 if the file itself is unreadable).</summary>
    public int Document { get; }
    public string Field { get; }
    public int Line { get; }
    public string Problem { get; }

    private static string Format(string file, int document, string field, int line, string problem)
    {
        var sb = new System.Text.StringBuilder(file);
        if (document > 0)
        {
            sb.Append(": document ").Append(document);
        }
        if (field.Length > 0)
        {
            sb.Append(": ").Append(field);
        }
        if (line > 0)
        {
            sb.Append(" (line ").Append(line).Append(')');
        }
        return sb.Append(": ").Append(problem).ToString();
    }
}

/// <summary>
/// A position in a YAML document being read: the node (null if absent), its field path and the
/// file/document it came from, so every complaint can say exactly where it is.
/// </summary>
internal readonly struct YNode
{
    private readonly YamlNode? _node;
    private readonly YamlNode? _parentForLine;

    public YNode(YamlNode? node, string path, string file, int document, YamlNode? parentForLine = null)
    {
        _node = node;
        Path = path;
        File = file;
        Document = document;
        _parentForLine = parentForLine;
    }

    public string Path { get; }
    public string File { get; }
    public int Document { get; }

    /// <summary>Absent, or an explicit YAML null (`key:` / `~` / `null`).</summary>
    public bool IsNull => _node is null || (_node is YamlScalarNode s && s.Style == ScalarStyle.Plain && s.Value is null or "" or "~" or "null" or "Null" or "NULL");

    public bool Exists => _node is not null;

    public int Line => (int)((_node ?? _parentForLine)?.Start.Line ?? 0);

    public PolicyLoadException Error(string problem) => new(File, Document, Path, Line, problem);

    private YNode At(YamlNode? node, string path) => new(node, path, File, Document, _node);

    public bool IsMapping => _node is YamlMappingNode;

    public YamlMappingNode Mapping =>
        _node as YamlMappingNode ?? throw Error($"expected a mapping, found {Describe()}");

    /// <summary>The child under <paramref name="key"/> (absent if missing).</summary>
    public YNode this[string key]
    {
        get
        {
            var m = Mapping;
            m.Children.TryGetValue(new YamlScalarNode(key), out var child);
            return At(child, Path.Length == 0 ? key : $"{Path}.{key}");
        }
    }

    /// <summary>Rejects keys outside <paramref name="allowed"/>; <paramref name="unsupported"/> get a clearer message.</summary>
    public void CheckKeys(IReadOnlyCollection<string> allowed, IReadOnlyDictionary<string, string>? unsupported = null)
    {
        foreach (var (k, _) in Mapping.Children)
        {
            string name = (k as YamlScalarNode)?.Value ?? "";
            if (allowed.Contains(name))
            {
                continue;
            }
            var at = At(k, Path.Length == 0 ? name : $"{Path}.{name}");
            if (unsupported is not null && unsupported.TryGetValue(name, out var why))
            {
                throw at.Error(why);
            }
            throw at.Error($"unknown field '{name}' (expected one of: {string.Join(", ", allowed)})");
        }
    }

    public IEnumerable<(string Key, YNode Value)> Entries()
    {
        foreach (var (k, v) in Mapping.Children)
        {
            string name = (k as YamlScalarNode)?.Value ?? throw At(k, Path).Error("mapping keys must be plain strings");
            yield return (name, At(v, Path.Length == 0 ? name : $"{Path}.{name}"));
        }
    }

    /// <summary>The items of a sequence; absent or null gives none.</summary>
    public IReadOnlyList<YNode> Items()
    {
        if (IsNull)
        {
            return [];
        }
        if (_node is not YamlSequenceNode seq)
        {
            throw Error($"expected a list, found {Describe()}");
        }
        var list = new List<YNode>(seq.Children.Count);
        for (int i = 0; i < seq.Children.Count; i++)
        {
            list.Add(At(seq.Children[i], $"{Path}[{i}]"));
        }
        return list;
    }

    public string String()
    {
        if (_node is YamlScalarNode s && !IsNull)
        {
            return s.Value ?? "";
        }
        throw Error(_node is null ? "is required" : $"expected a string, found {Describe()}");
    }

    public string? OptionalString() => IsNull ? null : String();

    /// <summary>An integer written as a number or a quoted number ("80").</summary>
    public long Integer(long min, long max)
    {
        string text = String().Trim();
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v))
        {
            throw Error($"'{text}' is not a number");
        }
        if (v < min || v > max)
        {
            throw Error($"{v} is out of range {min}..{max}");
        }
        return v;
    }

    public bool Boolean()
    {
        string text = String().Trim();
        return text switch
        {
            "true" or "True" or "TRUE" => true,
            "false" or "False" or "FALSE" => false,
            _ => throw Error($"'{text}' is not true or false"),
        };
    }

    private string Describe() => _node switch
    {
        null => "nothing",
        YamlMappingNode => "a mapping",
        YamlSequenceNode => "a list",
        YamlScalarNode s => $"'{s.Value}'",
        _ => "an alias",
    };

    /// <summary>Largest policy or endpoints file read (a cluster's worth of policies is far smaller).</summary>
    public const int MaxTextLength = 16 << 20;

    /// <summary>Reads a policy or endpoints file, refusing one larger than <see cref="MaxTextLength"/>
    /// before reading it (a mistaken path to a huge file must not fill memory).</summary>
    public static string ReadFile(string path)
    {
        long length = new FileInfo(path).Length;
        if (length > MaxTextLength)
        {
            throw new PolicyLoadException(path, 0, "", 0,
                $"the file is larger than {MaxTextLength / (1 << 20)} MiB; policy and endpoint files are far smaller");
        }
        return System.IO.File.ReadAllText(path);
    }

    /// <summary>Deepest nesting of mappings and lists accepted (real policies nest under 15 deep).
    /// The representation model recurses per level, so an unbounded depth would end the process
    /// with a stack overflow that no handler can catch.</summary>
    public const int MaxDepth = 64;

    /// <summary>
    /// Walks the parser's events (iteratively, before anything recursive sees the text) and
    /// refuses nesting deeper than <see cref="MaxDepth"/> and aliases: an alias is a reference,
    /// and a few nested ones ("billion laughs") make a reader that follows them walk an
    /// exponential number of nodes. Policies and endpoint files have no use for either.
    /// </summary>
    private static void CheckShape(string text, string file)
    {
        var parser = new Parser(new StringReader(text));
        int depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                    if (++depth > MaxDepth)
                    {
                        throw new PolicyLoadException(file, 0, "", (int)parser.Current.Start.Line,
                            $"nesting deeper than {MaxDepth} levels");
                    }
                    break;
                case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                    depth--;
                    break;
                case YamlDotNet.Core.Events.AnchorAlias alias:
                    throw new PolicyLoadException(file, 0, "", (int)alias.Start.Line,
                        $"YAML aliases (*{alias.Value}) are not supported in policy and endpoint files");
            }
        }
    }

    /// <summary>
    /// Loads every document of a YAML text. A syntax error is reported with the document it falls
    /// in (counted from the "---" separators before its line).
    /// </summary>
    public static IReadOnlyList<YamlDocument> LoadDocuments(string text, string file)
    {
        if (text.Length > MaxTextLength)
        {
            throw new PolicyLoadException(file, 0, "", 0,
                $"the file is larger than {MaxTextLength / (1 << 20)} MiB; policy and endpoint files are far smaller");
        }
        var stream = new YamlStream();
        try
        {
            CheckShape(text, file);
            stream.Load(new StringReader(text));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // YamlDotNet's representation model refuses some event sequences its parser accepts
            // (found by fuzzing): still the user's syntax, never a stack trace.
            throw new PolicyLoadException(file, 0, "", 0, "YAML syntax error: " + e.Message.ReplaceLineEndings(" "));
        }
        catch (YamlException e)
        {
            int line = (int)e.Start.Line;
            int doc = 1;
            using var reader = new StringReader(text);
            bool content = false;
            for (int n = 1; n < line && reader.ReadLine() is { } l; n++)
            {
                if (l.StartsWith("---", StringComparison.Ordinal))
                {
                    if (content)
                    {
                        doc++;
                    }
                    content = false;
                }
                else if (l.Trim().Length > 0 && !l.TrimStart().StartsWith('#'))
                {
                    content = true;
                }
            }
            string msg = e.InnerException?.Message ?? e.Message;
            // YamlDotNet prefixes messages with "(Line: .., Col: ..)"; we print the line ourselves.
            int close = msg.IndexOf("): ", StringComparison.Ordinal);
            if (msg.StartsWith("(Line", StringComparison.Ordinal) && close > 0)
            {
                msg = msg[(close + 3)..];
            }
            throw new PolicyLoadException(file, doc, "", line, "YAML syntax error: " + msg.ReplaceLineEndings(" "));
        }
        return stream.Documents.ToArray();
    }
}
