using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Node.Configuration;

/// <summary>The [Interface] section of a wg-quick file.</summary>
public sealed class InterfaceSection
{
    public WireGuardKey? PrivateKey { get; set; }
    public ushort? ListenPort { get; set; }
    public uint? FwMark { get; set; }
    public List<InterfaceAddress> Addresses { get; } = [];
    public int? Mtu { get; set; }
    public List<string> Dns { get; } = [];
    /// <summary>"auto" (default), "off", or a routing table number.</summary>
    public string? Table { get; set; }
    public List<string> PreUp { get; } = [];
    public List<string> PostUp { get; } = [];
    public List<string> PreDown { get; } = [];
    public List<string> PostDown { get; } = [];
    public bool SaveConfig { get; set; }
}

/// <summary>A [Peer] section of a wg-quick file.</summary>
public sealed class PeerSection
{
    public required WireGuardKey PublicKey { get; init; }
    public WireGuardKey? PresharedKey { get; set; }
    public List<IpPrefix> AllowedIps { get; } = [];
    /// <summary>The endpoint as written (host names allowed).</summary>
    public string? EndpointText { get; set; }
    /// <summary>The endpoint resolved at load time.</summary>
    public IpEndpoint? Endpoint { get; set; }
    /// <summary>Seconds; 0 = off.</summary>
    public ushort PersistentKeepalive { get; set; }
    /// <summary>Line of the [Peer] header, for messages.</summary>
    public int Line { get; init; }
    /// <summary>Overlay settings (TunnelAddress, PodCIDRs); empty without an [Overlay] section.</summary>
    public PeerOverlay Overlay { get; } = new();
}

/// <summary>
/// A wg-quick(8) configuration file: the [Interface] keys PrivateKey, ListenPort, FwMark,
/// Address, MTU, DNS, Table, PreUp/PostUp/PreDown/PostDown, SaveConfig and the [Peer] keys
/// PublicKey, PresharedKey, AllowedIPs, Endpoint, PersistentKeepalive. Key names are
/// case-insensitive, '#' starts a comment, list values are comma-separated and may repeat.
/// Every problem is reported with file and line; nothing is half-loaded.
/// Gateway adds an optional [Overlay] section and the [Peer] keys TunnelAddress and PodCIDRs
/// for overlay mode (docs/overlay.md).
/// </summary>
public sealed partial class WgQuickConfig : IDisposable
{
    public required string Path { get; init; }
    public InterfaceSection Interface { get; } = new();
    public List<PeerSection> Peers { get; } = [];
    /// <summary>The [Overlay] section, when the file has one.</summary>
    public OverlaySection? Overlay { get; private set; }
    /// <summary>Things the file asks for that Gateway does not act on (e.g. DNS), with lines.</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>Resolves host names in Endpoint values; replaceable for tests.</summary>
    public delegate IPAddress[] HostResolver(string host);

    /// <summary>Largest wg-quick file read.</summary>
    public const int MaxFileLength = 1 << 20;

    public static WgQuickConfig Load(string path, HostResolver? resolve = null)
    {
        string text;
        try
        {
            // A wg-quick file is a few kilobytes; a mistaken path to a huge file must not fill memory.
            if (new FileInfo(path).Length > MaxFileLength)
            {
                throw new ConfigException(path, 0, $"the file is larger than {MaxFileLength / (1 << 20)} MiB; a wg-quick file is a few kilobytes");
            }
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(path, 0, $"cannot read: {e.Message}");
        }
        return Parse(text, path, resolve);
    }

    public static WgQuickConfig Parse(string text, string path, HostResolver? resolve = null)
    {
        resolve ??= Dns.GetHostAddresses;
        var config = new WgQuickConfig { Path = path };
        try
        {
            config.ParseCore(text, resolve);
            return config;
        }
        catch
        {
            config.Dispose();
            throw;
        }
    }

