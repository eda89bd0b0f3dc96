using System.Net;

namespace Gateway.Datapath;

/// <summary>
/// An IP address and port as a value type (no allocation), printed and parsed the way
/// WireGuard writes endpoints: "192.0.2.1:51820" and "[2001:db8::1]:51820".
/// </summary>
public readonly record struct IpEndpoint(IpAddress Address, ushort Port)
{
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
