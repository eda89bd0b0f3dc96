using System.Globalization;
using System.Text;
using Gateway.Datapath;

namespace Gateway.Tunnel.Uapi;

/// <summary>
/// The cross-platform userspace configuration protocol (wireguard.com/xplatform, wireguard-go
/// device/uapi.go), as pure functions: parse a `set=1` body, apply it to an engine, capture and
/// print the `get=1` reply. The socket server that carries it lives with the daemon.
/// <code>
///   client: get=1\n\n                     server: private_key=..\n ... errno=0\n\n
///   client: set=1\n key=value\n ... \n     server: errno=0\n\n   (or errno=-22 etc.)
/// </code>
/// Unlike wireguard-go, which applies line by line and may stop half way, a request is parsed
/// completely first and applied only when every line is valid; the errno values are the same.
/// </summary>
public static class UapiProtocol
{
    /// <summary>Longest request line accepted (the longest real one, an IPv6 endpoint or a key,
    /// is under 100 characters); longer lines are refused with -22.</summary>
    public const int MaxLineLength = 4096;

    /// <summary>Largest request accepted; larger is refused with -22. The kernel selftest's
    /// biggest `wg setconf` (130,560 allowed IPs, about 6 MB as UAPI text) fits.</summary>
    public const int MaxRequestLength = 16 << 20;