    private void ParseCore(string text, HostResolver resolve)
    {
        string? section = null;
        bool sawInterface = false;
        PeerSection? peer = null;
        int peerLine = 0;
        var pending = new Dictionary<string, (string Value, int Line)>(StringComparer.OrdinalIgnoreCase);
        string[] lines = text.Split('\n');

        void FinishPeer()
        {
            if (section != "peer")
            {
                return;
            }
            if (!pending.TryGetValue("PublicKey", out var pk))
            {
                throw new ConfigException(Path, peerLine, "[Peer] has no PublicKey");
            }
            var key = ParseKey(pk.Value, pk.Line, "PublicKey");
            peer = new PeerSection { PublicKey = key, Line = peerLine };
            foreach (var existing in Peers)
            {
                if (existing.PublicKey.Equals(key))
                {
                    key.Dispose();
                    throw new ConfigException(Path, pk.Line, $"PublicKey repeats the peer of line {existing.Line}");
                }
            }
            Peers.Add(peer);
            foreach (var (name, (value, line)) in pending)
            {
                if (!name.Equals("PublicKey", StringComparison.OrdinalIgnoreCase))
                {
                    ApplyPeerKey(peer, name, value, line, resolve);
                }
            }
            pending.Clear();
        }

        for (int i = 0; i < lines.Length; i++)
        {
            int lineNumber = i + 1;
            string line = lines[i];
            int hash = line.IndexOf('#');
            if (hash >= 0)
            {
                line = line[..hash];
            }
            line = line.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            if (line.StartsWith('['))
            {
                FinishPeer();
                string name = line.Trim('[', ']').Trim().ToLowerInvariant();
                if (!line.EndsWith(']') || name is not ("interface" or "peer" or "overlay"))
                {
                    throw new ConfigException(Path, lineNumber, $"unknown section {line} (expected [Interface], [Peer] or [Overlay])");
                }
                if (name == "overlay")
                {
                    if (Overlay is not null)
                    {
                        throw new ConfigException(Path, lineNumber, "a second [Overlay] section");
                    }
                    Overlay = new OverlaySection { Line = lineNumber };
                }
                if (name == "interface")
                {
                    if (sawInterface)
                    {
                        throw new ConfigException(Path, lineNumber, "a second [Interface] section");
                    }
                    sawInterface = true;
                }
                section = name;
                peerLine = lineNumber;
                continue;
            }
            int eq = line.IndexOf('=');
            if (eq <= 0)
            {
                throw new ConfigException(Path, lineNumber, $"expected 'Key = Value', got '{line}'");
            }
            string keyName = line[..eq].Trim();
            string value = line[(eq + 1)..].Trim();
            if (section is null)
            {
                throw new ConfigException(Path, lineNumber, $"{keyName} appears before any [Interface] or [Peer] section");
            }
            if (section == "interface")
            {
                ApplyInterfaceKey(keyName, value, lineNumber);
            }
            else if (section == "overlay")
            {
                ApplyOverlayKey(keyName, value, lineNumber);
            }
            else
            {
                if (!IsPeerKey(keyName))
                {
                    throw new ConfigException(Path, lineNumber, $"unknown key '{keyName}' in [Peer]");
                }
                bool isList = keyName.Equals("AllowedIPs", StringComparison.OrdinalIgnoreCase) ||
                              keyName.Equals("PodCIDRs", StringComparison.OrdinalIgnoreCase);
                if (pending.TryGetValue(keyName, out var earlier))
                {
                    if (!isList)
                    {
                        throw new ConfigException(Path, lineNumber, $"{keyName} is already set on line {earlier.Line}");
                    }
                    // Accumulate AllowedIPs lines; keep the first line for messages.
                    pending[keyName] = ($"{earlier.Value},{value}", earlier.Line);
                }
                else
                {
                    pending[keyName] = (value, lineNumber);
                }
            }
        }
        FinishPeer();
        if (!sawInterface)
        {
            throw new ConfigException(Path, 0, "no [Interface] section");
        }
        if (Interface.PrivateKey is null)
        {
            throw new ConfigException(Path, 0, "[Interface] has no PrivateKey");
        }
        using (var own = Interface.PrivateKey.DerivePublic())
        {
            // The engine cannot have itself as a peer; say so here rather than fail half-way up.
            if (Peers.FirstOrDefault(p => p.PublicKey.Equals(own)) is { } self)
            {
                throw new ConfigException(Path, self.Line, "[Peer] PublicKey is this interface's own public key");
            }
        }
        ValidateOverlay(overlayKeyLines);
    }

