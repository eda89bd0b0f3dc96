using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Gateway.Datapath;

namespace Gateway.Cluster;

/// <summary>
/// JSON of the records in etcd. Field names are Cilium's where Cilium has the field
/// (pkg/node/types Node, pkg/identity IPIdentityPair; a cidr.CIDR is Go's {"IP","Mask"} with the
/// mask in base64, as encoding/json writes a net.IPMask), plus <c>WireguardPort</c> on nodes and
/// <c>NodeName</c> on ipcache entries. Decoding is strict: unknown fields, wrong types, bad
/// addresses or keys are a <see cref="FormatException"/> with a one-line reason; the watch loop
/// logs it once and treats the key as absent.
/// </summary>
internal static class RecordCodec
{
    private static readonly JsonSerializerOptions Json = new()
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.Strict,
        MaxDepth = 16,
    };

    public const string InternalIp = "InternalIP";
    public const string CiliumInternalIp = "CiliumInternalIP";

    // ---- nodes ----

    public static string EncodeNode(NodeRecord node)
    {
        var dto = new NodeJson
        {
            Name = node.Name,
            Cluster = node.Cluster,
            IPAddresses = [new AddressJson { Type = InternalIp, IP = node.Address }, new AddressJson { Type = CiliumInternalIp, IP = node.TunnelAddress }],
            WireguardPubKey = node.WireGuardPublicKey,
            WireguardPort = node.Port,
            BootID = node.BootId,
        };
        foreach (bool v6 in new[] { false, true })
        {
            var cidrs = node.PodCidrs.Select(IpPrefix.Parse).Where(p => p.Address.IsV6 == v6).Select(ToCidrJson).ToList();
            if (cidrs.Count == 0)
            {
                continue;
            }
            if (v6)
            {
                dto.IPv6AllocCIDR = cidrs[0];
                dto.IPv6SecondaryAllocCIDRs = cidrs.Count > 1 ? cidrs.Skip(1).ToList() : null;
            }
            else
            {
                dto.IPv4AllocCIDR = cidrs[0];
                dto.IPv4SecondaryAllocCIDRs = cidrs.Count > 1 ? cidrs.Skip(1).ToList() : null;
            }
        }
        return JsonSerializer.Serialize(dto, Json);
    }

    /// <summary>Checks a record before it is published; throws <see cref="ArgumentException"/>.</summary>
    public static void ValidateNode(NodeRecord node)
    {
        ArgumentNullException.ThrowIfNull(node);
        try
        {
            CheckNode(node);
        }
        catch (FormatException e)
        {
            throw new ArgumentException($"node record: {e.Message}", nameof(node));
        }
    }

    public static NodeRecord DecodeNode(string json) => DecodeNode(System.Text.Encoding.UTF8.GetBytes(json));

    /// <summary>Decodes with a <see cref="Utf8JsonReader"/> straight from etcd's bytes: strict
    /// (unknown fields and wrong types rejected) and several times faster than reflection, which
    /// matters when a new node decodes 5,000 of these at start.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static NodeRecord DecodeNode(ReadOnlySpan<byte> utf8)
    {
        string? name = null, cluster = null, key = null, boot = null, address = null, tunnel = null;
        int? port = null;
        var cidrs = new List<string>(2);
        var r = Reader(utf8);
        ExpectStartObject(ref r);
        while (NextProperty(ref r))
        {
            if (r.ValueTextEquals("Name"u8)) { name = ReadString(ref r, "Name"); }
            else if (r.ValueTextEquals("Cluster"u8)) { cluster = ReadString(ref r, "Cluster"); }
            else if (r.ValueTextEquals("WireguardPubKey"u8)) { key = ReadString(ref r, "WireguardPubKey"); }
            else if (r.ValueTextEquals("BootID"u8)) { boot = ReadString(ref r, "BootID"); }
            else if (r.ValueTextEquals("WireguardPort"u8)) { port = ReadInt(ref r, "WireguardPort"); }
            else if (r.ValueTextEquals("IPAddresses"u8))
            {
                Read(ref r);
                if (r.TokenType == JsonTokenType.Null)
                {
                    continue;
                }
                Expect(ref r, JsonTokenType.StartArray, "IPAddresses");
                while (Read(ref r) && r.TokenType != JsonTokenType.EndArray)
                {
                    Expect(ref r, JsonTokenType.StartObject, "IPAddresses[]");
                    string? type = null, ip = null;
                    while (NextProperty(ref r))
                    {
                        if (r.ValueTextEquals("Type"u8)) { type = ReadString(ref r, "IPAddresses[].Type"); }
                        else if (r.ValueTextEquals("IP"u8)) { ip = ReadString(ref r, "IPAddresses[].IP"); }
                        else { throw Unknown(ref r, "IPAddresses[]."); }
                    }
                    if (type == InternalIp) { address ??= ip; }
                    else if (type == CiliumInternalIp) { tunnel ??= ip; }
                }
            }
            else if (r.ValueTextEquals("IPv4AllocCIDR"u8) || r.ValueTextEquals("IPv6AllocCIDR"u8))
            {
                Read(ref r);
                if (r.TokenType != JsonTokenType.Null)
                {
                    cidrs.Add(ReadCidr(ref r));
                }
            }
            else if (r.ValueTextEquals("IPv4SecondaryAllocCIDRs"u8) || r.ValueTextEquals("IPv6SecondaryAllocCIDRs"u8))
            {
                Read(ref r);
                if (r.TokenType == JsonTokenType.Null)
                {
                    continue;
                }
                Expect(ref r, JsonTokenType.StartArray, "SecondaryAllocCIDRs");
                while (Read(ref r) && r.TokenType != JsonTokenType.EndArray)
                {
                    cidrs.Add(ReadCidr(ref r));
                }
            }
            else if (IsIgnoredCiliumNodeField(ref r))
            {
                Read(ref r);
                r.Skip();
            }
            else
            {
                throw Unknown(ref r, "");
            }
        }
        // IPv4 before IPv6, each primary first: the order EncodeNode writes.
        cidrs.Sort((a, b) => a.Contains(':').CompareTo(b.Contains(':')));
        var node = new NodeRecord
        {
            Name = name ?? throw new FormatException("Name is missing"),
            Cluster = cluster ?? throw new FormatException("Cluster is missing"),
            WireGuardPublicKey = key ?? throw new FormatException("WireguardPubKey is missing"),
            Address = address ?? throw new FormatException("no IPAddresses entry of Type InternalIP"),
            TunnelAddress = tunnel ?? throw new FormatException("no IPAddresses entry of Type CiliumInternalIP"),
            Port = port ?? throw new FormatException("WireguardPort is missing"),
            PodCidrs = cidrs,
            BootId = boot ?? "",
        };
        CheckNode(node);
        return node;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool IsIgnoredCiliumNodeField(ref Utf8JsonReader r) =>
        r.ValueTextEquals("IPv4HealthIP"u8) || r.ValueTextEquals("IPv6HealthIP"u8) || r.ValueTextEquals("IPv4IngressIP"u8) ||
        r.ValueTextEquals("IPv6IngressIP"u8) || r.ValueTextEquals("ClusterID"u8) || r.ValueTextEquals("Source"u8) ||
        r.ValueTextEquals("EncryptionKey"u8) || r.ValueTextEquals("Labels"u8) || r.ValueTextEquals("Annotations"u8) ||
        r.ValueTextEquals("NodeIdentity"u8);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static string ReadCidr(ref Utf8JsonReader r)
    {
        Expect(ref r, JsonTokenType.StartObject, "CIDR");
        string? ip = null, mask = null;
        while (NextProperty(ref r))
        {
            if (r.ValueTextEquals("IP"u8)) { ip = ReadString(ref r, "CIDR.IP"); }
            else if (r.ValueTextEquals("Mask"u8)) { mask = ReadString(ref r, "CIDR.Mask"); }
            else { throw Unknown(ref r, "CIDR."); }
        }
        return FromCidrJson(new CidrJson { IP = ip, Mask = mask }).ToString();
    }

    // ---- Utf8JsonReader helpers: every failure is a FormatException with a short reason ----

    private static Utf8JsonReader Reader(ReadOnlySpan<byte> utf8) =>
        new(utf8, new JsonReaderOptions { MaxDepth = 16, CommentHandling = JsonCommentHandling.Disallow });

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool Read(ref Utf8JsonReader r)
    {
        try
        {
            if (!r.Read())
            {
                throw new FormatException("bad JSON: unexpected end");
            }
            return true;
        }
        catch (JsonException e)
        {
            throw new FormatException($"bad JSON: {e.Message.Split(" LineNumber")[0].TrimEnd(' ', '.')}");
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void ExpectStartObject(ref Utf8JsonReader r)
    {
        Read(ref r);
        Expect(ref r, JsonTokenType.StartObject, "value");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Expect(ref Utf8JsonReader r, JsonTokenType type, string what)
    {
        if (r.TokenType != type)
        {
            throw new FormatException($"{what}: expected {type}, found {r.TokenType}");
        }
    }

    /// <summary>Advances to the next property name of the current object; false at its end.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static bool NextProperty(ref Utf8JsonReader r)
    {
        Read(ref r);
        if (r.TokenType == JsonTokenType.EndObject)
        {
            if (r.CurrentDepth == 0)
            {
                // Nothing may follow the top-level object.
                try
                {
                    if (r.Read())
                    {
                        throw new FormatException("bad JSON: data after the object");
                    }
                }
                catch (JsonException e)
                {
                    throw new FormatException($"bad JSON: {e.Message.Split(" LineNumber")[0].TrimEnd(' ', '.')}");
                }
            }
            return false;
        }
        Expect(ref r, JsonTokenType.PropertyName, "object");
        return true;
    }

    private static FormatException Unknown(ref Utf8JsonReader r, string path) => new($"unknown field '{path}{r.GetString()}'");

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static string? ReadString(ref Utf8JsonReader r, string what)
    {
        Read(ref r);
        return r.TokenType switch
        {
            JsonTokenType.String => r.GetString(),
            JsonTokenType.Null => null,
            _ => throw new FormatException($"{what}: expected a string, found {r.TokenType}"),
        };
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static int? ReadInt(ref Utf8JsonReader r, string what)
    {
        Read(ref r);
        if (r.TokenType == JsonTokenType.Null)
        {
            return null;
        }
        if (r.TokenType != JsonTokenType.Number || !r.TryGetInt32(out int v))
        {
            throw new FormatException($"{what}: expected an integer, found {r.TokenType}");
        }
        return v;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static long? ReadLong(ref Utf8JsonReader r, string what)
    {
        Read(ref r);
        if (r.TokenType == JsonTokenType.Null)
        {
            return null;
        }
        if (r.TokenType != JsonTokenType.Number || !r.TryGetInt64(out long v))
        {
            throw new FormatException($"{what}: expected an integer, found {r.TokenType}");
        }
        return v;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void CheckNode(NodeRecord node)
    {
        if (node.Name is null || !KvKeys.IsValidName(node.Name))
        {
            throw new FormatException($"node name '{node.Name}' is not valid");
        }
        if (node.Cluster is null || !KvKeys.IsValidName(node.Cluster))
        {
            throw new FormatException($"cluster name '{node.Cluster}' is not valid");
        }
        Span<byte> key = stackalloc byte[33];
        if (node.WireGuardPublicKey is null || !Convert.TryFromBase64String(node.WireGuardPublicKey, key, out int n) || n != 32)
        {
            throw new FormatException("WireguardPubKey is not base64 of 32 bytes");
        }
        if (node.Address is null || !IpAddress.TryParse(node.Address, out _))
        {
            throw new FormatException($"address '{node.Address}' is not an IP address");
        }
        if (node.TunnelAddress is null || !IpAddress.TryParse(node.TunnelAddress, out _))
        {
            throw new FormatException($"tunnel address '{node.TunnelAddress}' is not an IP address");
        }
        if (node.Port is < 1 or > 65535)
        {
            throw new FormatException($"port {node.Port} is out of range");
        }
        foreach (string cidr in node.PodCidrs ?? throw new FormatException("PodCidrs is null"))
        {
            if (cidr is null || !IpPrefix.TryParse(cidr, out var p) || p.ToString() != cidr.Trim() || !cidr.Contains('/'))
            {
                throw new FormatException($"pod CIDR '{cidr}' is not a prefix with host bits clear (e.g. 10.0.1.0/24)");
            }
        }
        if (node.BootId is null || node.BootId.Length > 128)
        {
            throw new FormatException("BootID is missing or too long");
        }
    }

    private static IEnumerable<CidrJson> Enumerate(CidrJson? a, List<CidrJson>? a2, CidrJson? b, List<CidrJson>? b2)
    {
        if (a is not null)
        {
            yield return a;
        }
        foreach (var c in a2 ?? [])
        {
            yield return c ?? throw new FormatException("null CIDR");
        }
        if (b is not null)
        {
            yield return b;
        }
        foreach (var c in b2 ?? [])
        {
            yield return c ?? throw new FormatException("null CIDR");
        }
    }

    private static CidrJson ToCidrJson(IpPrefix p) => new() { IP = p.Address.ToString(), Mask = Convert.ToBase64String(MaskBytes(p.Length, p.Address.IsV6)) };

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static IpPrefix FromCidrJson(CidrJson c)
    {
        if (c.IP is null || !IpAddress.TryParse(c.IP, out var ip))
        {
            throw new FormatException($"CIDR IP '{c.IP}' is not an address");
        }
        int length = MaskLength(c.Mask, ip.IsV6) ?? throw new FormatException("CIDR Mask is missing");
        var prefix = new IpPrefix(ip, length);
        if (!prefix.Address.Equals(ip))
        {
            throw new FormatException($"CIDR {c.IP}/{length} has host bits set");
        }
        return prefix;
    }

    private static byte[] MaskBytes(int length, bool v6)
    {
        var bytes = new byte[v6 ? 16 : 4];
        for (int i = 0; i < length; i++)
        {
            bytes[i / 8] |= (byte)(0x80 >> (i % 8));
        }
        return bytes;
    }

    /// <summary>Go's net.IPMask JSON (base64) to a prefix length; null for a JSON null mask.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static int? MaskLength(string? base64, bool v6)
    {
        if (base64 is null)
        {
            return null;
        }
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            throw new FormatException("Mask is not base64");
        }
        if (bytes.Length != (v6 ? 16 : 4))
        {
            throw new FormatException($"Mask has {bytes.Length} bytes for an IPv{(v6 ? 6 : 4)} address");
        }
        int length = 0;
        bool zero = false;
        foreach (byte b in bytes)
        {
            for (int bit = 7; bit >= 0; bit--)
            {
                bool one = (b >> bit & 1) != 0;
                if (one && zero)
                {
                    throw new FormatException("Mask is not contiguous");
                }
                if (one)
                {
                    length++;
                }
                else
                {
                    zero = true;
                }
            }
        }
        return length;
    }

    // ---- ipcache ----

    /// <summary>Cilium's IPIdentityPair.PrefixString: "10.0.1.5" for a host prefix, "10.0.9.0/24" otherwise.</summary>
    public static string IpKeyOf(IpPrefix p) => p.Length == p.Address.BitLength ? p.Address.ToString() : p.ToString();

    public static IpPrefix ParseEntryPrefix(string prefix)
    {
        if (prefix is null || !IpPrefix.TryParse(prefix, out var p))
        {
            throw new FormatException($"prefix '{prefix}' is not an address or CIDR");
        }
        if (!IpAddress.TryParse(prefix.Split('/')[0], out var given) || !given.Equals(p.Address))
        {
            throw new FormatException($"prefix '{prefix}' has host bits set");
        }
        return p;
    }

    public static void ValidateEntry(IpCacheEntry e)
    {
        ArgumentNullException.ThrowIfNull(e);
        try
        {
            CheckEntry(e);
        }
        catch (FormatException x)
        {
            throw new ArgumentException($"ipcache entry {e.Prefix}: {x.Message}", nameof(e));
        }
    }

    private static IpPrefix CheckEntry(IpCacheEntry e)
    {
        var p = ParseEntryPrefix(e.Prefix);
        CheckEntryFields(e);
        return p;
    }

    /// <summary>The checks of an entry other than its prefix (which a decoder has just built).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void CheckEntryFields(IpCacheEntry e)
    {
        if (e.HostIp is null || !IpAddress.TryParse(e.HostIp, out _))
        {
            throw new FormatException($"HostIP '{e.HostIp}' is not an IP address");
        }
        if (e.NodeName is null || !KvKeys.IsValidName(e.NodeName))
        {
            throw new FormatException($"NodeName '{e.NodeName}' is not valid");
        }
        if (e.Identity == 0 || e.Identity > IdentityAllocation.MaxIdentity)
        {
            throw new FormatException($"identity {e.Identity} is out of range (1 to {IdentityAllocation.MaxIdentity})");
        }
    }

    public static string EncodeEntry(IpCacheEntry e)
    {
        var p = IpPrefix.Parse(e.Prefix);
        var dto = new IpJson
        {
            IP = p.Address.ToString(),
            Mask = p.Length == p.Address.BitLength ? null : Convert.ToBase64String(MaskBytes(p.Length, p.Address.IsV6)),
            HostIP = e.HostIp,
            ID = e.Identity,
            Key = e.EncryptionKey,
            Metadata = "",
            K8sNamespace = e.Namespace,
            K8sPodName = e.PodName,
            NodeName = e.NodeName,
        };
        return WithNullMask(JsonSerializer.Serialize(dto, Json), dto.Mask);
    }

    // Cilium writes "Mask":null for a host address; keep that field even though other nulls are omitted.
    private static string WithNullMask(string json, string? mask) =>
        mask is null ? json.Insert(json.IndexOf(",\"HostIP\"", StringComparison.Ordinal), ",\"Mask\":null") : json;

    public static IpCacheEntry DecodeEntry(string json) => DecodeEntry(System.Text.Encoding.UTF8.GetBytes(json), out _);

    // Decoders run once per key of a full list (55,000 at the scale target) right after the
    // process starts: optimised at first call rather than run unoptimised until tiering catches up.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static IpCacheEntry DecodeEntry(ReadOnlySpan<byte> utf8, out IpPrefix prefix)
    {
        string? ipText = null, mask = null, host = null, node = null, ns = null, pod = null;
        long? id = null, key = null;
        var r = Reader(utf8);
        ExpectStartObject(ref r);
        while (NextProperty(ref r))
        {
            if (r.ValueTextEquals("IP"u8)) { ipText = ReadString(ref r, "IP"); }
            else if (r.ValueTextEquals("Mask"u8)) { mask = ReadString(ref r, "Mask"); }
            else if (r.ValueTextEquals("HostIP"u8)) { host = ReadString(ref r, "HostIP"); }
            else if (r.ValueTextEquals("ID"u8)) { id = ReadLong(ref r, "ID"); }
            else if (r.ValueTextEquals("Key"u8)) { key = ReadLong(ref r, "Key"); }
            else if (r.ValueTextEquals("NodeName"u8)) { node = ReadString(ref r, "NodeName"); }
            else if (r.ValueTextEquals("K8sNamespace"u8)) { ns = ReadString(ref r, "K8sNamespace"); }
            else if (r.ValueTextEquals("K8sPodName"u8)) { pod = ReadString(ref r, "K8sPodName"); }
            else if (r.ValueTextEquals("Metadata"u8)) { ReadString(ref r, "Metadata"); }
            else if (r.ValueTextEquals("K8sServiceAccount"u8) || r.ValueTextEquals("NamedPorts"u8))
            {
                Read(ref r);
                r.Skip();
            }
            else
            {
                throw Unknown(ref r, "");
            }
        }
        if (ipText is null || !IpAddress.TryParse(ipText, out var ip))
        {
            throw new FormatException($"IP '{ipText}' is not an address");
        }
        int length = MaskLength(mask, ip.IsV6) ?? ip.BitLength;
        prefix = new IpPrefix(ip, length);
        if (!prefix.Address.Equals(ip))
        {
            throw new FormatException($"{ipText}/{length} has host bits set");
        }
        if (id is null or < 0 or > uint.MaxValue)
        {
            throw new FormatException(id is null ? "ID is missing" : $"identity {id} is out of range");
        }
        if (key is < 0 or > byte.MaxValue)
        {
            throw new FormatException($"Key {key} is out of range");
        }
        var entry = new IpCacheEntry
        {
            Prefix = prefix.ToString(),
            Identity = (uint)id,
            HostIp = host ?? throw new FormatException("HostIP is missing"),
            NodeName = node ?? throw new FormatException("NodeName is missing"),
            EncryptionKey = (byte)(key ?? 0),
            Namespace = string.IsNullOrEmpty(ns) ? null : ns,
            PodName = string.IsNullOrEmpty(pod) ? null : pod,
        };
        CheckEntryFields(entry);
        return entry;
    }

    // ---- policies ----

    public static string EncodePolicy(PolicyRecord p) => JsonSerializer.Serialize(new PolicyJson { Name = p.Name, Yaml = p.Yaml }, Json);

    public static PolicyRecord DecodePolicy(string json) => DecodePolicy(System.Text.Encoding.UTF8.GetBytes(json));

    public static PolicyRecord DecodePolicy(ReadOnlySpan<byte> utf8)
    {
        var dto = Deserialize<PolicyJson>(utf8);
        var record = new PolicyRecord(dto.Name ?? throw new FormatException("Name is missing"), dto.Yaml ?? throw new FormatException("Yaml is missing"));
        CheckPolicy(record);
        return record;
    }

    /// <summary>The YAML must load as exactly one policy document whose name is the record's name.</summary>
    public static void CheckPolicy(PolicyRecord p)
    {
        IReadOnlyList<Gateway.Policy.PolicyDocument> docs;
        try
        {
            docs = Gateway.Policy.PolicyLoader.Parse(p.Yaml, p.Name);
        }
        catch (Gateway.Policy.PolicyLoadException e)
        {
            throw new FormatException(e.Message);
        }
        if (docs.Count != 1)
        {
            throw new FormatException($"policy {p.Name} holds {docs.Count} documents, expected 1");
        }
        string name = PolicyRecord.NameOf(docs[0]);
        if (name != p.Name)
        {
            throw new FormatException($"policy record '{p.Name}' holds policy {name}");
        }
    }

    // ---- identities ----

    public static uint DecodeIdentityNumber(string text)
    {
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) || id.ToString(CultureInfo.InvariantCulture) != text ||
            id < IdentityAllocation.FirstIdentity || id > IdentityAllocation.MaxIdentity)
        {
            throw new FormatException($"'{Shorten(text)}' is not an identity number ({IdentityAllocation.FirstIdentity} to {IdentityAllocation.MaxIdentity})");
        }
        return id;
    }

    public static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "...";

    private static T Deserialize<T>(ReadOnlySpan<byte> json) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Json) ?? throw new FormatException("value is JSON null");
        }
        catch (JsonException e)
        {
            throw new FormatException($"bad JSON: {e.Message.Split(" Path:")[0].Split(". LineNumber")[0]}{(e.Path is null ? "" : $" at {e.Path}")}");
        }
    }

    // ---- JSON shapes ----

    private sealed class NodeJson
    {
        public string? Name { get; set; }
        public string? Cluster { get; set; }
        public List<AddressJson>? IPAddresses { get; set; }
        public CidrJson? IPv4AllocCIDR { get; set; }
        public List<CidrJson>? IPv4SecondaryAllocCIDRs { get; set; }
        public CidrJson? IPv6AllocCIDR { get; set; }
        public List<CidrJson>? IPv6SecondaryAllocCIDRs { get; set; }
        public string? WireguardPubKey { get; set; }
        public int? WireguardPort { get; set; }
        public string? BootID { get; set; }
    }

    private sealed class AddressJson
    {
        public string? Type { get; set; }
        public string? IP { get; set; }
    }

    private sealed class CidrJson
    {
        public string? IP { get; set; }
        public string? Mask { get; set; }
    }

    private sealed class IpJson
    {
        public string? IP { get; set; }
        public string? Mask { get; set; }
        public string? HostIP { get; set; }
        public uint? ID { get; set; }
        public byte? Key { get; set; }
        public string? Metadata { get; set; }
        public string? K8sNamespace { get; set; }
        public string? K8sPodName { get; set; }
        public string? NodeName { get; set; }
    }

    private sealed class PolicyJson
    {
        public string? Name { get; set; }
        public string? Yaml { get; set; }
    }
}
