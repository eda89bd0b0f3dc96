using System.Globalization;
using Gateway.Crypto;
using Gateway.Datapath;

namespace Gateway.Node.Uapi;

/// <summary>One peer as a UAPI `get=1` reply describes it.</summary>
public sealed class UapiPeer
{
    public required string PublicKeyHex { get; init; }
    public bool HasPresharedKey { get; set; }
    public string? Endpoint { get; set; }
    public List<string> AllowedIps { get; } = [];
    public long LastHandshakeSeconds { get; set; }
    public long LastHandshakeNanoseconds { get; set; }
    public ulong RxBytes { get; set; }
    public ulong TxBytes { get; set; }
    public ushort PersistentKeepalive { get; set; }
}

/// <summary>
/// The state of an interface as read from a UAPI `get=1` reply (what `wg show` prints).
/// Key material stays hex here and only the public parts are ever turned into text.
/// </summary>
public sealed class UapiDevice
{
    public string? PrivateKeyHex { get; set; }
    public ushort ListenPort { get; set; }
    public uint FwMark { get; set; }
    public List<UapiPeer> Peers { get; } = [];
    public int Errno { get; set; }

    public static UapiDevice Parse(string reply)
    {
        var device = new UapiDevice();
        UapiPeer? peer = null;
        foreach (string raw in reply.Split('\n'))
        {
            if (raw.Length == 0)
            {
                continue;
            }
            int eq = raw.IndexOf('=');
            if (eq <= 0)
            {
                throw new FormatException($"malformed UAPI line '{raw}'");
            }
            string key = raw[..eq], value = raw[(eq + 1)..];
            switch (key)
            {
                case "private_key" when peer is null:
                    device.PrivateKeyHex = value;
                    break;
                case "listen_port" when peer is null:
                    device.ListenPort = ushort.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "fwmark" when peer is null:
                    device.FwMark = uint.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "public_key":
                    peer = new UapiPeer { PublicKeyHex = value };
                    device.Peers.Add(peer);
                    break;
                case "preshared_key" when peer is not null:
                    peer.HasPresharedKey = value.Any(c => c != '0');
                    break;
                case "endpoint" when peer is not null:
                    peer.Endpoint = value;
                    break;
                case "allowed_ip" when peer is not null:
                    peer.AllowedIps.Add(value);
                    break;
                case "last_handshake_time_sec" when peer is not null:
                    peer.LastHandshakeSeconds = long.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "last_handshake_time_nsec" when peer is not null:
                    peer.LastHandshakeNanoseconds = long.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "rx_bytes" when peer is not null:
                    peer.RxBytes = ulong.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "tx_bytes" when peer is not null:
                    peer.TxBytes = ulong.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "persistent_keepalive_interval" when peer is not null:
                    peer.PersistentKeepalive = ushort.Parse(value, CultureInfo.InvariantCulture);
                    break;
                case "errno":
                    device.Errno = int.Parse(value, CultureInfo.InvariantCulture);
                    break;
                default:
                    break; // protocol_version and keys from newer peers: not shown
            }
        }
        return device;
    }

    /// <summary>Base64 form of a hex key, as `wg` prints keys.</summary>
    public static string HexToBase64(string hex)
    {
        if (!WireGuardKey.TryParseHex(hex, out var key) || key is null)
        {
            return "(invalid key)";
        }
        using (key)
        {
            return key.ToBase64();
        }
    }

    public string? PublicKeyBase64()
    {
        if (PrivateKeyHex is null || !WireGuardKey.TryParseHex(PrivateKeyHex, out var key) || key is null)
        {
            return null;
        }
        using (key)
        using (var pub = key.DerivePublic())
        {
            return pub.ToBase64();
        }
    }

    /// <summary>Renders the device the way `wg show INTERFACE` does (without colours).</summary>
    public string Render(string interfaceName, DateTimeOffset now)
    {
        var text = new System.Text.StringBuilder();
        text.Append("interface: ").Append(interfaceName).Append('\n');
        if (PublicKeyBase64() is { } pub)
        {
            text.Append("  public key: ").Append(pub).Append('\n');
            text.Append("  private key: (hidden)\n");
        }
        if (ListenPort != 0)
        {
            text.Append("  listening port: ").Append(ListenPort).Append('\n');
        }
        if (FwMark != 0)
        {
            text.Append("  fwmark: 0x").Append(FwMark.ToString("x", CultureInfo.InvariantCulture)).Append('\n');
        }
        // wg sorts peers by latest handshake, most recent first.
        foreach (var peer in Peers.OrderByDescending(p => p.LastHandshakeSeconds).ThenByDescending(p => p.LastHandshakeNanoseconds))
        {
            text.Append('\n');
            text.Append("peer: ").Append(HexToBase64(peer.PublicKeyHex)).Append('\n');
            if (peer.HasPresharedKey)
            {
                text.Append("  preshared key: (hidden)\n");
            }
            if (peer.Endpoint is { Length: > 0 } endpoint)
            {
                text.Append("  endpoint: ").Append(endpoint).Append('\n');
            }
            text.Append("  allowed ips: ").Append(peer.AllowedIps.Count == 0 ? "(none)" : string.Join(", ", peer.AllowedIps)).Append('\n');
            if (peer.LastHandshakeSeconds != 0)
            {
                var ago = now - DateTimeOffset.FromUnixTimeSeconds(peer.LastHandshakeSeconds);
                text.Append("  latest handshake: ").Append(FormatAgo(ago)).Append('\n');
            }
            if (peer.RxBytes != 0 || peer.TxBytes != 0)
            {
                text.Append("  transfer: ").Append(FormatBytes(peer.RxBytes)).Append(" received, ")
                    .Append(FormatBytes(peer.TxBytes)).Append(" sent\n");
            }
            if (peer.PersistentKeepalive != 0)
            {
                text.Append("  persistent keepalive: every ").Append(FormatSeconds(peer.PersistentKeepalive)).Append('\n');
            }
        }
        return text.ToString();
    }

    private static string FormatAgo(TimeSpan ago)
    {
        long seconds = (long)Math.Max(0, ago.TotalSeconds);
        return seconds == 0 ? "Now" : FormatSeconds(seconds) + " ago";
    }

    // wg's pretty_time: years, days, hours, minutes, seconds, each pluralised.
    internal static string FormatSeconds(long total)
    {
        var parts = new List<string>();
        void Add(long value, string unit)
        {
            if (value != 0)
            {
                parts.Add($"{value} {unit}{(value == 1 ? "" : "s")}");
            }
        }
        Add(total / (365 * 24 * 3600), "year");
        Add(total / (24 * 3600) % 365, "day");
        Add(total / 3600 % 24, "hour");
        Add(total / 60 % 60, "minute");
        Add(total % 60, "second");
        return parts.Count == 0 ? "0 seconds" : string.Join(", ", parts);
    }

    // wg's bytes(): B below 1 KiB, then KiB, MiB, GiB, TiB with two decimals.
    internal static string FormatBytes(ulong bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024UL * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F2} KiB"),
        < 1024UL * 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):F2} MiB"),
        < 1024UL * 1024 * 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):F2} GiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024 * 1024):F2} TiB"),
    };
}