    private readonly List<(PeerSection Peer, string Key, int Line)> overlayKeyLines = [];

    private void ValidateOverlay(List<(PeerSection Peer, string Key, int Line)> peerOverlayKeys)
    {
        if (Overlay is null)
        {
            if (peerOverlayKeys.Count > 0)
            {
                var (_, key, line) = peerOverlayKeys[0];
                throw new ConfigException(Path, line, $"{key} needs an [Overlay] section");
            }
            return;
        }
        if (Overlay.TunnelAddress == default)
        {
            throw new ConfigException(Path, Overlay.Line, "[Overlay] has no TunnelAddress");
        }
        ValidateIpsec(Overlay);
        if (Overlay.EndpointsPath is null)
        {
            throw new ConfigException(Path, Overlay.Line, "[Overlay] has no Endpoints file");
        }
        ValidateKvStore(Overlay);
        var tunnelAddresses = new Dictionary<IpAddress, int> { [Overlay.TunnelAddress] = Overlay.Line };
        foreach (var peer in Peers)
        {
            if (peer.Overlay.TunnelAddress is not { } address)
            {
                if (peer.Overlay.PodCidrs.Count > 0)
                {
                    throw new ConfigException(Path, peer.Line, "[Peer] has PodCIDRs but no TunnelAddress");
                }
                continue;
            }
            if (!tunnelAddresses.TryAdd(address, peer.Line))
            {
                throw new ConfigException(Path, peer.Line, $"TunnelAddress {address} is also used on line {tunnelAddresses[address]}");
            }
            // The VXLAN datagrams come from the peer's tunnel address: it must be routed to the peer.
            var host = new IpPrefix(address, address.BitLength);
            if (!peer.AllowedIps.Any(p => p.Contains(address)))
            {
                peer.AllowedIps.Add(host);
            }
        }
        if (Overlay.ClusterCidrs.Count == 0)
        {
            Overlay.ClusterCidrs.AddRange(Overlay.PodCidrs);
            foreach (var peer in Peers)
            {
                Overlay.ClusterCidrs.AddRange(peer.Overlay.PodCidrs);
            }
        }
    }

