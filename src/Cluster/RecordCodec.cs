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

    public static NodeRecord DecodeNode(string json)
    {
        var dto = Deserialize<NodeJson>(json);
        string? address = null, tunnel = null;
        foreach (var a in dto.IPAddresses ?? [])
        {
            if (a.Type == InternalIp && address is null)
            {
                address = a.IP;
            }
            else if (a.Type == CiliumInternalIp && tunnel is null)
            {
                tunnel = a.IP;
            }
        }
        var cidrs = new List<string>();
        foreach (var c in Enumerate(dto.IPv4AllocCIDR, dto.IPv4SecondaryAllocCIDRs, dto.IPv6AllocCIDR, dto.IPv6SecondaryAllocCIDRs))
        {
            cidrs.Add(FromCidrJson(c).ToString());
        }
        var node = new NodeRecord
        {
            Name = dto.Name ?? throw new FormatException("Name is missing"),
            Cluster = dto.Cluster ?? throw new FormatException("Cluster is missing"),
            WireGuardPublicKey = dto.WireguardPubKey ?? throw new FormatException("WireguardPubKey is missing"),
            Address = address ?? throw new FormatException("no IPAddresses entry of Type InternalIP"),
            TunnelAddress = tunnel ?? throw new FormatException("no IPAddresses entry of Type CiliumInternalIP"),
            Port = dto.WireguardPort ?? throw new FormatException("WireguardPort is missing"),
            PodCidrs = cidrs,
            BootId = dto.BootID ?? "",
        };
        CheckNode(node);
        return node;
    }

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
        return p;
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

    public static IpCacheEntry DecodeEntry(string json)
    {
        var dto = Deserialize<IpJson>(json);
        if (dto.IP is null || !IpAddress.TryParse(dto.IP, out var ip))
        {
            throw new FormatException($"IP '{dto.IP}' is not an address");
        }
        int length = MaskLength(dto.Mask, ip.IsV6) ?? ip.BitLength;
        var prefix = new IpPrefix(ip, length);
        if (!prefix.Address.Equals(ip))
        {
            throw new FormatException($"{dto.IP}/{length} has host bits set");
        }
        var entry = new IpCacheEntry
        {
            Prefix = prefix.ToString(),
            Identity = dto.ID ?? throw new FormatException("ID is missing"),
            HostIp = dto.HostIP ?? throw new FormatException("HostIP is missing"),
            NodeName = dto.NodeName ?? throw new FormatException("NodeName is missing"),
            EncryptionKey = dto.Key ?? 0,
            Namespace = string.IsNullOrEmpty(dto.K8sNamespace) ? null : dto.K8sNamespace,
            PodName = string.IsNullOrEmpty(dto.K8sPodName) ? null : dto.K8sPodName,
        };
        CheckEntry(entry);
        return entry;
    }

    // ---- policies ----

    public static string EncodePolicy(PolicyRecord p) => JsonSerializer.Serialize(new PolicyJson { Name = p.Name, Yaml = p.Yaml }, Json);

    public static PolicyRecord DecodePolicy(string json)
    {
        var dto = Deserialize<PolicyJson>(json);
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

    private static T Deserialize<T>(string json) where T : class
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
        // Cilium fields this project does not use: accepted, not kept.
        public JsonElement? IPv4HealthIP { get; set; }
        public JsonElement? IPv6HealthIP { get; set; }
        public JsonElement? IPv4IngressIP { get; set; }
        public JsonElement? IPv6IngressIP { get; set; }
        public JsonElement? ClusterID { get; set; }
        public JsonElement? Source { get; set; }
        public JsonElement? EncryptionKey { get; set; }
        public JsonElement? Labels { get; set; }
        public JsonElement? Annotations { get; set; }
        public JsonElement? NodeIdentity { get; set; }
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
        public JsonElement? K8sServiceAccount { get; set; }
        public JsonElement? NamedPorts { get; set; }
        public string? NodeName { get; set; }
    }

    private sealed class PolicyJson
    {
        public string? Name { get; set; }
        public string? Yaml { get; set; }
    }
}
