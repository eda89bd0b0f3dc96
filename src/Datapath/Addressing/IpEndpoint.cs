using System.Net;

namespace Gateway.Datapath;

/// <summary>
/// An IP address and port as a value type (no allocation), printed and parsed the way
/// WireGuard writes endpoints: "192.0.2.1:51820" and "[2001:db8::1]:51820".
/// </summary>
/// <remarks>
/// A received endpoint also carries the local side the datagram arrived on (<see cref="LocalAddress"/>,
/// <see cref="LocalInterface"/>), as the Linux driver's <c>struct endpoint</c> keeps <c>src4</c>/<c>src6</c>
/// and wireguard-go's StdNetEndpoint keeps the IP_PKTINFO it received: a reply sent to that endpoint
/// leaves from that address ("sticky source"), so a peer that wrote to a host's second address hears
/// back from it. The local side is a hint for sending, not part of the identity: two endpoints are
/// equal when address and port are (<see cref="SameLocal"/> compares the rest), it is not printed,
/// and an endpoint parsed or configured has none (the kernel routes it).
/// </remarks>
public readonly record struct IpEndpoint(IpAddress Address, ushort Port)
{
    // Declared after Address and Port so that the struct stays 48 bytes: the flag and the
    // interface index fill the padding behind Port. The local address has the family of Address.
    private readonly bool _hasLocal;
    private readonly int _localInterface;
    private readonly ulong _localHigh;
    private readonly ulong _localLow;

    private IpEndpoint(IpAddress address, ushort port, IpAddress local, int localInterface)
        : this(address, port)
    {
        _hasLocal = true;
        _localInterface = localInterface;
        _localHigh = local.High;
        _localLow = local.Low;
    }

    /// <summary>True when the endpoint carries the local address a reply should leave from.</summary>
    public bool HasLocal => _hasLocal;

    /// <summary>The local address the peer's datagram arrived on (default when <see cref="HasLocal"/> is false).</summary>
    public IpAddress LocalAddress =>
        !_hasLocal ? default : Address.IsV6 ? IpAddress.FromV6(_localHigh, _localLow) : IpAddress.FromV4((uint)_localLow);

    /// <summary>The index of the interface the peer's datagram arrived on (0 when unknown).</summary>
    public int LocalInterface => _localInterface;

    /// <summary>This endpoint with the local side a reply should leave from. A local address of the
    /// other family than <see cref="Address"/> cannot be a source for it and leaves the endpoint
    /// without one.</summary>
    public IpEndpoint WithLocal(IpAddress local, int interfaceIndex) =>
        local.IsV6 == Address.IsV6 ? new IpEndpoint(Address, Port, local, interfaceIndex) : WithoutLocal();

    /// <summary>This endpoint without a local side: the kernel picks the source by route.</summary>
    public IpEndpoint WithoutLocal() => new(Address, Port);

    /// <summary>True when both carry the same local side (or both none).</summary>
    public bool SameLocal(in IpEndpoint other) =>
        _hasLocal == other._hasLocal && _localInterface == other._localInterface &&
        _localHigh == other._localHigh && _localLow == other._localLow;

    /// <summary>Address and port; the local side is a sending hint and not compared.</summary>
    public bool Equals(IpEndpoint other) => Address == other.Address && Port == other.Port;

    public override int GetHashCode() => HashCode.Combine(Address, Port);

    public static IpEndpoint FromIPEndPoint(IPEndPoint endpoint) =>
        new(IpAddress.FromIPAddress(endpoint.Address.IsIPv4MappedToIPv6 ? endpoint.Address.MapToIPv4() : endpoint.Address), (ushort)endpoint.Port);

    public IPEndPoint ToIPEndPoint() => new(Address.ToIPAddress(), Port);

    public static bool TryParse(ReadOnlySpan<char> text, out IpEndpoint endpoint)
    {
        endpoint = default;
        text = text.Trim();
        int colon = text.LastIndexOf(':');
        if (colon <= 0)
        {
            return false;
        }
        var host = text[..colon];
        if (host[0] == '[')
        {
            if (host.Length < 3 || host[^1] != ']')
            {
                return false;
            }
            host = host[1..^1];
            if (!host.Contains(':'))
            {
                return false;
            }
        }
        else if (host.Contains(':'))
        {
            return false; // IPv6 endpoints need brackets
        }
        if (!IpAddress.TryParse(host, out var address) ||
            !ushort.TryParse(text[(colon + 1)..], System.Globalization.NumberStyles.None, null, out ushort port))
        {
            return false;
        }
        endpoint = new IpEndpoint(address, port);
        return true;
    }

    public static IpEndpoint Parse(string text) =>
        TryParse(text, out var endpoint) ? endpoint : throw new FormatException($"'{text}' is not an endpoint (address:port or [v6]:port).");

    public override string ToString() => Address.IsV6 ? $"[{Address}]:{Port}" : $"{Address}:{Port}";
}