    private void ApplyOverlayKey(string name, string value, int line)
    {
        var overlay = Overlay!;
        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path)) ?? ".";
        string ResolvePath(string v) => System.IO.Path.IsPathRooted(v) ? v : System.IO.Path.Combine(directory, v);
        switch (name.ToLowerInvariant())
        {
            case "tunneladdress":
                if (!IpAddress.TryParse(value, out var address) || !address.IsV4)
                {
                    throw new ConfigException(Path, line, $"TunnelAddress '{value}' is not an IPv4 address");
                }
                overlay.TunnelAddress = address;
                break;
            case "podcidr":
            case "podcidrs":
                overlay.PodCidrs.AddRange(ParsePrefixes(value, line, "PodCIDR"));
                break;
            case "clustercidr":
            case "clustercidrs":
                overlay.ClusterCidrs.AddRange(ParsePrefixes(value, line, "ClusterCIDR"));
                break;
            case "vxlanport":
                overlay.VxlanPort = ParsePort(value, line, "VxlanPort");
                if (overlay.VxlanPort == 0)
                {
                    throw new ConfigException(Path, line, "VxlanPort must not be 0");
                }
                break;
            case "endpoints":
                overlay.EndpointsPath = ResolvePath(value);
                break;
            case "policy":
                overlay.PolicyPath = ResolvePath(value);
                break;
            case "services":
                overlay.ServicesPath = ResolvePath(value);
                break;
            case "identitystore":
                overlay.IdentityStorePath = ResolvePath(value);
                break;
            case "strict":
                overlay.Strict = ParseBool(value, line, "Strict");
                break;
            case "flowlog":
                overlay.FlowLogPath = value.Equals("off", StringComparison.OrdinalIgnoreCase) ? "off" : ResolvePath(value);
                break;
            case "nodename":
                if (value.Length == 0 || value.Length > 253 || value.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_')))
                {
                    throw new ConfigException(Path, line, $"NodeName '{value}' must be 1-253 letters, digits, '-', '.' or '_'");
                }
                overlay.NodeName = value;
                break;
            case "kvstore":
                ParseKvStoreEndpoints(value, line);
                _kvStoreKeys.Add(("KVStore", value, line));
                break;
            case "kvstoreca":
            case "kvstorecert":
            case "kvstorekey":
            case "kvstoreleasettl":
            case "nodeaddress":
            case "clustername":
                _kvStoreKeys.Add((name, ResolveKvStoreValue(name, value, ResolvePath), line));
                break;
            // IPsec keys (issue 16) live in WgQuickConfig.Ipsec.cs.
            case "encryption":
            case "ipseckeyfile":
            case "ipseckeyrotationduration":
                ApplyIpsecKey(overlay, name, value, line, ResolvePath(value));
                break;
            default:
                throw new ConfigException(Path, line, $"unknown key '{name}' in [Overlay]");
        }
    }

    // Cluster-mode keys are collected first and checked together once the section is read, so
    // that their order in the file does not matter (KVStoreCA may come before KVStore).
    private readonly List<(string Key, string Value, int Line)> _kvStoreKeys = [];

    private static string ResolveKvStoreValue(string name, string value, Func<string, string> resolvePath) =>
        name.ToLowerInvariant() is "kvstoreca" or "kvstorecert" or "kvstorekey" ? resolvePath(value) : value;

    private void ParseKvStoreEndpoints(string value, int line)
    {
        var urls = SplitList(value).ToList();
        if (urls.Count == 0)
        {
            throw new ConfigException(Path, line, "KVStore needs at least one etcd URL (http://host:2379)");
        }
        foreach (var url in urls)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") ||
                uri.Host.Length == 0 || (uri.AbsolutePath != "/" && uri.AbsolutePath.Length > 0))
            {
                throw new ConfigException(Path, line, $"KVStore entry '{url}' is not an http:// or https:// URL of an etcd member (http://host:2379)");
            }
        }
    }

    private void ValidateKvStore(OverlaySection overlay)
    {
        var first = _kvStoreKeys.FirstOrDefault(k => k.Key.Equals("KVStore", StringComparison.OrdinalIgnoreCase));
        if (first.Key is null)
        {
            if (_kvStoreKeys.Count > 0)
            {
                var (key, _, line) = _kvStoreKeys[0];
                throw new ConfigException(Path, line, $"{key} needs KVStore = http://host:2379 in [Overlay]");
            }
            return;
        }
        var settings = new KvStoreSettings { Endpoints = first.Value, Line = first.Line };
        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value, line) in _kvStoreKeys)
        {
            if (!seen.TryAdd(key, line))
            {
                throw new ConfigException(Path, line, $"{key} is already set on line {seen[key]}");
            }
            switch (key.ToLowerInvariant())
            {
                case "kvstoreca":
                    settings.CaPath = value;
                    break;
                case "kvstorecert":
                    settings.CertPath = value;
                    break;
                case "kvstorekey":
                    settings.KeyPath = value;
                    break;
                case "kvstoreleasettl":
                    if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int seconds) || seconds is < 2 or > 3600)
                    {
                        throw new ConfigException(Path, line, $"KVStoreLeaseTTL '{value}' is not a number of seconds from 2 to 3600");
                    }
                    settings.LeaseTtl = TimeSpan.FromSeconds(seconds);
                    break;
                case "nodeaddress":
                    if (!IpAddress.TryParse(value, out var address))
                    {
                        throw new ConfigException(Path, line, $"NodeAddress '{value}' is not an IP address");
                    }
                    settings.NodeAddress = address;
                    break;
                case "clustername":
                    if (value.Length is 0 or > 63 || value.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.' or '_')))
                    {
                        throw new ConfigException(Path, line, $"ClusterName '{value}' must be 1-63 of a-z, 0-9, '-', '.', '_'");
                    }
                    settings.ClusterName = value;
                    break;
            }
        }
        if ((settings.CertPath is null) != (settings.KeyPath is null))
        {
            int line = seen.GetValueOrDefault("KVStoreCert", seen.GetValueOrDefault("KVStoreKey"));
            throw new ConfigException(Path, line, "KVStoreCert and KVStoreKey go together (the client certificate and its private key)");
        }
        if (overlay.IdentityStorePath is not null)
        {
            throw new ConfigException(Path, first.Line, "KVStore and IdentityStore exclude each other (in cluster mode etcd allocates the identities)");
        }
        if (overlay.ClusterCidrs.Count == 0)
        {
            // Strict mode must cover pods of nodes that join later, so the prefix cannot be
            // derived from the file's peers as it is without a store.
            throw new ConfigException(Path, first.Line, "KVStore needs ClusterCIDR in [Overlay] (the prefix every node's pod CIDRs come from; strict mode blocks it)");
        }
        overlay.KvStore = settings;
    }

    private List<IpPrefix> ParsePrefixes(string value, int line, string name)
    {
        var list = new List<IpPrefix>();
        foreach (var item in SplitList(value))
        {
            if (!IpPrefix.TryParse(item, out var prefix))
            {
                throw new ConfigException(Path, line, $"{name} entry '{item}' is not an address or prefix");
            }
            list.Add(prefix);
        }
        return list;
    }

    private static bool IsPeerKey(string name) =>
        name.Equals("TunnelAddress", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("PodCIDRs", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("PublicKey", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("PresharedKey", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("AllowedIPs", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("Endpoint", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("PersistentKeepalive", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("IPsecBootId", StringComparison.OrdinalIgnoreCase);

    private void ApplyInterfaceKey(string name, string value, int line)
    {
        switch (name.ToLowerInvariant())
        {
            case "privatekey":
                if (Interface.PrivateKey is not null)
                {
                    throw new ConfigException(Path, line, "PrivateKey is set twice");
                }
                Interface.PrivateKey = ParseKey(value, line, "PrivateKey");
                break;
            case "listenport":
                Interface.ListenPort = ParsePort(value, line, "ListenPort");
                break;
            case "fwmark":
                Interface.FwMark = value.Equals("off", StringComparison.OrdinalIgnoreCase) ? 0 : ParseUInt(value, line, "FwMark");
                break;
            case "address":
                foreach (var item in SplitList(value))
                {
                    if (!InterfaceAddress.TryParse(item, out var address))
                    {
                        throw new ConfigException(Path, line, $"Address '{item}' is not an address with optional /prefix");
                    }
                    Interface.Addresses.Add(address);
                }
                break;
            case "mtu":
                if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int mtu) || mtu is < 576 or > 65535)
                {
                    throw new ConfigException(Path, line, $"MTU '{value}' is not a number from 576 to 65535");
                }
                Interface.Mtu = mtu;
                break;
            case "dns":
                Interface.Dns.AddRange(SplitList(value));
                Warnings.Add($"{Path}:{line}: DNS is not applied by gateway (configure the resolver separately)");
                break;
            case "table":
                if (!value.Equals("auto", StringComparison.OrdinalIgnoreCase) && !value.Equals("off", StringComparison.OrdinalIgnoreCase) &&
                    !uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    throw new ConfigException(Path, line, $"Table '{value}' must be auto, off or a table number");
                }
                Interface.Table = value.ToLowerInvariant();
                break;
            case "preup":
                Interface.PreUp.Add(value);
                break;
            case "postup":
                Interface.PostUp.Add(value);
                break;
            case "predown":
                Interface.PreDown.Add(value);
                break;
            case "postdown":
                Interface.PostDown.Add(value);
                break;
            case "saveconfig":
                Interface.SaveConfig = ParseBool(value, line, "SaveConfig");
                if (Interface.SaveConfig)
                {
                    Warnings.Add($"{Path}:{line}: SaveConfig is not supported; the file is never rewritten");
                }
                break;
            default:
                throw new ConfigException(Path, line, $"unknown key '{name}' in [Interface]");
        }
    }

    private void ApplyPeerKey(PeerSection peer, string name, string value, int line, HostResolver resolve)
    {
        switch (name.ToLowerInvariant())
        {
            case "presharedkey":
                peer.PresharedKey = ParseKey(value, line, "PresharedKey");
                break;
            case "allowedips":
                foreach (var item in SplitList(value))
                {
                    if (!IpPrefix.TryParse(item, out var prefix))
                    {
                        throw new ConfigException(Path, line, $"AllowedIPs entry '{item}' is not an address or prefix");
                    }
                    peer.AllowedIps.Add(prefix);
                }
                break;
            case "endpoint":
                peer.EndpointText = value;
                peer.Endpoint = ResolveEndpoint(value, line, resolve);
                break;
            case "tunneladdress":
                if (!IpAddress.TryParse(value, out var tunnel) || !tunnel.IsV4)
                {
                    throw new ConfigException(Path, line, $"TunnelAddress '{value}' is not an IPv4 address");
                }
                peer.Overlay.TunnelAddress = tunnel;
                overlayKeyLines.Add((peer, "TunnelAddress", line));
                break;
            case "podcidrs":
                peer.Overlay.PodCidrs.AddRange(ParsePrefixes(value, line, "PodCIDRs"));
                overlayKeyLines.Add((peer, "PodCIDRs", line));
                break;
            case "ipsecbootid":
                peer.Overlay.IpsecBootId = ParseIpsecBootId(value, line);
                overlayKeyLines.Add((peer, "IPsecBootId", line));
                break;
            case "persistentkeepalive":
                peer.PersistentKeepalive = value.Equals("off", StringComparison.OrdinalIgnoreCase)
                    ? (ushort)0
                    : ParsePort(value, line, "PersistentKeepalive");
                break;
        }
    }

    private IpEndpoint ResolveEndpoint(string value, int line, HostResolver resolve)
    {
        if (IpEndpoint.TryParse(value, out var endpoint))
        {
            return endpoint;
        }
        int colon = value.LastIndexOf(':');
        if (colon <= 0 || value.StartsWith('['))
        {
            throw new ConfigException(Path, line, $"Endpoint '{value}' must be host:port or [IPv6]:port");
        }
        string host = value[..colon];
        ushort port = ParsePort(value[(colon + 1)..], line, "Endpoint port");
        IPAddress[] addresses;
        try
        {
            addresses = resolve(host);
        }
        catch (SocketException e)
        {
            throw new ConfigException(Path, line, $"cannot resolve Endpoint host '{host}': {e.Message}");
        }
        // Prefer IPv4 like wg(8) does when both families resolve.
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ??
                     addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetworkV6) ??
                     throw new ConfigException(Path, line, $"Endpoint host '{host}' has no addresses");
        return new IpEndpoint(IpAddress.FromIPAddress(chosen), port);
    }

    private WireGuardKey ParseKey(string value, int line, string name) =>
        WireGuardKey.TryParseBase64(value, out var key) && key is not null
            ? key
            : throw new ConfigException(Path, line, $"{name} is not a base64 WireGuard key (44 characters)");

    private ushort ParsePort(string value, int line, string name) =>
        ushort.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out ushort port)
            ? port
            : throw new ConfigException(Path, line, $"{name} '{value}' is not a number from 0 to 65535");

    private uint ParseUInt(string value, int line, string name)
    {
        bool ok = value.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.TryParse(value.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint v)
            : uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        return ok ? v : throw new ConfigException(Path, line, $"{name} '{value}' is not a 32-bit number");
    }

    private bool ParseBool(string value, int line, string name) => value.ToLowerInvariant() switch
    {
        "true" or "yes" or "on" or "1" => true,
        "false" or "no" or "off" or "0" => false,
        _ => throw new ConfigException(Path, line, $"{name} '{value}' must be true or false"),
    };

    private static IEnumerable<string> SplitList(string value) =>
        value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Zeroes the keys held by this configuration.</summary>
    public void Dispose()
    {
        Interface.PrivateKey?.Dispose();
        foreach (var peer in Peers)
        {
            peer.PublicKey.Dispose();
            peer.PresharedKey?.Dispose();
        }
    }
}
