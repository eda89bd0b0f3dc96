using System.Collections.Immutable;
using System.Globalization;
using Gateway.Datapath;
using Google.Protobuf;

namespace Gateway.Cluster;

/// <summary>
/// The decoded contents of the watched prefixes, fed one key at a time (from a list or a watch
/// event). It keeps each key's raw value, so a put of the same bytes (a re-put after a lost
/// lease, a re-list after an outage) changes nothing and a bad value is decoded, and logged,
/// once. A value that does not decode counts as absent. Not thread-safe: one writer (the
/// client's watch loop) at a time.
/// </summary>
internal sealed class ClusterState
{
    private readonly KvKeys _keys;
    private readonly Action<string> _log;
    private readonly Dictionary<string, ByteString> _raw = new(StringComparer.Ordinal);
    private readonly ImmutableDictionary<string, NodeRecord>.Builder _nodes = ImmutableDictionary.CreateBuilder<string, NodeRecord>(StringComparer.Ordinal);
    private readonly ImmutableDictionary<string, IpCacheEntry>.Builder _ip = ImmutableDictionary.CreateBuilder<string, IpCacheEntry>(StringComparer.Ordinal);
    private readonly ImmutableDictionary<uint, string>.Builder _ids = ImmutableDictionary.CreateBuilder<uint, string>();
    private readonly ImmutableDictionary<string, PolicyRecord>.Builder _policies = ImmutableDictionary.CreateBuilder<string, PolicyRecord>(StringComparer.Ordinal);

    private HashSet<string>? _listed;
    private bool _dirty;

    public ClusterState(KvKeys keys, Action<string> log)
    {
        _keys = keys;
        _log = log;
    }

    /// <summary>The key prefixes this state is built from, in list order.</summary>
    public IReadOnlyList<string> Prefixes => [_keys.NodePrefix, _keys.IpPrefix, KvKeys.IdentityIdPrefix, _keys.PolicyPrefix];

    public int KeyCount => _raw.Count;

    public IEnumerable<string> Keys => _raw.Keys;

    /// <summary>Applies a put (<paramref name="value"/> non-null) or a delete; true if the decoded view changed.</summary>
    public bool Apply(string key, ByteString? value)
    {
        bool changed = ApplyCore(key, value);
        _dirty |= changed;
        return changed;
    }