    /// <summary>
    /// Handles one complete request ("get=1\n\n" or "set=1\n...\n\n") and returns the reply text,
    /// or null for an unknown operation (wireguard-go closes the connection then).
    /// </summary>
    public static string? Handle(WireGuardEngine engine, string request)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(request);
        if (request.StartsWith("get=1\n", StringComparison.Ordinal))
        {
            if (request.Length < 7 || request[6] != '\n') return "errno=" + UapiErrno.Invalid.ToString(CultureInfo.InvariantCulture) + "\n\n";
            using var state = Capture(engine);
            return Format(state);
        }
        if (request.StartsWith("set=1\n", StringComparison.Ordinal))
        {
            int errno = ParseSet(request.AsSpan(6), out var parsed);
            if (errno == UapiErrno.Ok)
            {
                using (parsed) errno = Apply(engine, parsed!);
            }
            return "errno=" + errno.ToString(CultureInfo.InvariantCulture) + "\n\n";
        }
        return null;
    }

    /// <summary>
    /// Parses the lines after "set=1\n", up to the first blank line (or the end). Returns 0 and the
    /// request, or a negative errno: -71 for a line without '=', -22 for an unknown key or bad value.
    /// </summary>
    public static int ParseSet(ReadOnlySpan<char> body, out UapiSetRequest? request)
    {
        request = null;
        if (body.Length > MaxRequestLength) return UapiErrno.Invalid;
        var result = new UapiSetRequest();
        UapiPeerChange? peer = null;
        while (!body.IsEmpty)
        {
            int nl = body.IndexOf('\n');
            var line = nl < 0 ? body : body[..nl];
            body = nl < 0 ? ReadOnlySpan<char>.Empty : body[(nl + 1)..];
            if (line.IsEmpty) break; // blank line ends the request
            if (line.Length > MaxLineLength) { result.Dispose(); return UapiErrno.Invalid; }
            int eq = line.IndexOf('=');
            if (eq < 0) { result.Dispose(); return UapiErrno.Protocol; }
            var key = line[..eq];
            var value = line[(eq + 1)..];
            int errno;
            if (key.SequenceEqual("public_key"))
            {
                if (!TryParseKey(value, out var pk)) { result.Dispose(); return UapiErrno.Invalid; }
                peer = new UapiPeerChange(new PublicKey(pk));
                result.Peers.Add(peer);
                continue;
            }
            errno = peer is null ? ParseDeviceLine(result, key, value) : ParsePeerLine(peer, key, value);
            if (errno != UapiErrno.Ok) { result.Dispose(); return errno; }
        }
        request = result;
        return UapiErrno.Ok;
    }

    private static int ParseDeviceLine(UapiSetRequest request, ReadOnlySpan<char> key, ReadOnlySpan<char> value)
    {
        switch (key)
        {
            case "private_key":
                if (!TryParseKey(value, out var sk)) return UapiErrno.Invalid;
                request.PrivateKey = sk;
                return UapiErrno.Ok;
            case "listen_port":
                if (!TryParseDecimal(value, ushort.MaxValue, out ulong port)) return UapiErrno.Invalid;
                request.ListenPort = (ushort)port;
                return UapiErrno.Ok;
            case "fwmark":
                if (!TryParseDecimal(value, uint.MaxValue, out ulong mark)) return UapiErrno.Invalid;
                request.FwMark = (uint)mark;
                return UapiErrno.Ok;
            case "replace_peers":
                if (!value.SequenceEqual("true")) return UapiErrno.Invalid;
                request.ReplacePeers = true;
                return UapiErrno.Ok;
            default:
                return UapiErrno.Invalid;
        }
    }

    private static int ParsePeerLine(UapiPeerChange peer, ReadOnlySpan<char> key, ReadOnlySpan<char> value)
    {
        switch (key)
        {
            case "update_only":
                if (!value.SequenceEqual("true")) return UapiErrno.Invalid;
                peer.UpdateOnly = true;
                return UapiErrno.Ok;
            case "remove":
                if (!value.SequenceEqual("true")) return UapiErrno.Invalid;
                peer.Remove = true;
                return UapiErrno.Ok;
            case "preshared_key":
                if (!TryParseKey(value, out var psk)) return UapiErrno.Invalid;
                peer.PresharedKey = psk;
                return UapiErrno.Ok;
            case "endpoint":
                if (!IpEndpoint.TryParse(value, out var endpoint) || endpoint.Port == 0) return UapiErrno.Invalid;
                peer.Endpoint = endpoint;
                return UapiErrno.Ok;
            case "persistent_keepalive_interval":
                if (!TryParseDecimal(value, ushort.MaxValue, out ulong secs)) return UapiErrno.Invalid;
                peer.PersistentKeepaliveInterval = (ushort)secs;
                return UapiErrno.Ok;
            case "replace_allowed_ips":
                if (!value.SequenceEqual("true")) return UapiErrno.Invalid;
                // Line order matters in wireguard-go: a replace drops what earlier lines added.
                peer.ReplaceAllowedIps = true;
                peer.AllowedIps.Clear();
                return UapiErrno.Ok;
            case "allowed_ip":
                // netip.ParsePrefix: the "/bits" part is mandatory.
                if (value.IndexOf('/') < 0 || !IpPrefix.TryParse(value, out var prefix)) return UapiErrno.Invalid;
                peer.AllowedIps.Add(prefix);
                return UapiErrno.Ok;
            case "protocol_version":
                return value.SequenceEqual("1") ? UapiErrno.Ok : UapiErrno.Invalid;
            default:
                return UapiErrno.Invalid;
        }
    }

    /// <summary>Applies a parsed request in wireguard-go's order. Returns 0, or -22 when the engine refuses a value.</summary>
    public static int Apply(WireGuardEngine engine, UapiSetRequest request)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(request);
        if (request.PrivateKey is not null) engine.SetPrivateKey(request.PrivateKey);
        if (request.ListenPort is ushort port) engine.ListenPort = port;
        if (request.FwMark is uint mark) engine.FwMark = mark;
        if (request.ReplacePeers) engine.RemoveAllPeers();
        foreach (var change in request.Peers)
        {
            // A peer with our own public key is silently ignored (wireguard-go's "dummy" peer).
            if (engine.LocalPublicKey is PublicKey own && own == change.PublicKey) continue;
            bool exists = engine.TryGetPeer(change.PublicKey, out var peer);
            if (change.Remove)
            {
                if (exists) engine.RemovePeer(change.PublicKey);
                continue;
            }
            if (!exists && change.UpdateOnly) continue;
            peer = exists ? peer : engine.GetOrAddPeer(change.PublicKey);
            if (change.PresharedKey is not null) engine.SetPresharedKey(peer, change.PresharedKey);
            if (change.Endpoint is IpEndpoint endpoint) engine.SetEndpoint(peer, endpoint);
            if (change.ReplaceAllowedIps) engine.ClearAllowedIps(peer);
            foreach (var prefix in change.AllowedIps) engine.AddAllowedIp(peer, prefix);
            // Last, like wireguard-go's handlePostConfig: turning keepalive on sends one at once.
            if (change.PersistentKeepaliveInterval is ushort keepalive) engine.SetPersistentKeepalive(peer, keepalive);
        }
        return UapiErrno.Ok;
    }

    /// <summary>Snapshot of what `get=1` reports. Dispose it to zero the copied secrets.</summary>
    public static UapiDeviceState Capture(WireGuardEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        byte[]? privateKey = new byte[32];
        if (!engine.TryCopyPrivateKey(privateKey)) privateKey = null;
        var peers = new List<UapiPeerState>();
        foreach (var peer in engine.Peers)
        {
            var psk = new byte[32];
            engine.CopyPresharedKey(peer, psk);
            long unixNanos = Interlocked.Read(ref peer.LastHandshakeUnixNanos);
            var endpoint = peer.Endpoint;
            peers.Add(new UapiPeerState(peer.PublicKey, psk, endpoint.Port == 0 ? null : endpoint,
                unixNanos / 1_000_000_000L, unixNanos % 1_000_000_000L, peer.TxBytes, peer.RxBytes,
                peer.PersistentKeepaliveInterval, peer.AllowedIps));
        }
        return new UapiDeviceState(privateKey, engine.ListenPort, engine.FwMark, peers);
    }

    /// <summary>
    /// The `get=1` reply in wireguard-go's order: private_key, listen_port, fwmark (each only when
    /// set), then per peer public_key, preshared_key, protocol_version, endpoint (when known),
    /// last_handshake_time_sec/_nsec, tx_bytes, rx_bytes, persistent_keepalive_interval,
    /// allowed_ip lines; then "errno=0" and a blank line.
    /// </summary>
    public static string Format(UapiDeviceState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var sb = new StringBuilder(256 + state.Peers.Count * 512);
        var inv = CultureInfo.InvariantCulture;
        if (state.PrivateKey is not null && state.PrivateKey.AsSpan().IndexOfAnyExcept((byte)0) >= 0)
            AppendKey(sb, "private_key", state.PrivateKey);
        if (state.ListenPort != 0) sb.Append("listen_port=").Append(state.ListenPort.ToString(inv)).Append('\n');
        if (state.FwMark != 0) sb.Append("fwmark=").Append(state.FwMark.ToString(inv)).Append('\n');
        Span<byte> pub = stackalloc byte[32];
        foreach (var peer in state.Peers)
        {
            peer.PublicKey.CopyTo(pub);
            AppendKey(sb, "public_key", pub);
            AppendKey(sb, "preshared_key", peer.PresharedKey);
            sb.Append("protocol_version=1\n");
            if (peer.Endpoint is IpEndpoint endpoint) sb.Append("endpoint=").Append(endpoint.ToString()).Append('\n');
            sb.Append("last_handshake_time_sec=").Append(peer.LastHandshakeTimeSec.ToString(inv)).Append('\n');
            sb.Append("last_handshake_time_nsec=").Append(peer.LastHandshakeTimeNsec.ToString(inv)).Append('\n');
            sb.Append("tx_bytes=").Append(peer.TxBytes.ToString(inv)).Append('\n');
            sb.Append("rx_bytes=").Append(peer.RxBytes.ToString(inv)).Append('\n');
            sb.Append("persistent_keepalive_interval=").Append(peer.PersistentKeepaliveInterval.ToString(inv)).Append('\n');
            foreach (var prefix in peer.AllowedIps) sb.Append("allowed_ip=").Append(prefix.ToString()).Append('\n');
        }
        sb.Append("errno=0\n\n");
        return sb.ToString();
    }

    private static void AppendKey(StringBuilder sb, string name, ReadOnlySpan<byte> key)
    {
        const string hex = "0123456789abcdef";
        sb.Append(name).Append('=');
        foreach (byte b in key) sb.Append(hex[b >> 4]).Append(hex[b & 15]);
        sb.Append('\n');
    }

    /// <summary>Exactly 64 hex digits (either case), as wireguard-go's key parsing requires.</summary>
    private static bool TryParseKey(ReadOnlySpan<char> value, out byte[] key)
    {
        key = new byte[32];
        if (value.Length != 64) return false;
        for (int i = 0; i < 32; i++)
        {
            int hi = HexValue(value[2 * i]), lo = HexValue(value[2 * i + 1]);
            if (hi < 0 || lo < 0) return false;
            key[i] = (byte)(hi << 4 | lo);
        }
        return true;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>Go's strconv.ParseUint(value, 10, bits): digits only, no sign, within range.</summary>
    private static bool TryParseDecimal(ReadOnlySpan<char> value, ulong max, out ulong result)
    {
        result = 0;
        if (value.IsEmpty || value.Length > 20) return false;
        foreach (char c in value)
        {
            if (c < '0' || c > '9') return false;
            ulong next = result * 10 + (ulong)(c - '0');
            if (next < result || result > ulong.MaxValue / 10) return false;
            result = next;
        }
        return result <= max;
    }
}