    /// <summary>Starts applying a full list page by page (<see cref="ApplyListedPage"/>); keys the list
    /// does not hold are deleted by <see cref="EndList"/>. A list abandoned half way (an error)
    /// leaves the state dirty, so the next <see cref="Build(long, out bool)"/> still reports the change.</summary>
    public void BeginList() => _listed = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Applies one page of a full list. The values are decoded on every core first
    /// (decoding reads nothing the page changes), then applied in list order, so the result is
    /// the same as applying the keys one by one.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void ApplyListedPage(IReadOnlyList<Mvccpb.KeyValue> page)
    {
        var listed = _listed ?? throw new InvalidOperationException("BeginList first");
        int n = page.Count;
        var keys = new string[n];
        var decoded = new Decoded[n];
        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
        {
            var kv = page[i];
            string key = kv.Key.ToStringUtf8();
            keys[i] = key;
            if (_raw.TryGetValue(key, out var old) && old.Span.SequenceEqual(kv.Value.Span))
            {
                return; // unchanged: nothing to decode or apply
            }
            try
            {
                decoded[i] = new Decoded(Parse(key, kv.Value), null);
            }
            catch (FormatException e)
            {
                decoded[i] = new Decoded(default, e.Message);
            }
        });
        for (int i = 0; i < n; i++)
        {
            listed.Add(keys[i]);
            var d = decoded[i];
            if (d.Parsed.Kind == RecordKind.None && d.Error is null)
            {
                continue;
            }
            _raw[keys[i]] = page[i].Value;
            _dirty |= d.Error is null ? Store(d.Parsed) : Rejected(keys[i], d.Error);
        }
    }

    private readonly record struct Decoded(Parsed Parsed, string? Error);

    public void EndList()
    {
        var listed = _listed ?? throw new InvalidOperationException("BeginList first");
        foreach (var key in _raw.Keys.Where(k => !listed.Contains(k)).ToList())
        {
            Apply(key, null);
        }
        _listed = null;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private bool ApplyCore(string key, ByteString? value)
    {
        if (value is null)
        {
            return _raw.Remove(key) && Remove(key);
        }
        if (_raw.TryGetValue(key, out var old) && old.Span.SequenceEqual(value.Span))
        {
            return false;
        }
        _raw[key] = value;
        Parsed parsed;
        try
        {
            parsed = Parse(key, value);
        }
        catch (FormatException e)
        {
            return Rejected(key, e.Message);
        }
        return Store(parsed);
    }

    private bool Rejected(string key, string reason)
    {
        _log($"kvstore: ignoring {key}: {reason}");
        return Remove(key);
    }

    /// <summary>Makes the state equal to a full list; true if the decoded view changed.</summary>
    public bool Replace(IReadOnlyDictionary<string, ByteString> all)
    {
        BeginList();
        ApplyListedPage(all.Select(kv => new Mvccpb.KeyValue { Key = ByteString.CopyFromUtf8(kv.Key), Value = kv.Value }).ToList());
        EndList();
        return _dirty;
    }

    /// <summary>The snapshot of the current state; <paramref name="changed"/> says whether anything
    /// changed since the previous Build.</summary>
    public ClusterSnapshot Build(long revision, out bool changed)
    {
        changed = _dirty;
        _dirty = false;
        return new(revision, _nodes.ToImmutable(), _ip.ToImmutable(), _ids.ToImmutable(), _policies.ToImmutable());
    }

    public ClusterSnapshot Build(long revision) => Build(revision, out _);

    /// <summary>Decodes one key's value without touching the state (safe on several threads at once).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private Parsed Parse(string key, ByteString value)
    {
        if (key.StartsWith(_keys.NodePrefix, StringComparison.Ordinal))
        {
            string name = key[_keys.NodePrefix.Length..];
            if (!KvKeys.IsValidName(name))
            {
                throw new FormatException("not a valid node key");
            }
            var node = RecordCodec.DecodeNode(value.Span);
            if (node.Name != name)
            {
                throw new FormatException($"record names node '{node.Name}', not the key's '{name}'");
            }
            if (node.Cluster != _keys.Cluster)
            {
                throw new FormatException($"record names cluster '{node.Cluster}', not '{_keys.Cluster}'");
            }
            return new Parsed(RecordKind.Node, name, 0, node);
        }
        if (key.StartsWith(_keys.IpPrefix, StringComparison.Ordinal))
        {
            string ip = key[_keys.IpPrefix.Length..];
            var entry = RecordCodec.DecodeEntry(value.Span, out var prefix);
            // The key names the address alone for a host entry ("10.0.1.5"), else the prefix: the
            // decoded entry's text ("10.0.1.5/32") without its length, compared in place.
            bool host = prefix.Length == prefix.Address.BitLength;
            if (!(host ? entry.Prefix.AsSpan(0, entry.Prefix.LastIndexOf('/')) : entry.Prefix.AsSpan()).SequenceEqual(ip))
            {
                throw new FormatException($"entry is for {entry.Prefix}, whose key is {_keys.Ip(RecordCodec.IpKeyOf(prefix))}");
            }
            return new Parsed(RecordKind.Ip, entry.Prefix, 0, entry);
        }
        if (key.StartsWith(KvKeys.IdentityIdPrefix, StringComparison.Ordinal))
        {
            uint id = RecordCodec.DecodeIdentityNumber(key[KvKeys.IdentityIdPrefix.Length..]);
            string labels = IdentityAllocation.CheckStored(value.ToStringUtf8());
            return new Parsed(RecordKind.Identity, null, id, labels);
        }
        if (key.StartsWith(_keys.PolicyPrefix, StringComparison.Ordinal))
        {
            string name = key[_keys.PolicyPrefix.Length..];
            var policy = RecordCodec.DecodePolicy(value.Span);
            if (policy.Name != name)
            {
                throw new FormatException($"record is policy '{policy.Name}', not the key's '{name}'");
            }
            return new Parsed(RecordKind.Policy, name, 0, policy);
        }
        throw new FormatException("key outside the watched prefixes");
    }

    private enum RecordKind : byte
    {
        None,
        Node,
        Ip,
        Identity,
        Policy,
    }

    /// <summary>A decoded value and where it goes: <see cref="Name"/> keys nodes, ipcache entries
    /// and policies, <see cref="Id"/> identities.</summary>
    private readonly record struct Parsed(RecordKind Kind, string? Name, uint Id, object? Value);

    private bool Store(in Parsed p) => p.Kind switch
    {
        RecordKind.Node => Set(_nodes, p.Name!, (NodeRecord)p.Value!),
        RecordKind.Ip => Set(_ip, p.Name!, (IpCacheEntry)p.Value!),
        RecordKind.Identity => Set(_ids, p.Id, (string)p.Value!),
        RecordKind.Policy => Set(_policies, p.Name!, (PolicyRecord)p.Value!),
        _ => throw new InvalidOperationException("nothing decoded"),
    };

    private static bool Set<TKey, TValue>(ImmutableDictionary<TKey, TValue>.Builder map, TKey key, TValue value) where TKey : notnull
    {
        if (map.TryGetValue(key, out var old) && EqualityComparer<TValue>.Default.Equals(old, value))
        {
            return false;
        }
        map[key] = value;
        return true;
    }

    private bool Remove(string key)
    {
        if (key.StartsWith(_keys.NodePrefix, StringComparison.Ordinal))
        {
            return _nodes.Remove(key[_keys.NodePrefix.Length..]);
        }
        if (key.StartsWith(_keys.IpPrefix, StringComparison.Ordinal))
        {
            string ip = key[_keys.IpPrefix.Length..];
            return IpPrefix.TryParse(ip, out var p) && RecordCodec.IpKeyOf(p) == ip && _ip.Remove(p.ToString());
        }
        if (key.StartsWith(KvKeys.IdentityIdPrefix, StringComparison.Ordinal))
        {
            string text = key[KvKeys.IdentityIdPrefix.Length..];
            return uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) &&
                id.ToString(CultureInfo.InvariantCulture) == text && _ids.Remove(id);
        }
        if (key.StartsWith(_keys.PolicyPrefix, StringComparison.Ordinal))
        {
            return _policies.Remove(key[_keys.PolicyPrefix.Length..]);
        }
        return false;
    }
}
